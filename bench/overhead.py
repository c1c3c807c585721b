"""How much latency and memory Lockgate adds over calling the upstream directly.

Run from the repository root:

    .venv/bin/python bench/overhead.py            # full run, about 7.5 minutes
    .venv/bin/python bench/overhead.py --quick    # short run, under 90 s
    .venv/bin/python bench/overhead.py --no-profile  # skip the py-spy profile

One run starts a fake upstream (`python -m lockgate.devtools.fake_upstream`, its own process) and a
real `lockgate serve` (temp data dir, one route over the fake, 2 workers), creates an API key, and
drives both with the same open-loop load from `bench/loadgen.py` (a process of its own):

1. a matrix: direct vs through Lockgate, non-streaming and streaming, at 200/500/1000 req/s;
2. a step search for the highest non-streaming load Lockgate sustains (achieved >= 95% of offered,
   no errors, p99 added latency under 10 ms);
3. the gateway's resident memory (RSS summed over the serve process tree) before and after
   100,000 requests sent at a high fixed rate;
4. a guard comparison: a second gateway with the other guard setting (`guards: {input: [], output: []}`
   or the default policy) is started, and direct / guards off / default guards are measured in turn
   at 200 and 500 req/s with a ~1,000-character benign prompt; the report gives the difference
   default - off at p50/p95/p99 and the guard time the gateway itself reports on /metrics;
5. when p99 added at 500 req/s is above 5 ms (or with --profile), a py-spy profile of the gateway's
   workers under 500 req/s, summarised in the report.

It writes bench/results/overhead.md and prints, as its last two lines,
`guard_p99_extra_ms_at_500rps=<x>` and
`p99_added_ms_at_500rps=<x> max_rps=<y> rss_growth_mb=<z>` (non-streaming numbers).
Every process it starts is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import importlib.metadata
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadGen, percentile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOCKGATE = [sys.executable, "-m", "lockgate.cli.main"]
MATRIX_RATES = (200, 500, 1000)
SEARCH_STEP = 200
SEARCH_CAP = 4000
SEARCH_BELOW = (100, 50)  # tried only when the first step of the search already fails
ADDED_P99_LIMIT_MS = 10.0
FOREIGN_LIMIT = 0.3  # cores used by other processes above which a step counts as disturbed
PROFILE_IF_ADDED_MS = 5.0  # profile by default when p99 added at 500 req/s is above this
MB = 1024 * 1024
PATH = "/v1/chat/completions"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello to the benchmark in one short sentence, please."},
]
GUARD_RATES = (200, 500)
GUARD_TARGET_MS = 2.0  # target: p99 with the default policy at most this much above guards off at 500 req/s
GUARD_SETTINGS = ("off", "default")  # measured in this order after direct, in every round
# About 1,000 characters of ordinary English: no attack, no personal data, so the default policy allows
# it and every guard of the pipeline runs to the end.
LONG_PROMPT = (
    "I am planning a small vegetable garden behind our house this spring and would like some practical advice. "
    "The plot is roughly four metres long and two metres wide, gets full sun in the morning and partial shade "
    "after about three in the afternoon, and the soil is fairly heavy clay that stays wet for a few days after "
    "rain. I would like to grow tomatoes, lettuce, carrots, green beans and a few herbs such as basil, parsley "
    "and chives. This will be our first season growing food, so we are happy to start with easy crops and learn "
    "as we go. What is the best way to improve the soil before planting, which of these crops should go where "
    "given the shade in the afternoon, and roughly when each one should be sown or planted out in a temperate "
    "climate? It would also help to hear a few tips on watering, on keeping slugs away from the lettuce without "
    "harsh chemicals, and on how much we might expect to harvest in the first year. A short checklist at the end "
    "would be great. Our local garden centre sells compost, bark mulch and raised bed kits."
)
GUARD_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": LONG_PROMPT},
]
GUARD_METRIC_RE = re.compile(
    r'^lockgate_guard_duration_seconds_(sum|count)\{([^}]*)\} ([0-9.eE+-]+)$', re.MULTILINE
)


GATEWAY_ATTRS = ("gw_proc", "gw_port", "key", "worker_pids", "data_dir", "config", "gw_log")


T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:5.1f}s] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Every child process started here, each the leader of its own session so its whole tree
    (uvicorn's supervisor and workers) can be signalled at once; all of them are stopped at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def spawn(self, cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                    cwd=REPO, start_new_session=True)
        self.started.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], *, graceful_s: float = 0.0) -> None:
        """Stops one process group: SIGTERM and up to `graceful_s` to exit, then SIGKILL."""
        if graceful_s > 0 and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=graceful_s)
        # The group may outlive its leader (orphaned workers): make sure nothing is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in reversed(self.started):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            self.kill(proc)
        self.started.clear()


def wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s}s:\n{log_path.read_text(errors='replace')[-5000:]}")


def wait_port(port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fake upstream exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"fake upstream not listening on {port} after {timeout_s}s")


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def rss_bytes(pid: int) -> int:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def wait_for_quiet(max_wait_s: float) -> float:
    """The machine is shared: wait (a little) for other work to stop; returns the busy cores seen last."""
    busy = psutil.cpu_percent(interval=1.0) / 100 * (os.cpu_count() or 1)
    deadline = time.monotonic() + max_wait_s
    while busy > FOREIGN_LIMIT and time.monotonic() < deadline:
        log(f"the machine is busy with other work ({busy:.2f} cores); waiting up to {max_wait_s:.0f} s for it to calm")
        busy = psutil.cpu_percent(interval=2.0) / 100 * (os.cpu_count() or 1)
    return busy


class Bench:
    def __init__(self, args: argparse.Namespace, procs: Processes, workdir: Path) -> None:
        self.args = args
        self.procs = procs
        self.workdir = workdir
        self.cache: dict[tuple[str, bool, int], dict[str, Any]] = {}
        self.lg: LoadGen | None = None
        self.gw_proc: subprocess.Popen[bytes] | None = None
        self.up_proc: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.up_port = 0
        self.gw_port = 0
        self.worker_pids: list[int] = []
        self.data_dir = workdir / "data"
        self.config = workdir / "lockgate.yaml"
        self.gw_log = workdir / "serve.log"
        self.peer: dict[str, Any] = {}  # the guard comparison's second gateway (the attributes in GATEWAY_ATTRS)
        self.restarts: list[str] = []
        self.rerun_until = 0.0  # monotonic time until which disturbed pairs may be measured again
        self.gw_env: dict[str, str] = {}
        if args.log_level:
            self.gw_env["LOCKGATE_LOG_LEVEL"] = args.log_level

    # -- set-up -----------------------------------------------------------------------------------

    def start(self) -> None:
        self.up_port = free_port()
        up_log = self.workdir / "upstream.log"
        self.up_proc = self.procs.spawn(
            [sys.executable, "-m", "lockgate.devtools.fake_upstream", "--port", str(self.up_port)], up_log
        )
        wait_port(self.up_port, self.up_proc, up_log)
        self.write_config(self.config, self.args.guards)
        self.key = self.create_key(self.data_dir)
        self.gw_port = free_port()
        self.start_gateway()
        self.lg = LoadGen().start()

    def write_config(self, path: Path, guards: str) -> None:
        path.write_text(
            "version: 1\n"
            "backends:\n"
            "  up:\n"
            "    kind: openai\n"
            f"    base_url: http://127.0.0.1:{self.up_port}/v1\n"
            "routes:\n"
            "  bench:\n"
            "    serve: v1\n"
            "    releases:\n"
            "      v1:\n"
            "        backend: up\n"
            "        model: fake-model\n"
            + ("        guards: {input: [], output: []}\n" if guards == "off" else "")
        )

    def create_key(self, data_dir: Path) -> str:
        out = subprocess.run(
            [*LOCKGATE, "--data-dir", str(data_dir), "--config", str(self.config), "keys", "create",
             "--name", "bench", "--rpm", "10000000", "--tpm", "1000000000"],
            capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"lockgate keys create failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    def start_gateway(self) -> None:
        gw_log = self.gw_log
        self.gw_proc = self.procs.spawn(
            [*LOCKGATE, "serve", "--config", str(self.config), "--port", str(self.gw_port),
             "--data-dir", str(self.data_dir), "--workers", str(self.args.workers)],
            gw_log, env=self.gw_env,
        )
        wait_http(f"http://127.0.0.1:{self.gw_port}/readyz", self.gw_proc, gw_log)
        # uvicorn spawns its workers; wait until they are all there (multiprocessing's resource
        # tracker is a child too, but not a worker).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.worker_pids = [p.pid for p in tree(self.gw_proc.pid)[1:] if "resource_tracker" not in _cmd(p)]
            if len(self.worker_pids) >= self.args.workers:
                break
            time.sleep(0.1)
        time.sleep(0.5)

    def restart_gateway(self, why: str) -> None:
        assert self.gw_proc is not None
        log(f"    restarting the gateway: {why}")
        self.restarts.append(why)
        self.procs.kill(self.gw_proc)
        self.start_gateway()

    @contextlib.contextmanager
    def on_gateway(self, setting: str) -> Iterator[None]:
        """Within the block, `step`, `settle`, `restart_gateway` and `probe` act on the gateway with the
        given guard setting: the main one, or the guard comparison's second one (`self.peer`)."""
        if setting == self.args.guards:
            yield
            return
        saved = {k: getattr(self, k) for k in GATEWAY_ATTRS}
        for k in GATEWAY_ATTRS:
            setattr(self, k, self.peer[k])
        try:
            yield
        finally:
            for k in GATEWAY_ATTRS:
                self.peer[k] = getattr(self, k)
                setattr(self, k, saved[k])

    def start_peer(self) -> str:
        """Starts a second gateway, on its own data dir and key, with the other guard setting."""
        setting = "off" if self.args.guards == "default" else "default"
        peer_dir = self.workdir / f"guards-{setting}"
        peer_dir.mkdir()
        self.peer = {"gw_proc": None, "gw_port": free_port(), "key": "", "worker_pids": [],
                     "data_dir": peer_dir / "data", "config": peer_dir / "lockgate.yaml",
                     "gw_log": peer_dir / "serve.log"}
        self.write_config(self.peer["config"], setting)
        with self.on_gateway(setting):
            self.key = self.create_key(self.data_dir)
            self.start_gateway()
        return setting

    def stop_peer(self) -> None:
        if self.peer.get("gw_proc") is not None:
            self.procs.kill(self.peer["gw_proc"], graceful_s=5.0)

    def guard_metrics(self) -> dict[str, tuple[float, int]]:
        """The current gateway's `lockgate_guard_duration_seconds` histogram: stage -> (sum s, count)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.gw_port}/metrics", timeout=5) as resp:
                text = resp.read().decode(errors="replace")
        except OSError:
            return {}
        out: dict[str, tuple[float, int]] = {}
        for kind, labels, value in GUARD_METRIC_RE.findall(text):
            stage_label = re.search(r'stage="([^"]*)"', labels)
            stage = stage_label.group(1) if stage_label else "?"
            total, count = out.get(stage, (0.0, 0))
            out[stage] = (total + float(value), count) if kind == "sum" else (total, count + round(float(value)))
        return out

    def probe(self) -> bool:
        """Three plain requests through the gateway must all succeed (e.g. no open circuit breaker)."""
        body = orjson.dumps({"model": "bench", "messages": MESSAGES, "max_tokens": 32})
        for _ in range(3):
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.gw_port}{PATH}", data=body, method="POST",
                headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=3) as resp:
                    if resp.status != 200:
                        return False
            except (OSError, urllib.error.HTTPError):
                return False
        return True

    def sample_answer(self, messages: list[dict[str, str]] = MESSAGES) -> str:
        body = orjson.dumps({"model": "bench", "messages": messages, "max_tokens": 32})
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.gw_port}{PATH}", data=body, method="POST",
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return f"HTTP {resp.status} {resp.read()[:300]!r}"
        except urllib.error.HTTPError as exc:
            hint = ""
            if b"guard" in (text := exc.read()[:500]):
                hint = " (a default guard blocks the benchmark's request: fix the guard, or run with --guards off)"
            return f"HTTP {exc.code} {text!r}{hint}"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    def settle(self, r: dict[str, Any]) -> None:
        """After a Lockgate step: make sure the next step starts on a healthy, idle gateway.

        An overloaded step leaves a backlog the gateway keeps working through (clients that gave up
        do not cancel upstream calls), and can open its circuit breaker for 30 s. Waiting that out
        would cost minutes, so a gateway that does not go quiet and answer promptly is restarted.
        """
        assert self.gw_proc is not None
        rate = r["offered_rps"]
        if r["errors"].get("timeout") or r["achieved_rps"] < 0.9 * rate:
            self.restart_gateway(f"after the {'stream' if r['stream'] else 'json'} {rate}/s step (overloaded: "
                                 f"achieved {r['achieved_rps']:.0f}/s, errors {r['error_count']})")
            return
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            c0, t0 = cpu_seconds(self.gw_proc.pid), time.monotonic()
            time.sleep(0.3)
            if (cpu_seconds(self.gw_proc.pid) - c0) / (time.monotonic() - t0) < 0.2:
                break
        else:
            self.restart_gateway(f"after the {'stream' if r['stream'] else 'json'} {rate}/s step (still busy)")
            return
        if not self.probe():
            self.restart_gateway(f"after the {'stream' if r['stream'] else 'json'} {rate}/s step (probe failed)")

    # -- one measured step -------------------------------------------------------------------------

    def step(self, target: str, stream: bool, rate: int, *, duration: float | None = None, warmup: float | None = None,
             n: int | None = None, max_s: float | None = None, quiet: bool = False,
             messages: list[dict[str, str]] = MESSAGES, label: str = "", keep_latencies: bool = False,
             settle: bool = True) -> dict[str, Any]:
        """One load step against the fake upstream ("direct") or the current gateway ("lockgate"); after a
        gateway step (not a fixed-count one) the gateway is settled unless `settle` is False."""
        assert self.lg is not None and self.gw_proc is not None and self.up_proc is not None
        port = self.gw_port if target == "lockgate" else self.up_port
        body = orjson.dumps({"model": "bench", "messages": messages, "max_tokens": 32, "stream": stream})
        params: dict[str, Any] = {
            "host": "127.0.0.1", "port": port, "path": PATH, "body": body, "stream": stream, "rate": rate,
            # The same headers both ways: the upstream ignores the key, the gateway needs it.
            "headers": {"Authorization": f"Bearer {self.key}"},
            "drain_s": 3.0, "max_s": max_s,
        }
        if n is not None:
            params["n"] = n
        else:
            params["duration_s"] = duration if duration is not None else self.args.duration
            params["warmup_s"] = warmup if warmup is not None else self.args.warmup
        pids = {"lockgate": self.gw_proc.pid, "upstream": self.up_proc.pid, "loadgen": self.lg.pid}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        workers0 = {p: cpu_seconds(p) for p in self.worker_pids}
        psutil.cpu_percent(interval=None)
        t0 = time.monotonic()
        r = self.lg.run(**params)
        wall = time.monotonic() - t0
        r["cpu"] = {k: (cpu_seconds(p) - cpu0[k]) / wall for k, p in pids.items()}
        r["cpu"]["machine"] = psutil.cpu_percent(interval=None) / 100 * (os.cpu_count() or 1)
        # CPU used by processes that are not part of this benchmark (other users of the machine).
        r["cpu"]["foreign"] = max(0.0, r["cpu"]["machine"] - sum(r["cpu"][k] for k in pids))
        r["worker_cpu"] = [(cpu_seconds(p) - c) / wall for p, c in workers0.items()]
        lat = sorted(r.pop("latencies_s"))
        if keep_latencies:
            r["latencies_ms"] = [x * 1000 for x in lat]
        for q in (50, 95, 99):
            r[f"p{q}"] = percentile(lat, q) * 1000
        r["max"] = lat[-1] * 1000 if lat else float("nan")
        r["target"], r["stream"] = target, stream
        if not quiet:
            workers = "+".join(f"{w:.2f}" for w in r["worker_cpu"])
            log(f"  {label or target:<8} {'stream' if stream else 'json  '} {rate:>5}/s: "
                f"achieved {r['achieved_rps']:7.1f}/s "
                f"p50 {r['p50']:7.2f} p95 {r['p95']:7.2f} p99 {r['p99']:7.2f} ms, errors {r['error_count']}, "
                f"cpu gw {r['cpu']['lockgate']:.2f} ({workers}) up {r['cpu']['upstream']:.2f} "
                f"lg {r['cpu']['loadgen']:.2f} all {r['cpu']['machine']:.2f}"
                + (f" (foreign {r['cpu']['foreign']:.2f}!)" if r["cpu"]["foreign"] > FOREIGN_LIMIT else ""))
        if target == "lockgate" and n is None and settle:
            self.settle(r)
        time.sleep(self.args.pause)
        return r

    def pair(self, stream: bool, rate: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Direct then Lockgate at the same offered load, cached so the search can reuse the matrix.

        The machine is shared: when other processes took CPU during either step (> 0.3 cores), the
        pair is measured once more after waiting for calm, while the re-run allowance lasts, and the
        less disturbed measurement is kept."""
        key_d, key_g = ("direct", stream, rate), ("lockgate", stream, rate)
        if key_d in self.cache and key_g in self.cache:
            return self.cache[key_d], self.cache[key_g]
        d, g = self.step("direct", stream, rate), self.step("lockgate", stream, rate)
        disturbed = max(d["cpu"]["foreign"], g["cpu"]["foreign"])
        if disturbed > FOREIGN_LIMIT and self.rerun_until > time.monotonic():
            log(f"    other processes took up to {disturbed:.2f} cores during this pair: measuring it again")
            wait_for_quiet(min(15.0, self.rerun_until - time.monotonic()))
            d2, g2 = self.step("direct", stream, rate), self.step("lockgate", stream, rate)
            d2["rerun"] = g2["rerun"] = True
            if max(d2["cpu"]["foreign"], g2["cpu"]["foreign"]) < disturbed:
                d, g = d2, g2
        self.cache[key_d], self.cache[key_g] = d, g
        return d, g

    # -- phases -------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        log("warm-up (not recorded)")
        for target in ("direct", "lockgate"):
            for stream in (False, True):
                r = self.step(target, stream, 100, duration=1.0, warmup=0.0, quiet=True)
                if r["error_count"] or r["ok"] == 0:
                    raise RuntimeError(f"warm-up against {target} (stream={stream}) failed: {r['errors']}; "
                                       f"a request through the gateway now gets: {self.sample_answer()}")

    def matrix(self) -> None:
        log("matrix: direct vs lockgate")
        for stream in (False, True):
            for rate in MATRIX_RATES:
                self.pair(stream, rate)

    def search(self, deadline: float) -> tuple[int, list[dict[str, Any]], str]:
        log(f"max-rps search (non-streaming, steps of {SEARCH_STEP}/s)")
        rows: list[dict[str, Any]] = []
        best, stop_reason = 0, f"reached the search cap of {SEARCH_CAP}/s"
        rate = SEARCH_STEP
        while rate <= SEARCH_CAP:
            if time.monotonic() > deadline and ("lockgate", False, rate) not in self.cache:
                stop_reason = f"stopped by the time budget before {rate}/s"
                break
            row = self._try_load(rate)
            rows.append(row)
            if not row["pass"]:
                stop_reason = f"not sustained at {rate}/s: {row['why']}"
                break
            best = rate
            rate += SEARCH_STEP
        if best == 0:  # the first step failed: look below it so the answer is not just "0"
            for low in SEARCH_BELOW:
                if time.monotonic() > deadline:
                    stop_reason += f"; no time left to try {low}/s"
                    break
                row = self._try_load(low)
                rows.append(row)
                if row["pass"]:
                    best = low
                    stop_reason += f"; {low}/s is sustained"
                    break
                stop_reason += f"; not at {low}/s either"
        return best, rows, stop_reason

    def _try_load(self, rate: int) -> dict[str, Any]:
        ok, why, row = self._sustains(rate)
        if not ok and not self.args.quick:  # one re-run: one noisy step on a shared 2-core box is not a verdict
            first = row
            for target in ("direct", "lockgate"):
                self.cache.pop((target, False, rate), None)
            ok, why2, row = self._sustains(rate)
            row["first_run"] = first
            if not ok:
                why = f"{why}; re-run: {why2}"
        row["pass"], row["why"] = ok, why
        return row

    def _sustains(self, rate: int) -> tuple[bool, str, dict[str, Any]]:
        d, g = self.pair(False, rate)
        added = g["p99"] - d["p99"]
        row = {"rate": rate, "direct": d, "lockgate": g, "added_p99": added}
        problems = []
        if g["achieved_rps"] < 0.95 * rate:
            problems.append(f"achieved {g['achieved_rps']:.0f}/s < 95%")
        if g["error_count"] or d["error_count"]:
            problems.append(f"errors lockgate {g['error_count']} direct {d['error_count']}")
        if not added < ADDED_P99_LIMIT_MS:
            problems.append(f"p99 added {added:.1f} ms >= {ADDED_P99_LIMIT_MS:g}")
        return not problems, ", ".join(problems), row

    def guard_comparison(self) -> dict[str, Any]:
        """Default guards vs guards off with a ~1,000-character benign prompt, non-streaming.

        Per load and round the steps run direct, guards off, default guards, one after the other, so
        noise on the machine hits all three alike; each target's latencies are pooled over the rounds.
        Around every gateway step the gateway's own guard-duration histogram is read from /metrics."""
        peer = self.start_peer()
        log(f"guard comparison: a second gateway with guards {peer} on port {self.peer['gw_port']}; "
            f"{len(LONG_PROMPT)}-character prompt, {self.args.guard_rounds} round(s) per load")
        for setting in GUARD_SETTINGS:
            with self.on_gateway(setting):
                r = self.step("lockgate", False, 100, duration=1.0, warmup=0.0, quiet=True, messages=GUARD_MESSAGES)
                if r["error_count"] or r["ok"] == 0:
                    raise RuntimeError(f"guard comparison warm-up (guards {setting}) failed: {r['errors']}; "
                                       f"a request through the gateway now gets: {self.sample_answer(GUARD_MESSAGES)}")
        rows = []
        for rate in GUARD_RATES:
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in ("direct", *GUARD_SETTINGS)}
            guard_time: dict[str, dict[str, list[float]]] = {t: {} for t in GUARD_SETTINGS}
            for _ in range(self.args.guard_rounds):
                runs["direct"].append(self.step("direct", False, rate, messages=GUARD_MESSAGES, keep_latencies=True))
                for setting in GUARD_SETTINGS:
                    with self.on_gateway(setting):
                        before = self.guard_metrics()
                        r = self.step("lockgate", False, rate, messages=GUARD_MESSAGES, label=f"guards-{setting}",
                                      keep_latencies=True, settle=False)
                        after = self.guard_metrics()  # before settling: a restart would reset the histogram
                        self.settle(r)
                        runs[setting].append(r)
                    for stage, (total, count) in after.items():
                        t0, c0 = before.get(stage, (0.0, 0))
                        acc = guard_time[setting].setdefault(stage, [0.0, 0])
                        acc[0] += total - t0
                        acc[1] += count - c0
            rows.append(guard_row(rate, runs, guard_time))
        self.stop_peer()
        return {"peer": peer, "rows": rows}

    def throughput_rate(self, best: int) -> int:
        """The highest non-streaming load Lockgate carried in full (>= 95%, no errors) without queueing
        (p95 under 50 ms), so 100,000 requests finish soon and the gateway is not measured in collapse;
        at least the max sustained rate."""
        carried = [rate for (target, stream, rate), r in self.cache.items()
                   if target == "lockgate" and not stream and not r["error_count"]
                   and r["achieved_rps"] >= 0.95 * rate and r["p95"] < 50]
        return max(best, *carried) if carried else max(best, 100)

    def memory(self, rate: int, n: int, max_s: float) -> dict[str, Any]:
        assert self.gw_proc is not None
        log(f"memory: {n:,} requests at {rate}/s (non-streaming; at most {max_s:.0f} s of sending)")
        # Warm first, so a gateway restarted by the search is not measured cold.
        self.step("lockgate", False, rate, n=max(200, int(rate * 2)), quiet=True)
        time.sleep(1.0)
        before = rss_bytes(self.gw_proc.pid)
        r = self.step("lockgate", False, rate, n=n, max_s=max_s)
        time.sleep(2.0)  # let the trace journal load the last segments
        after = rss_bytes(self.gw_proc.pid)
        per_proc = []
        for p in tree(self.gw_proc.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                per_proc.append((p.pid, _cmd(p)[:90], p.memory_info().rss))
        return {"rate": rate, "n": n, "before": before, "after": after, "result": r, "per_proc": per_proc,
                "restarted_before": bool(self.restarts)}

    def profile(self, rate: int, seconds: float) -> dict[str, Any]:
        """py-spy (non-blocking, CPU samples only) on every gateway worker during a Lockgate step."""
        assert self.gw_proc is not None
        pyspy = Path(sys.executable).with_name("py-spy")
        if not pyspy.exists():
            pyspy_found = shutil.which("py-spy")
            if pyspy_found is None:
                log("profile skipped: py-spy is not installed (.venv/bin/pip install py-spy)")
                return {}
            pyspy = Path(pyspy_found)
        self.restart_gateway("fresh gateway for the profile")
        self.restarts.pop()
        log(f"profile: py-spy on {len(self.worker_pids)} workers for {seconds:.0f} s under {rate} req/s")
        result: dict[str, Any] = {}

        def run() -> None:
            result["step"] = self.step("lockgate", False, rate, duration=seconds + 1, warmup=2.0)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(2.5)
        outs, spies = [], []
        for pid in self.worker_pids:
            out = self.workdir / f"pyspy-{pid}.txt"
            outs.append(out)
            spies.append(self.procs.spawn(
                [str(pyspy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
                 "--nonblocking", "--threads", "--format", "raw", "--output", str(out)],
                self.workdir / "pyspy.log"))
        for proc in spies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=seconds + 30)
        t.join()
        result["summary"] = summarize_profile([o for o in outs if o.exists()], seconds, len(outs))
        return result


def guard_row(rate: int, runs: dict[str, list[dict[str, Any]]],
              guard_time: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Pools each target's latencies over the rounds; added = gateway percentile - direct percentile."""
    row: dict[str, Any] = {"rate": rate, "guard_time": guard_time, "runs": runs}
    for target, rs in runs.items():
        lat = sorted(x for r in rs for x in r.pop("latencies_ms"))
        row[target] = {
            **{f"p{q}": percentile(lat, q) for q in (50, 95, 99)},
            "n": len(lat),
            "achieved_rps": sum(r["achieved_rps"] for r in rs) / len(rs),
            "errors": sum(r["error_count"] for r in rs),
            "foreign": max(r["cpu"]["foreign"] for r in rs),
            "gw_cpu": sum(r["cpu"]["lockgate"] for r in rs) / len(rs),
        }
    for setting in GUARD_SETTINGS:
        row[setting]["added"] = {q: row[setting][f"p{q}"] - row["direct"][f"p{q}"] for q in (50, 95, 99)}
    row["extra"] = {q: row["default"][f"p{q}"] - row["off"][f"p{q}"] for q in (50, 95, 99)}
    return row


# -- profile summary -------------------------------------------------------------------------------

UPSTREAM_LAYER = "upstream call: the HTTP client (httpx/httpcore/anyio or aiohttp)"
# Layers a sample is charged to: the first rule with a pattern in the stack wins. py-spy often sees
# only the innermost part of a coroutine's stack (the part resumed by the loop), so library paths
# count as well as the gateway's own functions.
PROFILE_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("guards (input and output)", ("(lockgate/guards/", "guarding.py")),
    ("trace journal thread (loads traces into SQLite)", ("TraceJournal._run",)),
    ("other background threads", ("Thread._bootstrap",)),
    ("rate limiting (SQLite GCRA)", ("ratelimit.py",)),
    (UPSTREAM_LAYER, ("HttpBackend.", "(httpx/", "(httpcore/", "(anyio/", "(h11/", "(aiohttp/", "(yarl/",
                      "(multidict/")),
    ("trace record + metrics (_record, journal append, prometheus)", ("_record ", "(prometheus_client/")),
    ("request parsing/validation (pydantic)", ("parse_chat_request", "(pydantic")),
]


def summarize_profile(paths: list[Path], seconds: float, n_workers: int) -> dict[str, Any]:
    stacks: collections.Counter[str] = collections.Counter()
    for p in paths:
        for line in p.read_text(errors="replace").splitlines():
            st, _, count = line.rpartition(" ")
            if st and count.isdigit():
                stacks[re.sub(r":\d+\)", ")", st)] += int(count)
    total = sum(stacks.values())
    if not total:
        return {"total": 0}
    layers: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    for st, count in stacks.items():
        frames = st.split(";")
        if frames[-1].startswith(("Runner.run ", "asyncio_run ")):
            layers["event loop (uvloop C code: polling, I/O, callbacks)"] += count
        else:
            for name, patterns in PROFILE_LAYERS:
                if any(p in st for p in patterns):
                    layers[name] += count
                    break
            else:  # charge the rest to the innermost frame's owner
                owner = "other"
                for f in reversed(frames):
                    if "(uvicorn/" in f or "(starlette/" in f:
                        owner = "uvicorn/starlette (HTTP parsing, ASGI, response write)"
                        break
                    if "(lockgate/" in f:
                        owner = "rest of the lockgate handler (auth, routing, headers, response body)"
                        break
                layers[owner] += count
        for f in set(frames):
            incl[f] += count
        self_[frames[-1]] += count
    wanted = (
        "handle_chat", "HttpBackend.complete", "ClientSession._request", "TCPConnector.connect", "guard_input",
        "guard_answer", "AsyncConnectionPool.handle_async_request", "_assign_requests_to_connections",
        "has_expired", "is_socket_readable", "RateLimiter.", "_record", "TraceJournal.append", "prometheus_client",
        "parse_chat_request", "RequestResponseCycle.send", "SocketStream.send", "Logger.", "GatewayHeaders",
    )
    key_funcs = sorted(((f, c) for f, c in incl.items() if any(w in f for w in wanted)), key=lambda x: -x[1])
    return {
        "total": total,
        "cores": total / 100 / seconds,  # samples at 100 Hz over `seconds`, all workers together
        "n_workers": n_workers,
        "layers": [(k, v / total * 100) for k, v in layers.most_common()],
        "key_inclusive": [(f, c / total * 100) for f, c in key_funcs[:18]],
        "inclusive_by_name": {f.split(" (")[0]: c / total * 100 for f, c in key_funcs},
        "top_self": [(f, c / total * 100) for f, c in self_.most_common(15)],
    }


# -- report ----------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for dist in ("uvicorn", "uvloop", "httptools", "starlette", "aiohttp", "httpx", "httpcore", "orjson", "pydantic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
    return {
        "nproc": str(os.cpu_count()),
        "affinity": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "kernel": platform.release(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "versions": ", ".join(versions),
    }


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def errors_str(r: dict[str, Any]) -> str:
    if not r["error_count"]:
        return "0"
    return f"{r['error_count']} ({', '.join(f'{k}: {v}' for k, v in r['errors'].items())})"


def cpu_str(r: dict[str, Any]) -> str:
    c = r["cpu"]
    workers = "+".join(f"{w:.2f}" for w in r["worker_cpu"])
    mark = f" * (+{c['foreign']:.2f} other)" if c["foreign"] > FOREIGN_LIMIT else ""
    mark += " (re-run)" if r.get("rerun") else ""
    return f"{c['lockgate']:.2f} ({workers}) / {c['upstream']:.2f} / {c['loadgen']:.2f} / {c['machine']:.2f}{mark}"


def mode_table(bench: Bench, stream: bool) -> list[str]:
    lines = [
        "| offered req/s | direct achieved | direct p50 / p95 / p99 ms | Lockgate achieved | "
        "Lockgate p50 / p95 / p99 ms | **added p50 / p95 / p99 ms** | errors direct / Lockgate | "
        "CPU cores in the Lockgate step: gateway (per worker) / upstream / loadgen / whole machine |",
        "|---:|---:|---|---:|---|---|---|---|",
    ]
    for rate in MATRIX_RATES:
        d, g = bench.cache[("direct", stream, rate)], bench.cache[("lockgate", stream, rate)]
        added = " / ".join(fmt(g[f"p{q}"] - d[f"p{q}"]) for q in (50, 95, 99))
        lines.append(
            f"| {rate} | {d['achieved_rps']:.0f} | {fmt(d['p50'])} / {fmt(d['p95'])} / {fmt(d['p99'])} | "
            f"{g['achieved_rps']:.0f} | {fmt(g['p50'])} / {fmt(g['p95'])} / {fmt(g['p99'])} | **{added}** | "
            f"{errors_str(d)} / {errors_str(g)} | {cpu_str(g)} |"
        )
    return lines


def profile_section(prof: dict[str, Any], rate: int) -> list[str]:
    s = prof.get("summary") or {}
    if not s.get("total") or "step" not in prof:
        return []
    st = prof["step"]
    out = [
        f"## Profile: where a worker's time goes at {rate} req/s (non-streaming)",
        "",
        f"`py-spy record --nonblocking --rate 100 --threads --format raw` on each of the {s['n_workers']} workers "
        f"of a freshly started gateway, during a {rate} req/s Lockgate step (that step: achieved "
        f"{st['achieved_rps']:.0f}/s, p50 {fmt(st['p50'])} / p99 {fmt(st['p99'])} ms, errors {errors_str(st)}). "
        f"py-spy counts only samples where a thread is running Python (idle waits excluded): {s['total']:,} "
        f"samples = {s['cores']:.2f} cores busy on average across the workers. Percentages are of those samples.",
        "",
        "| layer (first match in the stack) | share of busy samples |",
        "|---|---:|",
        *[f"| {name} | {pct:.1f}% |" for name, pct in s["layers"]],
        "",
        "Key functions, inclusive (share of busy samples with the function anywhere on the stack):",
        "",
        "| function | inclusive |",
        "|---|---:|",
        *[f"| `{f}` | {pct:.1f}% |" for f, pct in s["key_inclusive"]],
        "",
        "Top functions by self time:",
        "",
        "| function | self |",
        "|---|---:|",
        *[f"| `{f}` | {pct:.1f}% |" for f, pct in s["top_self"]],
        "",
        *profile_findings(s),
    ]
    return out


def profile_findings(s: dict[str, Any]) -> list[str]:
    """What the profile says, in words, for the patterns this benchmark has met before."""
    inc = s.get("inclusive_by_name", {})
    layers = dict(s["layers"])
    out = []
    pool = inc.get("AsyncConnectionPool._assign_requests_to_connections", 0.0)
    if pool >= 10:
        expired = max(inc.get("AsyncHTTP11Connection.has_expired", 0.0),
                      inc.get("AsyncHTTPConnection.has_expired", 0.0))
        out.append(
            f"- **httpcore's connection pool bookkeeping is the biggest single cost** ({pool:.0f}% of busy samples "
            f"in `_assign_requests_to_connections`, {expired:.0f}% in `has_expired` alone). httpcore 1.x rescans "
            "every pooled connection each time a request enters or leaves the pool, and for each idle one calls "
            "`has_expired` -> anyio `get_extra_info` -> `is_socket_readable` (a `poll()` syscall); its "
            "keep-alive limit check rebuilds a list of all connections for each idle one, so the scan is "
            "quadratic. The HTTP backend's pool allows `max_connections` = 200 per worker, so "
            "after any burst the pool holds many connections and every later request pays for all of them: "
            "cost per request rises with the pool, which is why the gateway tips from a few ms into seconds of "
            "queueing instead of degrading gently."
        )
    up = layers.get(UPSTREAM_LAYER, 0.0)
    if up:
        out.append(f"- The upstream HTTP client takes {up:.0f}% of the workers' busy time in all; the fake upstream "
                   "itself answers in well under a millisecond (see the direct rows).")
    guards = layers.get("guards (input and output)", 0.0)
    if guards >= 2:
        out.append(f"- Guards take {guards:.0f}%.")
    rl = layers.get("rate limiting (SQLite GCRA)", 0.0)
    if rl >= 2:
        out.append(f"- Rate limiting (a SQLite transaction on a file shared by the workers, on the event loop) "
                   f"takes {rl:.0f}%.")
    logging_share = inc.get("Logger.info", 0.0)
    if logging_share >= 1:
        out.append(f"- Logging one INFO line per upstream request (httpx's logger, at the gateway's default level) "
                   f"takes {logging_share:.1f}%.")
    if out:
        out = ["Reading:", "", *out, ""]
    return out


def guard_section(guard: dict[str, Any], args: argparse.Namespace) -> list[str]:
    rows = guard["rows"]
    r500 = next(r for r in rows if r["rate"] == 500)
    extra99 = r500["extra"][99]
    verdict = "met" if extra99 <= GUARD_TARGET_MS else "**not met**"
    out = [
        "## Guard overhead (1,000-character prompt)",
        "",
        f"Target: p99 with the default policy at most {GUARD_TARGET_MS:g} ms more than with guards off, at 500 "
        f"req/s. This run: **{fmt(extra99)} ms** at 500 req/s - target {verdict}.",
        "",
        "| offered req/s | direct p50 / p95 / p99 ms | guards off: added p50 / p95 / p99 ms | default guards: added "
        "p50 / p95 / p99 ms | **default - off p50 / p95 / p99 ms** | achieved direct / off / default | errors "
        "direct / off / default | gateway CPU off / default (cores) |",
        "|---:|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, off, on = r["direct"], r["off"], r["default"]
        disturbed = max(d["foreign"], off["foreign"], on["foreign"])
        mark = f" * (+{disturbed:.2f} other)" if disturbed > FOREIGN_LIMIT else ""
        out.append(
            f"| {r['rate']} | {fmt(d['p50'])} / {fmt(d['p95'])} / {fmt(d['p99'])} | "
            + " | ".join(" / ".join(fmt(x[q]) for q in (50, 95, 99)) for x in (off["added"], on["added"]))
            + f" | **{' / '.join(fmt(r['extra'][q]) for q in (50, 95, 99))}** | "
            f"{d['achieved_rps']:.0f} / {off['achieved_rps']:.0f} / {on['achieved_rps']:.0f} | "
            f"{d['errors']} / {off['errors']} / {on['errors']} | {off['gw_cpu']:.2f} / {on['gw_cpu']:.2f}{mark} |"
        )
    out += [
        "",
        "Guard time the gateway itself reports (`lockgate_guard_duration_seconds` on /metrics, read before and "
        "after each gateway step; sum / count per stage, warm-up requests of the step included):",
        "",
        "| offered req/s | guards | stage | requests | mean guard time per request ms |",
        "|---:|---|---|---:|---:|",
    ]
    for r in rows:
        for setting in GUARD_SETTINGS:
            stages = {k: v for k, v in r["guard_time"][setting].items() if v[1] > 0}
            if not stages:
                out.append(f"| {r['rate']} | {setting} | (none recorded) | 0 | - |")
            for stage, (total, count) in sorted(stages.items()):
                out.append(f"| {r['rate']} | {setting} | {stage} | {count:,} | {total / count * 1000:.3f} |")
    out += [
        "",
        f"- **Method.** Besides the main gateway (guards: {args.guards}), a second `lockgate serve` is started with "
        f"guards {guard['peer']} (its own data dir and key, same config otherwise: "
        "`guards: {input: [], output: []}` on the release for \"off\", nothing for the default policy); it runs "
        "only during this phase. Request: the same 2-message shape as above, but the user message is "
        f"{len(LONG_PROMPT):,} characters of ordinary English (a gardening question: no attack, no personal data), "
        "so the default policy allows it and the whole pipeline runs (input: unicode, limits, secrets, pii, "
        "injection; output: secrets, pii, system_prompt_leak, refusal, on the fake upstream's answer, which "
        "echoes the prompt). "
        "Non-streaming, open loop as above.",
        f"- **Interleaving.** At each load, {args.guard_rounds} round(s) of three steps in a fixed order: direct, "
        f"guards off, default guards ({args.warmup:g} s warm-up + {args.duration:g} s measured each, with the same "
        "settle/restart check after each gateway step as above). Each target's measured latencies are pooled over "
        "the rounds before taking percentiles.",
        "- **Added** = gateway percentile - direct percentile; **default - off** = default-guards percentile - "
        "guards-off percentile (the direct run cancels out). A difference of percentiles, not a percentile of "
        "per-request differences; on a shared 2-core box the p99 difference is noisy, and the mean guard time "
        "reported by the gateway is the steadier measure of the guards' own cost.",
        "",
    ]
    return out


def write_report(path: Path, *, command: str, started: dt.datetime, runtime_s: float, args: argparse.Namespace,
                 bench: Bench, best: int, search_rows: list[dict[str, Any]], stop_reason: str,
                 mem: dict[str, Any], rss_idle: int, summary: str, prof: dict[str, Any], prof_rate: int,
                 busy_before: float, guard: dict[str, Any], guard_summary: str) -> None:
    m = machine()
    d500, g500 = bench.cache[("direct", False, 500)], bench.cache[("lockgate", False, 500)]
    mr = mem["result"]
    g_extra = next(r for r in guard["rows"] if r["rate"] == 500)["extra"]
    done = mr["ok"] + mr["error_count"]
    growth = (mem["after"] - mem["before"]) / MB
    log_level = args.log_level or "the gateway's default"
    guards_text = ("guards: the default policy (`--guards default`)" if args.guards == "default"
                   else "guards turned off with `guards: {input: [], output: []}` (`--guards off`)")
    guard_steps = [r for row in guard["rows"] for rs in row["runs"].values() for r in rs]
    steps = [*bench.cache.values(), *guard_steps, mr, *([prof["step"]] if prof.get("step") else [])]
    worst_foreign = max(r["cpu"]["foreign"] for r in steps)
    contaminated = sum(1 for r in steps if r["cpu"]["foreign"] > FOREIGN_LIMIT)
    warning = []
    if contaminated:
        warning = [
            f"> **Warning: the machine was not quiet.** In {contaminated} of {len(steps)} steps other processes (not "
            f"this benchmark's) used more than {FOREIGN_LIMIT} of the 2 cores, up to {worst_foreign:.2f} cores (busy "
            f"before the "
            f"start: {busy_before:.2f} cores). Those steps are marked `*` in the CPU column; their latencies are "
            "inflated by CPU contention and say little about Lockgate itself.",
            "",
        ]
    out = [
        "# Lockgate overhead benchmark",
        "",
        f"- **Command:** `{command}` (from the repository root)",
        f"- **Date:** {started.isoformat(timespec='seconds')}; script runtime {runtime_s:.0f} s"
        f"{' (--quick)' if args.quick else ''}",
        f"- **Machine:** nproc {m['nproc']} (usable {m['affinity']}), CPU `{m['cpu']}`, {m['memory']} RAM, "
        f"Linux {m['kernel']}",
        f"- **Python:** {m['python']}; {m['versions']}",
        "",
        *warning,
        "## Summary (non-streaming)",
        "",
        f"- p99 latency added by Lockgate at 500 req/s offered: **{g500['p99'] - d500['p99']:.2f} ms** "
        f"(direct p99 {d500['p99']:.2f} ms, through Lockgate {g500['p99']:.2f} ms; Lockgate achieved "
        f"{g500['achieved_rps']:.0f}/s with {g500['error_count']} errors)",
        f"- Highest offered load sustained (achieved >= 95%, 0 errors, p99 added < {ADDED_P99_LIMIT_MS:g} ms): "
        f"**{best} req/s** ({stop_reason})",
        f"- Gateway RSS (serve process tree) before / after {done:,} requests: "
        f"{mem['before'] / MB:.1f} / {mem['after'] / MB:.1f} MB, growth **{growth:+.1f} MB**",
        f"- Guard overhead at 500 req/s with a {len(LONG_PROMPT):,}-character prompt: default guards - guards off = "
        f"**{fmt(g_extra[99])} ms** at p99 (p50 {fmt(g_extra[50])}, p95 {fmt(g_extra[95])}; target <= "
        f"{GUARD_TARGET_MS:g} ms at p99)",
        "",
        "```",
        guard_summary,
        summary,
        "```",
        "",
        "## Method",
        "",
        "- **Processes.** One run starts: the fake upstream (`python -m lockgate.devtools.fake_upstream`, one "
        "process, uvloop + httptools, answers from pre-shaped bytes); `lockgate serve --config F --port P "
        f"--data-dir D --workers {args.workers}` (uvicorn supervisor + {args.workers} workers) on a temp data dir, "
        "with a config of one route (`bench`) whose release calls the fake over HTTP and everything else default "
        f"({guards_text}, `trace_content: full`, key rate limiting on, traces journaled and loaded into SQLite, "
        f"Prometheus multiprocess metrics, log level: {log_level}); an API key from `lockgate keys create --name "
        "bench --rpm 10000000 --tpm 1000000000`; and the load generator (`bench/loadgen.py`) in a process of its own.",
        "- **Priority.** " + (f"Everything ran at niceness {args.nice} (`--nice`), so other work on the machine "
                              "took less CPU from the benchmark's processes." if args.nice else "Default niceness."),
        f"- **The machine has only {m['nproc']} cores, shared by the load generator, the fake upstream and the "
        "gateway's workers (and the gateway's background threads).** Nothing is pinned. The gateway competes with "
        "its own load for CPU, so these numbers are worse than on a machine where the gateway has cores of its "
        "own. The CPU column shows what each party used during the Lockgate step (1.00 = one full core, 2.00 = "
        "the whole machine).",
        "- **Load.** Open loop: request *i* is due at t0 + i/rate whatever earlier requests did, so a slow "
        "gateway cannot slow the arrivals and hide its latency (no coordinated omission). Raw asyncio HTTP/1.1 "
        "keep-alive client on uvloop (an `asyncio.Protocol` per connection, responses parsed with `httptools`, "
        "no task per request) with a FIFO pool of up to 512 connections, 32 pre-opened one by one so they spread "
        "over the gateway's workers. Latency runs from when the request was due (or was written, if earlier) to "
        "the last byte of the response, so waiting for a connection or a late timer counts. Streaming: "
        "`stream: true`, latency to the last byte; a stream without `data: [DONE]` counts as an error.",
        f"- **Same load both ways.** Identical bytes (a 2-message chat request, `max_tokens: 32`, same headers) at "
        f"the same rate to the fake upstream directly and to Lockgate. Each step: {args.warmup:g} s warm-up (not "
        f"counted) + {args.duration:g} s measured; direct and Lockgate steps alternate. Requests still unanswered "
        "3 s after the last one was sent count as `timeout` errors.",
        "- **Between steps.** An overloaded Lockgate step leaves a backlog the gateway keeps working through (a "
        "client giving up does not cancel the upstream call) and can open its circuit breaker for 30 s, which "
        "would poison the next steps. So after each Lockgate step the gateway must go idle and answer 3 probe "
        "requests; if it was overloaded (timeouts or < 90% achieved) or fails that check, it is restarted (same "
        "data dir and key). Restarts are listed under Notes. The machine is shared with other people's work: "
        f"when other processes used more than {FOREIGN_LIMIT} cores during a direct/Lockgate pair of the matrix or "
        "search, the pair is measured again after waiting (up to 15 s) for calm, within a re-run allowance, and the "
        "less disturbed measurement is kept (marked `(re-run)`).",
        "- **Added latency** = Lockgate percentile - direct percentile at the same load and mode (a difference of "
        "percentiles, not a percentile of per-request differences). Achieved rate = successful measured "
        "responses / time from the first measured request's due time to the last completion.",
        f"- **Max rps search.** Non-streaming, offered {SEARCH_STEP}, {2 * SEARCH_STEP}, {3 * SEARCH_STEP}, ... "
        "req/s, direct then Lockgate at each load (matrix results at the same load are reused). A load is "
        f"sustained when Lockgate achieves >= 95% of it with no errors (direct too) and p99 added < "
        f"{ADDED_P99_LIMIT_MS:g} ms. A failing load is re-run once (one noisy step on a shared 2-core box is not a "
        "verdict); the search stops at the first load that fails twice. If even the first load fails, "
        f"{' and '.join(map(str, SEARCH_BELOW))} req/s are tried.",
        f"- **Memory.** RSS summed over the `lockgate serve` process tree (psutil): the gateway is warmed at the "
        f"memory rate, RSS is read, then {mem['n']:,} non-streaming requests are offered at a fixed {mem['rate']} "
        "req/s (the highest non-streaming load the gateway carried in full with p95 under 50 ms earlier in the "
        "run, and at least the max sustained load), "
        "and RSS is read "
        "again 2 s after the last response.",
        "",
        "## Non-streaming (`stream: false`)",
        "",
        *mode_table(bench, False),
        "",
        "## Streaming (`stream: true`, latency to the last byte)",
        "",
        *mode_table(bench, True),
        "",
        "## Max sustained load (non-streaming)",
        "",
        "| offered req/s | direct achieved / p99 ms | Lockgate achieved / p50 / p99 ms | p99 added ms | errors "
        "direct / Lockgate | CPU: gateway (per worker) / upstream / loadgen / machine | verdict |",
        "|---:|---|---|---:|---|---|---|",
    ]
    for row in search_rows:
        runs = ([row["first_run"]] if "first_run" in row else []) + [row]
        for i, run in enumerate(runs):
            d, g = run["direct"], run["lockgate"]
            if i < len(runs) - 1:
                verdict = "failed, re-run below"
            else:
                verdict = "sustained" if row["pass"] else f"**not sustained**: {row['why']}"
            out.append(
                f"| {run['rate']} | {d['achieved_rps']:.0f} / {fmt(d['p99'])} | {g['achieved_rps']:.0f} / "
                f"{fmt(g['p50'])} / {fmt(g['p99'])} | {run['added_p99']:.2f} | {errors_str(d)} / {errors_str(g)} | "
                f"{cpu_str(g)} | {verdict} |"
            )
    out += [
        "",
        f"**Max sustained: {best} req/s** - {stop_reason}.",
        "",
        "## Memory",
        "",
        f"- Idle right after start: {rss_idle / MB:.1f} MB",
        f"- Before the memory phase (warm): {mem['before'] / MB:.1f} MB",
        f"- After {done:,} requests at {mem['rate']} req/s: {mem['after'] / MB:.1f} MB (growth **{growth:+.1f} MB**)",
        f"- During the phase: achieved {mr['achieved_rps']:.0f} req/s, p50 {fmt(mr['p50'])} / p99 {fmt(mr['p99'])} "
        f"ms, errors {errors_str(mr)}, sent {mr['sent']:,} of {mr['planned']:,} planned",
        "- Per process after: "
        + "; ".join(f"pid {pid} `{cmd}` {rss / MB:.1f} MB" for pid, cmd, rss in mem["per_proc"]),
        "",
        "MB = 2^20 bytes. RSS counts shared pages (libraries) once per process; the growth is what matters.",
        "",
        *guard_section(guard, args),
        *profile_section(prof, prof_rate),
        "## Notes",
        "",
        "- All three parties share 2 cores, so latencies include CPU contention between them: in a Lockgate step "
        "the gateway's workers take CPU from the upstream and the load generator too, while in a direct step the "
        "gateway is idle. Added latency therefore includes the effect of the gateway's CPU use on the whole box.",
        "- Load-generator send lag (max, ms) in the Lockgate steps: "
        + ", ".join(
            f"{'stream' if s else 'json'}@{r}: {bench.cache[('lockgate', s, r)]['max_send_lag_ms']:.1f}"
            for s in (False, True) for r in MATRIX_RATES
        )
        + " (timer and CPU delays of the generator itself; they count in latency, for direct runs too).",
        "- Gateway restarts during the run: " + ("; ".join(bench.restarts) if bench.restarts else "none") + ".",
    ]
    foreign = sorted({(k, round(r["cpu"]["foreign"], 2)) for k, r in bench.cache.items()
                      if r["cpu"]["foreign"] > FOREIGN_LIMIT}, key=lambda x: -x[1])
    if foreign:
        out.append(
            "- **Other load on the machine:** in some steps the machine used noticeably more CPU than the "
            "benchmark's own processes (another user's work): "
            + ", ".join(f"{t} {'stream' if st else 'json'} {rate}/s: +{c:.2f} cores"
                        for (t, st, rate), c in foreign[:8])
            + ". Those steps had less CPU than the table suggests."
        )
    if args.quick:
        out.append("- This was a `--quick` run: short steps and fewer memory-phase requests; numbers are noisier.")
    out.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Latency and memory Lockgate adds over a direct upstream.")
    parser.add_argument("--quick", action="store_true", help="short run (under 90 s)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per step (default 4, quick 1.2)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per step (default 1, quick 0.3)")
    parser.add_argument("--workers", type=int, default=2, help="gateway workers (default 2)")
    parser.add_argument("--memory-requests", type=int, default=None,
                        help="requests in the memory phase (default 100000, quick 10000)")
    parser.add_argument("--profile", dest="profile", action="store_true", default=None,
                        help="py-spy the workers under 500 req/s (+20 s); by default done when p99 added at 500 "
                        "req/s is above 5 ms (not with --quick)")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--log-level", default=None, help="LOCKGATE_LOG_LEVEL for the gateway (default: its own)")
    parser.add_argument("--guards", choices=("default", "off"), default="default",
                        help="the release's guards: the default policy (default), or none at all")
    parser.add_argument("--guard-rounds", type=int, default=None,
                        help="rounds of direct / guards off / default guards per load in the guard comparison "
                        "(default 2, quick 1)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness for the benchmark and every process it starts (negative needs root); on a "
                        "machine busy with other work, e.g. -10 keeps that work from distorting the measurement")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "overhead.md")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data, profiles)")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 1.2 if args.quick else 4.0
    if args.warmup is None:
        args.warmup = 0.3 if args.quick else 1.0
    if args.memory_requests is None:
        args.memory_requests = 10_000 if args.quick else 100_000
    if args.guard_rounds is None:
        args.guard_rounds = 1 if args.quick else 2
    args.pause = 0.2 if args.quick else 0.3
    # Time budget (seconds from the start): the search may start new steps until `search_until_s`;
    # the memory phase's sending stops so that the whole run ends by about `budget_s`.
    # The guard comparison runs between the search and the memory phase.
    args.budget_s = 84.0 if args.quick else 450.0
    args.search_until_s = 42.0 if args.quick else 200.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    t_start = time.monotonic()
    exe = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(str(REPO)) else sys.executable
    command = " ".join([exe, "bench/overhead.py", *map(shlex.quote, sys.argv[1:])])

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Explicitly, SIGINT included: a shell starts background jobs with SIGINT ignored, and Python
    # then would not turn it into KeyboardInterrupt.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if args.nice:
        # Inherited by everything started from here on: upstream, gateway (and its workers), loadgen.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    bench = Bench(args, procs, workdir)
    summary, guard_summary, code = "", "", 1
    try:
        busy_before = wait_for_quiet(3.0 if args.quick else 20.0)
        t_start = time.monotonic()  # the time budget starts once the machine is as quiet as it will get
        log(f"starting fake upstream and lockgate serve --workers {args.workers} in {workdir}")
        bench.start()
        assert bench.gw_proc is not None
        rss_idle = rss_bytes(bench.gw_proc.pid)
        bench.warm_up()
        bench.rerun_until = time.monotonic() + (0.0 if args.quick else 150.0)
        bench.matrix()
        # The run is bounded: the search gets until `search_until`, the memory phase what is left.
        best, rows, stop_reason = bench.search(t_start + args.search_until_s)
        guard = bench.guard_comparison()
        guard_extra = next(r for r in guard["rows"] if r["rate"] == 500)["extra"][99]
        guard_summary = f"guard_p99_extra_ms_at_500rps={guard_extra:.2f}"
        mem_rate = bench.throughput_rate(best)
        mem_time = args.budget_s - (time.monotonic() - t_start) - 12.0 - (0.0 if args.profile is False else 28.0)
        mem_time = max(10.0, mem_time)
        mem = bench.memory(mem_rate, args.memory_requests, max_s=mem_time)
        d500, g500 = bench.cache[("direct", False, 500)], bench.cache[("lockgate", False, 500)]
        p99_added = g500["p99"] - d500["p99"]
        prof_rate = 500
        if args.profile is None:
            args.profile = not args.quick and not p99_added <= PROFILE_IF_ADDED_MS
        prof = bench.profile(prof_rate, 10.0) if args.profile else {}
        growth = (mem["after"] - mem["before"]) / MB
        summary = f"p99_added_ms_at_500rps={p99_added:.2f} max_rps={best} rss_growth_mb={growth:.1f}"
        runtime = time.monotonic() - t_start
        write_report(args.out, command=command, started=started, runtime_s=runtime, args=args, bench=bench,
                     best=best, search_rows=rows, stop_reason=stop_reason, mem=mem, rss_idle=rss_idle,
                     summary=summary, prof=prof, prof_rate=prof_rate, busy_before=busy_before, guard=guard,
                     guard_summary=guard_summary)
        log(f"wrote {os.path.relpath(args.out, Path.cwd())} after {runtime:.0f} s")
        code = 0
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        if bench.lg is not None:
            bench.lg.close()
        procs.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if summary:
        print(guard_summary, flush=True)
        print(summary, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
