"""The command line: `python -m lockgate.devtools.fake_upstream --port P` serves until SIGINT/SIGTERM.

Why it exists: benchmarks run the fake as a process of its own. `main` lives here rather than in
`__main__.py` so the package can re-export it without importing `__main__` (which would make
`python -m` warn that the module was already imported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .modes import DEFAULT_DELAY_S, FAULT_MODES, parse_mode
from .server import FakeUpstream
from .threaded import _new_event_loop


async def _serve(host: str, port: int, mode: str, delay_s: float) -> None:
    upstream = FakeUpstream(mode=mode, delay_s=delay_s)
    await upstream.start(host, port)
    print(f"listening on http://{host}:{upstream.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await upstream.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry: serve until SIGINT/SIGTERM. One process, one loop - the fake is never the bottleneck."""
    parser = argparse.ArgumentParser(
        prog="python -m lockgate.devtools.fake_upstream",
        description="Serve a fake OpenAI-compatible upstream with switchable fault modes.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999, help="0 picks a free port (printed on start)")
    parser.add_argument("--workers", type=int, default=1, help="only 1 is supported")
    parser.add_argument("--mode", default="ok", help=f"initial global mode: {', '.join(FAULT_MODES)}")
    parser.add_argument("--delay-s", type=float, default=DEFAULT_DELAY_S, help="delay for the slow modes")
    args = parser.parse_args(argv)
    if args.workers != 1:
        parser.error("--workers: only 1 is supported")
    try:
        parse_mode(args.mode)
    except ValueError as exc:
        parser.error(str(exc))
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        runner.run(_serve(args.host, args.port, args.mode, args.delay_s))
    return 0
