"""Lockgate against LiteLLM's proxy: the same upstream, the same open-loop load, one run.

Run from the repository root:

    .venv/bin/python bench/peers.py --setup   # only create LiteLLM's venv (a full run does it when missing)
    .venv/bin/python bench/peers.py           # full run, 10 to 15 minutes
    .venv/bin/python bench/peers.py --quick   # smoke check, about 5 minutes (LiteLLM restarts after overloads)
    .venv/bin/python bench/peers.py --nice -10  # as for bench/results/peers.md, on a machine shared with others

One run starts the fake upstream (`python -m lockgate.devtools.fake_upstream`), three gateways in front of
it with the same number of workers - `lockgate serve` with guards off, `lockgate serve` with its default
guards, and LiteLLM's proxy (`litellm --config ... --num_workers N`, pip-installed into a venv of its own
outside the repository) - and the open-loop load generator of `bench/loadgen.py` in a process of its own.
Then, with the same request bytes for every target:

1. a matrix at 100, 500 and 1000 req/s: at each load the upstream directly, then each gateway in turn;
   added latency = gateway percentile - direct percentile at that load;
2. for each gateway, a search for the highest offered load it sustains: achieved >= 95% of offered,
   errors < 1% and p99 < 50 ms (doubling from 100/s, then bisection);
3. each gateway's resident memory (RSS summed over its process tree): after start, warm, and after a
   fixed number of requests at its own sustained load;
4. when Lockgate misses the goal (or with --profile), a py-spy profile of Lockgate's workers at 500 req/s.

It writes bench/results/peers.md and prints as its last line
`throughput_ratio_vs_litellm=<x> p99_ratio_at_500rps=<y>`: Lockgate (default guards) max sustained
req/s over LiteLLM's, and LiteLLM's p99 added latency at 500 req/s over Lockgate's (default guards),
so higher is better in both. Every process it starts is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadGen  # noqa: E402
from overhead import (  # noqa: E402
    MB,
    Bench,
    Processes,
    cpu_seconds,
    errors_str,
    fmt,
    free_port,
    log,
    machine,
    profile_section,
    rss_bytes,
    tree,
    wait_for_quiet,
    wait_http,
    wait_port,
)

REPO = Path(__file__).resolve().parents[1]
MATRIX_RATES = (100, 500, 1000)
RATIO_RATE = 500  # the p99 ratio is taken at this load
P99_LIMIT_MS = 50.0
MAX_ERROR_SHARE = 0.01
MIN_ACHIEVED = 0.95
SEARCH_START, SEARCH_CAP, SEARCH_FLOOR, SEARCH_GRAIN = 100, 3200, 10, 25
FINE_GRAIN = 5
P99_FLOOR_MS = 0.1  # a p99 added below this (noise can make it ~0 or negative) counts as this in the ratio
GOAL = 3.0
WARMUP_RATES, WARMUP_S = (5, 20), 4.0
GATEWAYS = ("lockgate-off", "lockgate-default", "litellm")
HEADLINE = "lockgate-default"  # the ratios printed last compare Lockgate as shipped (default guards)

# LiteLLM: the newest release the package index reachable here can install. 1.108.x and later need
# certifi>=2026.10.19, which the index does not have; 1.107.0 was a compromised release and is not served.
LITELLM_VERSION = "1.106.2"
# Only for `--litellm-database-url`: the Prisma client LiteLLM's database layer uses.
PRISMA_VERSION = "0.15.0"
LITELLM_HOME = Path(os.environ.get("LOCKGATE_PEERS_HOME", Path.home() / ".cache" / "lockgate" / "peers"))
LITELLM_MASTER_KEY = "sk-lockgate-bench-master"
# LiteLLM's documented production settings that apply without a database: LITELLM_LOG=ERROR is the
# proxy's log level (it also sets uvicorn's, which turns off the per-request access log line);
# LITELLM_MODE=PRODUCTION stops it loading a .env; LITELLM_LOCAL_MODEL_COST_MAP=True uses the cost map
# shipped in the package instead of fetching it at start (this machine has no internet, and the fetch
# only delays start-up). PYTHONPATH is cleared so Lockgate's source is not on LiteLLM's path.
LITELLM_ENV = {"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "PYTHONPATH": ""}
LITELLM_DEPS = ("litellm", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "httpx", "aiohttp", "openai",
                "pydantic", "orjson")


# -- pure parts: verdict, search, ratios ------------------------------------------------------------


def sustained(r: dict[str, Any]) -> tuple[bool, str]:
    """A step is sustained when the gateway carried the load (achieved >= 95% of offered), failed
    fewer than 1% of the requests and kept p99 under 50 ms; otherwise says what failed."""
    rate = r["offered_rps"]
    problems = []
    if r["achieved_rps"] < MIN_ACHIEVED * rate:
        problems.append(f"achieved {r['achieved_rps']:.0f}/s < {MIN_ACHIEVED:.0%}")
    attempted = r["ok"] + r["error_count"]
    if attempted == 0 or r["error_count"] / attempted >= MAX_ERROR_SHARE:
        problems.append(f"errors {r['error_count']} of {attempted}")
    if not r["p99"] < P99_LIMIT_MS:
        problems.append(f"p99 {fmt(r['p99'], 1)} ms >= {P99_LIMIT_MS:g}")
    return not problems, ", ".join(problems)


def _on_grain(x: float, grain: int) -> int:
    return int(round(x / grain)) * grain


def search_max_rate(passes: Callable[[int], bool], *, start: int = SEARCH_START, cap: int = SEARCH_CAP,
                    floor: int = SEARCH_FLOOR, grain: int = SEARCH_GRAIN) -> int:
    """The highest load for which `passes` holds, 0 if not even `floor`.

    Doubles from `start` while loads pass (up to `cap`); when `start` itself fails, halves down to
    `floor`. Then bisects between the last pass and the first failure until they are within 10% of
    the pass, on multiples of `grain` (of 5 below 4 x `grain`, so a slow gateway is resolved as finely
    as a fast one). Loads go up while doubling, so an overloaded gateway is met once per bisection
    step, not at every step."""
    lo, hi = 0, 0
    rate = start
    while True:
        if passes(rate):
            lo = rate
            if rate >= cap:
                return lo
            rate = min(rate * 2, cap)
        else:
            hi = rate
            break
    if lo == 0:
        rate = _on_grain(hi / 2, FINE_GRAIN)
        while rate >= floor:
            if passes(rate):
                lo = rate
                break
            hi = rate
            rate = _on_grain(rate / 2, FINE_GRAIN)
        if lo == 0:
            return 0
    while True:
        unit = grain if lo >= 4 * grain else FINE_GRAIN
        if hi - lo <= max(unit, lo // 10):
            return lo
        mid = _on_grain((lo + hi) / 2, unit)
        if not lo < mid < hi:
            return lo
        if passes(mid):
            lo = mid
        else:
            hi = mid


def throughput_ratio(lockgate_rps: float, litellm_rps: float) -> float:
    """Lockgate's max sustained load over LiteLLM's (inf when LiteLLM sustained none at all)."""
    if litellm_rps <= 0:
        return math.inf if lockgate_rps > 0 else math.nan
    return lockgate_rps / litellm_rps


def p99_ratio(litellm_added_ms: float, lockgate_added_ms: float) -> float:
    """LiteLLM's p99 added latency over Lockgate's. Lockgate's is floored at 0.1 ms: a difference of two
    p99s can come out at zero or below from noise alone, and must not make the ratio blow up or flip sign."""
    return litellm_added_ms / max(lockgate_added_ms, P99_FLOOR_MS)


# -- LiteLLM's own venv -----------------------------------------------------------------------------


def litellm_python(home: Path) -> Path:
    return home / "litellm-venv" / "bin" / "python"


def installed_versions(python: Path, dists: tuple[str, ...]) -> dict[str, str]:
    """Versions of `dists` installed for another interpreter (missing ones are left out)."""
    code = ("import importlib.metadata as m, json, sys\nout = {}\nfor d in sys.argv[1:]:\n"
            "    try: out[d] = m.version(d)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))")
    try:
        out = subprocess.run([str(python), "-c", code, *dists], capture_output=True, text=True, timeout=60,
                             check=True, env={**os.environ, "PYTHONPATH": ""})
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(json.loads(out.stdout))


def ensure_litellm(home: Path, version: str, *, with_prisma: bool) -> Path:
    """LiteLLM's proxy in a venv of its own under `home` (never in the repository), installed with
    pip as its documentation says (`pip install 'litellm[proxy]'`), pinned to `version`."""
    python = litellm_python(home)
    wanted = {"litellm": version, **({"prisma": PRISMA_VERSION} if with_prisma else {})}
    if python.exists() and all(installed_versions(python, tuple(wanted)).get(k) == v for k, v in wanted.items()):
        return python.with_name("litellm")
    home.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    if not python.exists():
        log(f"creating LiteLLM's venv in {python.parent.parent} (with {base})")
        subprocess.run([base, "-m", "venv", str(python.parent.parent)], check=True)
    specs = [f"litellm[proxy]=={version}", *([f"prisma=={PRISMA_VERSION}"] if with_prisma else [])]
    log(f"pip install {' '.join(specs)} into LiteLLM's venv (a few minutes the first time)")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *specs], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""}, check=False)
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("WARNING")]
        raise RuntimeError(f"installing {' '.join(specs)} failed (pip exit {done.returncode}):\n"
                           + "\n".join(errors[-15:]) + "\nPick a release the package index has with --litellm-version.")
    return python.with_name("litellm")


# -- the gateways ---------------------------------------------------------------------------------


class LiteLLMGateway(Bench):
    """LiteLLM's proxy driven through the same `Bench` machinery as Lockgate (steps, settling after an
    overload, restarts, RSS): only how it is configured, keyed and started differs."""

    def __init__(self, args: argparse.Namespace, procs: Processes, workdir: Path, exe: Path) -> None:
        super().__init__(args, procs, workdir)
        self.exe = exe
        self.config = workdir / "litellm.yaml"
        self.gw_log = workdir / "litellm.log"
        self.command: list[str] = []

    def write_config(self, path: Path, guards: str) -> None:
        """As LiteLLM's production docs lay it out: one model_list entry (an OpenAI-compatible
        endpoint at the fake upstream), the master key, verbose logging off; the database only when
        given (see the report for why it is not used by default)."""
        db = f"  database_url: {self.args.litellm_database_url}\n" if self.args.litellm_database_url else ""
        path.write_text(
            "model_list:\n"
            "  - model_name: bench\n"
            "    litellm_params:\n"
            "      model: openai/fake-model\n"
            f"      api_base: http://127.0.0.1:{self.up_port}/v1\n"
            "      api_key: fake-key\n"
            "general_settings:\n"
            f"  master_key: {LITELLM_MASTER_KEY}\n"
            + db
            + "litellm_settings:\n"
            "  set_verbose: false\n"
        )

    def create_key(self, data_dir: Path) -> str:
        return LITELLM_MASTER_KEY  # without a database LiteLLM has no virtual keys: the master key it is

    def start_gateway(self) -> None:
        self.command = [str(self.exe), "--config", str(self.config), "--host", "127.0.0.1", "--port",
                        str(self.gw_port), "--num_workers", str(self.args.workers)]
        self.gw_proc = self.procs.spawn(self.command, self.gw_log, env=LITELLM_ENV)
        renice_session(self.gw_proc.pid, self.args.nice)
        wait_http(f"http://127.0.0.1:{self.gw_port}/health/liveliness", self.gw_proc, self.gw_log, timeout_s=240)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.worker_pids = [p.pid for p in tree(self.gw_proc.pid)[1:] if "spawn_main" in _cmdline(p)]
            if len(self.worker_pids) >= self.args.workers:
                break
            time.sleep(0.2)
        # /health/liveliness answers as soon as one worker is up, while the others may still be
        # importing (many seconds of CPU each): wait until the whole tree is idle.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            c0, t0 = cpu_seconds(self.gw_proc.pid), time.monotonic()
            time.sleep(1.0)
            if (cpu_seconds(self.gw_proc.pid) - c0) / (time.monotonic() - t0) < 0.1:
                break


def renice_session(pid: int, nice: int) -> None:
    """Gives the scheduling group of `pid`'s session the niceness `nice`.

    With the kernel's autogroup scheduling (Linux's default for desktops and this machine), CPU is
    shared between sessions first and a process's own niceness only counts within its session; every
    gateway and the upstream run in a session of their own (so their whole tree can be signalled), so
    `--nice` has to be set on each session's group as well."""
    if not nice:
        return
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


