"""Runs real `lockgate serve` processes for tests: the gateway as a user starts it, over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LOCKGATE = [sys.executable, "-m", "lockgate.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(
    *args: str, data_dir: Path, config: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [*LOCKGATE, "--data-dir", str(data_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    result = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(
            f"lockgate {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def create_key(data_dir: Path, name: str = "test", *extra: str) -> str:
    out = run_cli("keys", "create", "--name", name, *extra, data_dir=data_dir).stdout
    return out.strip().splitlines()[-1]


@dataclass
class Gateway:
    """One `lockgate serve` process tree (a supervisor and its workers when workers > 1)."""

    data_dir: Path
    config: Path | None
    port: int
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def start(self, *, wait_ready: bool = True, timeout_s: float = 120) -> Gateway:
        cmd = [*LOCKGATE, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
               "--workers", str(self.workers)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        self.log_path = self.data_dir / f"serve-{self.port}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, "LOCKGATE_LOG_LEVEL": "WARNING", **self.env}
        # A session of its own, so the whole tree (supervisor and workers) can be signalled at once.
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait("/readyz" if wait_ready else "/healthz", timeout_s)
        return self

    def _wait(self, path: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.base_url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not ready on {path} after {timeout_s}s:\n{self.logs()}")

    def trace(self, request_id: str, wait_s: float = 3.0) -> dict:
        """The request's trace from the store, waiting for the journal to flush it."""
        import json
        import sqlite3

        db = self.data_dir / "lockgate.sqlite3"
        deadline = time.monotonic() + wait_s
        while True:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                row = conn.execute("SELECT body FROM traces WHERE trace_id = ?", (request_id,)).fetchone()
            if row is not None:
                return json.loads(row[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"no trace {request_id} after {wait_s}s:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        """Graceful: SIGTERM, as systemd or a terminal would."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL to every process of the gateway: nothing gets to clean up."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


def write_config(path: Path, upstream_url: str, *, model: str = "ok", release_extra: str = "",
                 route_extra: str = "", server_extra: str = "", backend_extra: str = "") -> Path:
    """A one-route configuration (`echo`) over one HTTP backend (`up`), with room for extra YAML."""
    path.write_text(f"""
version: 1
server:
  max_body_bytes: 65536
{server_extra}
backends:
  up:
    kind: openai
    base_url: {upstream_url}
{backend_extra}
routes:
  echo:
    serve: v1
{route_extra}
    releases:
      v1:
        backend: up
        model: {model}
        system_prompt: You are a test.
{release_extra}
""")
    return path