class LockgateGateway(Bench):
    """`lockgate serve` as `bench/overhead.py` starts it, with `--nice` applied to its session."""

    def start_gateway(self) -> None:
        super().start_gateway()
        assert self.gw_proc is not None
        renice_session(self.gw_proc.pid, self.args.nice)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


class Peers:
    """The shared upstream and load generator, the three gateways, and every measurement."""

    def __init__(self, args: argparse.Namespace, procs: Processes, workdir: Path) -> None:
        self.args, self.procs, self.workdir = args, procs, workdir
        self.gateways: dict[str, Bench] = {}
        self.matrix: dict[tuple[str, int], dict[str, Any]] = {}
        self.search_rows: dict[str, list[dict[str, Any]]] = {}
        self.best: dict[str, int] = {}
        self.memory: dict[str, dict[str, Any]] = {}
        self.idle_cpu: dict[str, float] = {}
        self.lg: LoadGen | None = None
        self.up_proc: subprocess.Popen[bytes] | None = None

    @property
    def any(self) -> Bench:
        return next(iter(self.gateways.values()))

    def start(self, litellm_exe: Path) -> None:
        up_port = free_port()
        up_log = self.workdir / "upstream.log"
        self.up_proc = self.procs.spawn(
            [sys.executable, "-m", "lockgate.devtools.fake_upstream", "--port", str(up_port)], up_log)
        renice_session(self.up_proc.pid, self.args.nice)
        wait_port(up_port, self.up_proc, up_log)
        self.lg = LoadGen().start()
        for name in GATEWAYS:
            gdir = self.workdir / name
            gdir.mkdir()
            g: Bench = (LiteLLMGateway(self.args, self.procs, gdir, litellm_exe) if name == "litellm"
                        else LockgateGateway(self.args, self.procs, gdir))
            g.up_port, g.up_proc, g.lg = up_port, self.up_proc, self.lg
            g.write_config(g.config, "off" if name == "lockgate-off" else "default")
            g.key = g.create_key(g.data_dir)
            g.gw_port = free_port()
            t0 = time.monotonic()
            g.start_gateway()
            assert g.gw_proc is not None
            self.memory[name] = {"start_s": time.monotonic() - t0, "idle": rss_bytes(g.gw_proc.pid)}
            log(f"  {name} ready on port {g.gw_port} after {self.memory[name]['start_s']:.1f} s "
                f"(workers {g.worker_pids}, RSS {self.memory[name]['idle'] / MB:.0f} MB)")
            self.gateways[name] = g
        self.measure_idle_cpu()

    def measure_idle_cpu(self) -> None:
        """What each gateway burns doing nothing (background tasks): they all run during every step."""
        c0 = {n: cpu_seconds(g.gw_proc.pid) for n, g in self.gateways.items() if g.gw_proc}
        time.sleep(3.0)
        self.idle_cpu = {n: (cpu_seconds(g.gw_proc.pid) - c0[n]) / 3.0 for n, g in self.gateways.items()
                         if g.gw_proc}
        log("  idle CPU (cores): " + ", ".join(f"{n} {c:.3f}" for n, c in self.idle_cpu.items()))

    def step(self, name: str, rate: int, **kw: Any) -> dict[str, Any]:
        """One measured step; a gateway restarted after it (overloaded) is warmed again before the next,
        so no step measures a cold start (LiteLLM's first requests after a start take seconds)."""
        if name == "direct":
            return self.any.step("direct", False, rate, **kw)
        g = self.gateways[name]
        restarts = len(g.restarts)
        r = g.step("lockgate", False, rate, label=name, **kw)
        if len(g.restarts) > restarts:
            self.warm(name)
        return r

    def warm(self, name: str) -> dict[str, Any]:
        """A few requests a second, then more (WARMUP_RATES): not measured, returns the last step."""
        r: dict[str, Any] = {}
        for rate in WARMUP_RATES:
            if name == "direct":
                r = self.any.step("direct", False, rate, duration=WARMUP_S, warmup=0.0, quiet=True)
            else:
                r = self.gateways[name].step("lockgate", False, rate, duration=WARMUP_S, warmup=0.0, quiet=True,
                                             settle=False)
        return r

    def warm_up(self) -> None:
        # Gently: LiteLLM's first requests take up to a second each (lazy imports and set-up in its
        # workers), so a warm-up at 100/s would overload it and measure nothing but its cold start.
        log(f"warm-up (not recorded): {' then '.join(map(str, WARMUP_RATES))}/s for {WARMUP_S:g} s each, per target")
        for name in ("direct", *GATEWAYS):
            r = self.warm(name)
            if r["ok"] == 0 or r["error_count"] > 0.01 * r["ok"]:
                g = self.gateways.get(name, self.any)
                raise RuntimeError(f"warm-up against {name} failed: {r['errors']}; a request now gets: "
                                   f"{g.sample_answer()}; log: {g.gw_log}")
        for name, g in self.gateways.items():
            assert g.gw_proc is not None
            self.memory[name]["warm"] = rss_bytes(g.gw_proc.pid)

    def run_matrix(self) -> None:
        log(f"matrix at {', '.join(map(str, MATRIX_RATES))} req/s: direct, then each gateway")
        for rate in MATRIX_RATES:
            for name in ("direct", *GATEWAYS):
                self.matrix[(name, rate)] = self.step(name, rate)

    def run_search(self) -> None:
        for name in GATEWAYS:
            log(f"max-rate search for {name} (sustained: achieved >= {MIN_ACHIEVED:.0%}, errors < "
                f"{MAX_ERROR_SHARE:.0%}, p99 < {P99_LIMIT_MS:g} ms)")
            rows: list[dict[str, Any]] = []

            def passes(rate: int, name: str = name, rows: list[dict[str, Any]] = rows) -> bool:
                r = self.step(name, rate)
                ok, why = sustained(r)
                rows.append({"rate": rate, "r": r, "ok": ok, "why": why})
                if not ok and not self.args.quick:  # one noisy step on a shared 2-core box is not a verdict
                    r2 = self.step(name, rate)
                    ok, why2 = sustained(r2)
                    rows.append({"rate": rate, "r": r2, "ok": ok, "why": why2, "rerun": True})
                return ok

            self.best[name] = search_max_rate(passes, start=self.args.search_start)
            self.search_rows[name] = rows
            log(f"  {name}: max sustained {self.best[name]}/s")

    def run_memory(self) -> None:
        n = self.args.memory_requests
        for name, g in self.gateways.items():
            assert g.gw_proc is not None
            rate = max(SEARCH_FLOOR, self.best.get(name, 0))
            log(f"memory: {name}, {n:,} requests at its max sustained load {rate}/s")
            self.step(name, rate, n=max(100, rate * 2), quiet=True)  # warm (it may have been restarted)
            time.sleep(1.0)
            before = rss_bytes(g.gw_proc.pid)
            r = self.step(name, rate, n=n, max_s=n / rate * 1.5 + 5)
            time.sleep(2.0)
            self.memory[name].update({"before": before, "after": rss_bytes(g.gw_proc.pid), "rate": rate, "n": n,
                                      "result": r, "restarts": len(g.restarts),
                                      "procs": len(tree(g.gw_proc.pid))})


# -- report ---------------------------------------------------------------------------------------


def added(g: dict[str, Any], d: dict[str, Any], q: int) -> float:
    return float(g[f"p{q}"] - d[f"p{q}"])


def cpu_cell(r: dict[str, Any]) -> str:
    c = r["cpu"]
    other = f" (+{c['foreign']:.2f} other!)" if c["foreign"] > 0.3 else ""
    return f"{c['lockgate']:.2f} / {c['upstream']:.2f} / {c['loadgen']:.2f} / {c['machine']:.2f}{other}"


def write_report(path: Path, p: Peers, *, command: str, started: dt.datetime, runtime_s: float,
                 load_before: str, load_after: str, versions: dict[str, str], summary: str,
                 ratios: dict[str, dict[str, float]], prof: dict[str, Any], db_note: list[str]) -> None:
    args = p.args
    m = machine()
    lite: LiteLLMGateway = p.gateways["litellm"]  # type: ignore[assignment]
    d_rate = {rate: p.matrix[("direct", rate)] for rate in MATRIX_RATES}
    lines = [
        "# Lockgate vs LiteLLM proxy: throughput, added latency, memory",
        "",
        f"- **Command:** `{command}` (from the repository root)",
        f"- **Date:** {started.isoformat(timespec='seconds')}; script runtime {runtime_s:.0f} s",
        f"- **Machine:** nproc {m['nproc']} (usable {m['affinity']}), CPU `{m['cpu']}`, {m['memory']} RAM, "
        f"Linux {m['kernel']}. Shared with other people's work: load average (`uptime`) at the start: "
        f"`{load_before}`; at the end: `{load_after}`.",
        f"- **Lockgate:** this repository at `{git_rev()}`, Python {m['python']}; {m['versions']}",
        f"- **LiteLLM:** {', '.join(f'{k} {v}' for k, v in versions.items())} (own venv, Python 3.11, "
        f"`pip install 'litellm[proxy]=={args.litellm_version}'`)",
        f"- **Workers:** {args.workers} for every gateway.",
        "",
        "## Summary",
        "",
        "| gateway | max sustained req/s | p99 added at 500 req/s ms | errors at 500 req/s | "
        f"gateway CPU per request at {MATRIX_RATES[0]} req/s ms | RSS warm -> after memory phase MB |",
        "|---|---:|---:|---|---:|---|",
    ]
    for name in GATEWAYS:
        mem = p.memory[name]
        g500 = p.matrix[(name, RATIO_RATE)]
        p99_added = fmt(added(g500, d_rate[RATIO_RATE], 99))
        lines.append(f"| {name} | **{p.best[name]}** | **{p99_added}** | {errors_str(g500)} | "
                     f"{fmt(cpu_ms_per_request(p.matrix[(name, MATRIX_RATES[0])]), 1)} | "
                     f"{mem['before'] / MB:.0f} -> {mem['after'] / MB:.0f} |")
    lines += [
        "",
        "Ratios (goal: at least 3 on both; throughput = Lockgate / LiteLLM, p99 = LiteLLM / Lockgate, "
        "so higher is better in both):",
        "",
        "| Lockgate | throughput ratio | p99 ratio at 500 req/s |",
        "|---|---:|---:|",
        *[f"| {name} | {fmt(r['throughput'])} | {fmt(r['p99'])} |" for name, r in ratios.items()],
        "",
        f"The last line printed (Lockgate with its default guards): `{summary}`",
        "",
        *p99_caveat(p.matrix[("litellm", RATIO_RATE)]),
        f"## Added latency at {', '.join(map(str, MATRIX_RATES))} req/s (non-streaming)",
        "",
        "Added = gateway percentile - direct percentile at the same offered load, all measured in this run, one "
        "after the other. Send lag = how late the load generator's latest request went out against its "
        "schedule (it does not stop latency being counted from the due time). CPU in cores over the step "
        "(1.00 = one full core, 2.00 = the whole machine).",
        "",
        "| offered req/s | target | achieved req/s | p50 / p95 / p99 ms | **added p50 / p95 / p99 ms** | errors | "
        "max send lag ms | CPU: target / upstream / loadgen / machine |",
        "|---:|---|---:|---|---|---|---:|---|",
    ]
    for rate in MATRIX_RATES:
        d = d_rate[rate]
        for name in ("direct", *GATEWAYS):
            r = p.matrix[(name, rate)]
            add = "-" if name == "direct" else " / ".join(fmt(added(r, d, q)) for q in (50, 95, 99))
            lines.append(f"| {rate} | {name} | {r['achieved_rps']:.0f} | "
                         f"{fmt(r['p50'])} / {fmt(r['p95'])} / {fmt(r['p99'])} | **{add}** | {errors_str(r)} | "
                         f"{fmt(r['max_send_lag_ms'], 1)} | {cpu_cell(r)} |")
    lines += [
        "",
        "## Max sustained load",
        "",
        f"Sustained = achieved >= {MIN_ACHIEVED:.0%} of offered, errors < {MAX_ERROR_SHARE:.0%} of requests, "
        f"p99 (end to end, as the client sees it) < {P99_LIMIT_MS:g} ms. Search: doubling from "
        f"{args.search_start}/s (halving to {SEARCH_FLOOR}/s if that fails), then bisection on multiples of "
        f"{SEARCH_GRAIN}/s ({FINE_GRAIN}/s below {4 * SEARCH_GRAIN}/s) until the last pass and the first failure "
        f"are within 10% (or one multiple). A gateway restarted after an overloaded step is warmed again "
        f"(as at the start) before its next step. "
        + ("A failing load is measured once more and fails only if both runs fail (one noisy step on a shared "
           "2-core machine is not a verdict)." if not args.quick else "Quick mode: no re-runs."),
        "",
        "| gateway | offered req/s | achieved | p50 / p99 ms | errors | max send lag ms | gateway CPU | verdict |",
        "|---|---:|---:|---|---|---:|---:|---|",
    ]
    for name in GATEWAYS:
        for row in p.search_rows[name]:
            r = row["r"]
            verdict = "sustained" if sustained(r)[0] else f"not sustained: {row['why']}"
            lines.append(f"| {name} | {row['rate']}{' (re-run)' if row.get('rerun') else ''} | "
                         f"{r['achieved_rps']:.0f} | {fmt(r['p50'])} / {fmt(r['p99'])} | {errors_str(r)} | "
                         f"{fmt(r['max_send_lag_ms'], 1)} | {r['cpu']['lockgate']:.2f} | {verdict} |")
    lines += ["", *[f"- **{name}: {p.best[name]} req/s**" for name in GATEWAYS], ""]
    lines += [
        "## Resident memory",
        "",
        "RSS summed over each gateway's process tree (psutil; supervisor + workers + helpers; shared library "
        "pages count once per process). Warm = after a short warm-up on the process that then takes the memory "
        "phase: the same number of requests for every gateway, at its own max sustained load, so none of them "
        "is measured while collapsing.",
        "",
        "| gateway | processes | start-up s | RSS idle after start MB | after warm-up MB | warm before phase MB | "
        "after phase MB | phase | restarts during the run |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name in GATEWAYS:
        mem = p.memory[name]
        r = mem["result"]
        lines.append(
            f"| {name} | {mem['procs']} | {mem['start_s']:.1f} | {mem['idle'] / MB:.0f} | {mem['warm'] / MB:.0f} | "
            f"{mem['before'] / MB:.0f} | {mem['after'] / MB:.0f} | {mem['n']:,} req at {mem['rate']}/s: achieved "
            f"{r['achieved_rps']:.0f}/s, p99 {fmt(r['p99'])} ms, errors {errors_str(r)} | {mem['restarts']} |")
    lines += ["", "Restarts (after an overloaded step, see Method):", ""]
    for name, g in p.gateways.items():
        lines += [f"- {name}: {why}" for why in g.restarts] or [f"- {name}: none"]
    lines += [
        "",
        "## LiteLLM's database",
        "",
        *db_note,
        "",
        "## Method",
        "",
        f"- **Processes.** The fake upstream (`python -m lockgate.devtools.fake_upstream`: one process, uvloop + "
        f"httptools, pre-shaped answers, well under 1 ms; the direct rows show it). Three gateways, all running "
        f"for the whole run, each with {args.workers} workers: `lockgate serve --config F --port P --data-dir D "
        f"--workers {args.workers}` twice, with a config of one route `bench` whose release calls the fake over "
        "HTTP, everything else default (key auth and rate limiting on SQLite, traces journaled into SQLite, "
        "Prometheus metrics, the gateway's default log level), once with `guards: {input: [], output: []}` on "
        "the release (**lockgate-off**) and once with nothing, i.e. the default guard policy (**lockgate-default**: "
        "input unicode, limits, secrets, pii, injection; output secrets, pii, system_prompt_leak, refusal); each "
        "with an API key from `lockgate keys create --rpm 10000000 --tpm 1000000000`. And **litellm**: "
        f"`{' '.join(lite.command[:1])} --config litellm.yaml --host 127.0.0.1 --port P --num_workers "
        f"{args.workers}` with environment {', '.join(f'`{k}={v}`' for k, v in LITELLM_ENV.items())}, and this "
        "config:",
        "",
        "```yaml",
        *lite.config.read_text().replace(str(lite.up_port), "UPSTREAM_PORT").splitlines(),
        "```",
        "",
        "  Why these LiteLLM settings: its production page says to set a master key, keep `set_verbose` off and "
        "size workers to the machine; `--num_workers` is its documented CLI flag (uvicorn, its default server); "
        "`LITELLM_LOG=ERROR` is its documented log level variable and also makes it start uvicorn at ERROR, so "
        "no access log line is written per request (Lockgate writes none either); `LITELLM_MODE=PRODUCTION` "
        "stops it loading a `.env`; `LITELLM_LOCAL_MODEL_COST_MAP=True` uses the cost map in the package, as "
        "this machine cannot fetch it (only start-up is affected). Requests carry the master key "
        "(`Authorization: Bearer`), as a client of a LiteLLM proxy without a database must. Settings that only "
        "matter with a database (`proxy_batch_write_at`, `database_connection_pool_limit`, "
        "`disable_error_logs`, `allow_requests_on_db_unavailable`) are moot without one; alerting (Slack) needs "
        "the internet. Idle CPU of each gateway while the others were measured (cores): "
        + ", ".join(f"{n} {c:.3f}" for n, c in p.idle_cpu.items()) + ".",
        "- **Request.** The same bytes for every target: `POST /v1/chat/completions`, model `bench`, a "
        "2-message chat (system + 61-character user message), `max_tokens: 32`, non-streaming, the same "
        "`Authorization` header shape. The fake echoes the prompt, so the default guards run to the end "
        "(nothing is blocked).",
        f"- **Load generator.** `bench/loadgen.py`, the one `bench/overhead.py` uses, in a process of its own: "
        f"open loop (request i is due at t0 + i/rate whatever earlier ones did, so a slow gateway cannot slow the "
        f"arrivals and hide its latency: no coordinated omission), raw asyncio HTTP/1.1 on uvloop with httptools, "
        f"keep-alive pool of up to 512 connections (32 pre-opened one by one), latency from the due time to the "
        f"last byte. Each step: {args.warmup:g} s warm-up (not counted) + {args.duration:g} s measured; requests "
        f"unanswered 3 s after the last send count as `timeout` errors. Why this one and not a compiled tool: "
        "Debian (bookworm) has `wrk` and `hey`, both closed-loop (each connection waits for its answer before "
        "sending again, so a slow gateway slows the arrivals and hides its queueing), and neither vegeta nor "
        "wrk2. This generator is open-loop and light "
        f"({p.matrix[('direct', MATRIX_RATES[-1])]['cpu']['loadgen']:.2f} core at {MATRIX_RATES[-1]} req/s), "
        f"but it shares 2 cores with everything else, so it is not always on time: {schedule_note(p)}. A late "
        "send does not hide latency: it is counted from the request's due time, so lateness caused by a "
        "saturated machine shows up as gateway latency. "
        f"Nothing is pinned to cores: every gateway needs both cores for its {args.workers} workers, "
        "and all targets run under the same conditions, one after the other.",
        f"- **Order.** Warm-up of every target ({' then '.join(map(str, WARMUP_RATES))} req/s, {WARMUP_S:g} s "
        "each), then the matrix: at each "
        "load, direct, lockgate-off, lockgate-default, litellm; then the search, one gateway after the other; "
        "then the memory phase; then (if run) the profile.",
        "- **Between steps.** An overloaded step leaves a backlog the gateway keeps working through (a client "
        "giving up does not cancel the upstream call), which would poison the next step. After each gateway "
        "step, the gateway must go idle within 6 s and answer 3 probe requests; if it was overloaded (timeouts "
        "or < 90% achieved) or fails that check, it is restarted (same config, data dir and key). LiteLLM took "
        f"{p.memory['litellm']['start_s']:.0f} s to start (until every worker is up and idle), so its restarts "
        "cost time, not results.",
        "- **Noise.** The machine has 2 cores shared by the load generator, the upstream and the gateway, and "
        "with other people's work: the CPU column's `other!` marks steps where processes outside this benchmark "
        "took more than 0.3 cores. Single steps are noisy: the same gateway at the same load can pass in one step "
        "and fail in the next (see the re-runs in the search table), and the matrix and the search measure the "
        "same loads separately. "
        + (f"Every process of the benchmark (upstream, gateways, load generator) ran at niceness {args.nice}, "
           "and so did each of their sessions' scheduling groups (`/proc/PID/autogroup`: with autogroup "
           "scheduling, niceness alone only counts within a session), the same for every gateway, so the "
           "scheduler favours them over that other work."
           if args.nice else "Default niceness."),
    ]
    lines += [
        "",
        "## Where LiteLLM's time goes (a side check, by hand, not repeated by this script)",
        "",
        "When this benchmark was written, LiteLLM 1.106.2 was run alone (1 worker, same config and environment) "
        "at 30 and 40 req/s: about 13 ms of CPU per request (13.3 / 12.9 ms), against 2-3 ms for Lockgate "
        "(the CPU-per-request column above). `py-spy record` on its worker at 30 req/s: 28% of busy samples in "
        "the FastAPI app's request path, which runs through more than 15 ASGI middlewares (admission control, budget "
        "reservation, Redis request batching, Prometheus auth, billable-request metrics, security headers, "
        "gzip, CORS, ...) before reaching the router; 22% in `Router.acompletion` (routing, retries wrapper, "
        "the OpenAI SDK client, response model building); 16% in logging/success callbacks, partly on a thread "
        "pool; 8% pydantic; 5% cost calculation. Nothing in it waited on the network (no DNS or internet "
        "fetch per request). uvicorn parses HTTP with h11 in LiteLLM's venv, as `litellm[proxy]` does not "
        "install httptools; with httptools added, the CPU per request was the same (13.3 / 13.6 ms), so "
        "that is not what makes the difference.",
    ]
    if prof:
        lines += ["", *profile_section(prof, RATIO_RATE)]
    lines += ["", "```", summary, "```", ""]
    path.write_text("\n".join(lines))


def cpu_ms_per_request(r: dict[str, Any]) -> float:
    """The gateway's CPU (all its processes) per answered request, from the step's average cores."""
    return float(r["cpu"]["lockgate"] * 1000 / r["achieved_rps"]) if r["achieved_rps"] else math.nan


def all_steps(p: Peers) -> list[dict[str, Any]]:
    return [*p.matrix.values(), *(row["r"] for rows in p.search_rows.values() for row in rows)]


def schedule_note(p: Peers) -> str:
    """How late the load generator's sends were, over every matrix and search step of the run."""
    lags = sorted(r["max_send_lag_ms"] for r in all_steps(p))
    late = [r for r in all_steps(p) if r["max_send_lag_ms"] > 10]
    worst = max(all_steps(p), key=lambda r: r["max_send_lag_ms"])
    return (f"over the {len(lags)} matrix and search steps, the latest send of a step was a median "
            f"{lags[len(lags) // 2]:.1f} ms late; {len(late)} steps had a send more than 10 ms late, the worst "
            f"{worst['max_send_lag_ms']:.0f} ms ({worst['target'] if worst['target'] == 'direct' else 'a gateway'} "
            f"at {worst['offered_rps']:.0f}/s, when the machine was saturated)")


def p99_caveat(r: dict[str, Any]) -> list[str]:
    """Percentiles cover answered requests only: say so when LiteLLM failed many at the ratio's load."""
    attempted = r["ok"] + r["error_count"]
    if not attempted or r["error_count"] / attempted < MAX_ERROR_SHARE:
        return []
    return [f"LiteLLM failed {r['error_count']:,} of {attempted:,} requests at {RATIO_RATE} req/s "
            f"({errors_str(r)}; a request unanswered 3 s after the step's last send is a timeout). Latency "
            "percentiles cover answered requests only, so its p99 there, and the p99 ratio, are lower bounds: "
            "counting the failed requests as slow would only raise them.", ""]


def git_rev() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def database_note(args: argparse.Namespace) -> list[str]:
    if args.litellm_database_url:
        return [f"LiteLLM ran with `database_url: {args.litellm_database_url}` (given with --litellm-database-url)."]
    return [
        "LiteLLM ran **without** its database: it could not be started with one on this machine. What was tried, "
        "with PostgreSQL 15 at 127.0.0.1:5432 and a database of its own (`litellm_bench`):",
        "",
        "- `database_url: postgresql://postgres@127.0.0.1:5432/litellm_bench` in `general_settings`: LiteLLM "
        "needs the Prisma client for its database (`prisma` is in its `extra-proxy` extra, not in `proxy`); "
        "without it, start-up stops with \"a database URL is set but the prisma CLI is neither on PATH nor "
        "importable\".",
        f"- With `pip install prisma=={PRISMA_VERSION}` (the Prisma Client Python release LiteLLM supports) the "
        "proxy runs `prisma` on start to apply its 213 migrations. The Prisma CLI installs from npm (reachable "
        "here), using the system Node 20, but then downloads its Rust engines, which fails: `Preparing the "
        "Prisma CLI toolchain failed: Error: request to https://binaries.prisma.sh/all_commits/"
        "393aa359c9ad4a4bb28630fb5613f9c281cde053/debian-openssl-3.0.x/query-engine.gz.sha256 failed, reason: "
        "getaddrinfo ENOTFOUND binaries.prisma.sh`, and LiteLLM exits with \"Database migration cannot "
        "proceed\".",
        "- Prisma's documented ways around a blocked download are a mirror (`PRISMA_ENGINES_MIRROR`) or local "
        "engine binaries (`PRISMA_QUERY_ENGINE_BINARY`, `PRISMA_SCHEMA_ENGINE_BINARY`). Neither is available: "
        "only PyPI, Debian and npm are reachable from here; the npm package `@prisma/engines@5.17.0` holds no "
        "binaries (its postinstall script downloads them from the same host), Debian has no Prisma package, "
        "and the engines' Rust source is not on a reachable registry to build from. (The npm packages "
        "`@prisma/query-engine-wasm` / `@prisma/schema-engine-wasm` serve Prisma's JavaScript client, not the "
        "binary engine that the Python client runs as a subprocess.)",
        "",
        "What this changes: with a database, each LiteLLM request also looks up the key (cached in memory after "
        "the first use) and queues spend-log rows that a background task writes in batches "
        "(`proxy_batch_write_at`). Without one, LiteLLM only checks the master key and does no such "
        "bookkeeping, so these LiteLLM numbers are, if anything, better than a production set-up with its "
        "database would give. Lockgate ran as configured by default: key lookup and rate limiting on SQLite, "
        "every trace journaled and loaded into SQLite. Rerun with `--litellm-database-url URL` on a machine "
        "where Prisma can fetch its engines.",
    ]


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Lockgate vs LiteLLM's proxy under the same open-loop load.")
    parser.add_argument("--quick", action="store_true", help="short steps, no re-runs (smoke check)")
    parser.add_argument("--setup", action="store_true", help="only install LiteLLM into its venv, then exit")
    parser.add_argument("--workers", type=int, default=2, help="workers for every gateway (default 2)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per step (default 4, quick 1)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per step (default 1, quick 0.3)")
    parser.add_argument("--memory-requests", type=int, default=None,
                        help="requests in the memory phase, per gateway (default 10000, quick 500)")
    parser.add_argument("--profile", dest="profile", action="store_true", default=None,
                        help="py-spy Lockgate's workers at 500 req/s (by default only when the goal is missed)")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--litellm-home", type=Path, default=LITELLM_HOME,
                        help=f"where LiteLLM's venv lives (default {LITELLM_HOME})")
    parser.add_argument("--litellm-database-url", default=None,
                        help="run LiteLLM with this database_url (needs Prisma's engines; see the report)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness for the benchmark and every process it starts, gateways alike (negative "
                        "needs root); on a machine busy with other work, e.g. -10 keeps that work from distorting "
                        "the measurement")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "peers.md")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs, data)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    args.duration = args.duration if args.duration is not None else (1.0 if args.quick else 4.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    args.memory_requests = args.memory_requests or (500 if args.quick else 10_000)
    args.search_start = SEARCH_START
    # What overhead.Bench reads from its arguments.
    args.log_level, args.guards, args.pause = None, "default", (0.2 if args.quick else 0.3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    litellm_exe = ensure_litellm(args.litellm_home, args.litellm_version, with_prisma=bool(args.litellm_database_url))
    versions = installed_versions(litellm_python(args.litellm_home),
                                  (*LITELLM_DEPS, "prisma") if args.litellm_database_url else LITELLM_DEPS)
    if args.setup:
        print(f"LiteLLM ready: {litellm_exe} ({', '.join(f'{k} {v}' for k, v in versions.items())})")
        return 0
    started = dt.datetime.now().astimezone()
    exe = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(str(REPO)) else sys.executable
    command = " ".join([exe, "bench/peers.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if args.nice:
        # Inherited by everything started from here on: upstream, every gateway (and its workers), loadgen.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        renice_session(os.getpid(), args.nice)  # this process's session: the load generator's too
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-peers-"))
    peers = Peers(args, procs, workdir)
    summary, code = "", 1
    try:
        wait_for_quiet(3.0 if args.quick else 20.0)
        load_before = uptime()
        t_start = time.monotonic()
        log(f"starting the fake upstream and three gateways ({args.workers} workers each) in {workdir}")
        peers.start(litellm_exe)
        peers.warm_up()
        peers.run_matrix()
        peers.run_search()
        peers.run_memory()
        d500 = peers.matrix[("direct", RATIO_RATE)]
        lite500 = added(peers.matrix[("litellm", RATIO_RATE)], d500, 99)
        ratios = {
            name: {"throughput": throughput_ratio(peers.best[name], peers.best["litellm"]),
                   "p99": p99_ratio(lite500, added(peers.matrix[(name, RATIO_RATE)], d500, 99))}
            for name in GATEWAYS if name != "litellm"
        }
        head = ratios[HEADLINE]
        summary = f"throughput_ratio_vs_litellm={head['throughput']:.2f} p99_ratio_at_500rps={head['p99']:.2f}"
        if args.profile is None:
            args.profile = not args.quick and not (head["throughput"] >= GOAL and head["p99"] >= GOAL)
        prof = peers.gateways[HEADLINE].profile(RATIO_RATE, 10.0) if args.profile else {}
        runtime = time.monotonic() - t_start
        write_report(args.out, peers, command=command, started=started, runtime_s=runtime, load_before=load_before,
                     load_after=uptime(), versions=versions, summary=summary, ratios=ratios, prof=prof,
                     db_note=database_note(args))
        log(f"wrote {os.path.relpath(args.out, Path.cwd())} after {runtime:.0f} s")
        code = 0
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        if peers.lg is not None:
            peers.lg.close()
        procs.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if summary:
        print(summary, flush=True)
    return code


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
