"""An open-loop HTTP/1.1 load generator: fixed arrival rate, keep-alive connection pool, own process.

Why not httpx: it tops out around 1.9k req/s and degrades with concurrency, so it would measure
itself. This is a raw asyncio Protocol per connection (on uvloop), parsing responses with
`httptools`, with no task or future per request: a request is bytes written from a timer callback,
its completion is a parser callback.

Open loop: request i is due at t0 + i/rate whatever happened to earlier requests, so a slow server
cannot slow the arrivals down and hide its own latency (coordinated omission). Latency is counted
from the moment the request was due (or from when it was actually written, if that was earlier),
so time spent waiting for a free connection or for a late timer is included, as wrk2 does.

Use from another process through `LoadGen` (a worker started with multiprocessing, driven over a
pipe), so the generator has its own interpreter and GIL:

    with LoadGen() as lg:
        result = lg.run(host="127.0.0.1", port=8080, path="/v1/chat/completions", body=b"{...}",
                        rate=500, duration_s=5, warmup_s=1)
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import httptools

perf = time.perf_counter


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    __slots__ = ("run", "transport", "parser", "busy", "idx", "start", "status", "tail", "keep", "dead")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.idx = -1
        self.start = 0.0
        self.status = 0
        self.tail = b""
        self.keep = True
        self.dead = False

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.failed(self, "bad_http")

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.run.lost(self)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.tail = (self.tail + body)[-32:]

    def on_message_complete(self) -> None:
        self.run.completed(self, perf())

    def send(self, idx: int, start: float, data: bytes) -> None:
        self.busy, self.idx, self.start, self.status, self.tail = True, idx, start, 0, b""
        self.transport.write(data)  # type: ignore[union-attr]


@dataclass
class _Run:
    """One step: `n` requests at `rate` per second; requests with index >= `measure_from` count."""

    loop: asyncio.AbstractEventLoop
    host: str
    port: int
    data: bytes
    rate: float
    n: int
    measure_from: int
    expect_done: bool
    max_conns: int
    t0: float = 0.0
    sent: int = 0
    done: int = 0
    idle: deque[_Conn] = field(default_factory=deque)
    conns: set[_Conn] = field(default_factory=set)
    opening: int = 0
    queue: deque[int] = field(default_factory=deque)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    last_completion: float = 0.0
    max_lag: float = 0.0
    max_queue: int = 0
    opened: int = 0
    finished: asyncio.Future[None] | None = None
    stop_sending: bool = False
    closed: bool = False

    def intended(self, i: int) -> float:
        return self.t0 + i / self.rate

    # -- sending ----------------------------------------------------------------------------------

    def tick(self) -> None:
        now = perf()
        horizon = now + 0.0005  # uvloop timers have 1 ms resolution: send up to half a tick early
        while self.sent < self.n and not self.stop_sending and self.intended(self.sent) <= horizon:
            i = self.sent
            self.sent += 1
            self.max_lag = max(self.max_lag, now - self.intended(i))
            self.dispatch(i)
        if self.sent < self.n and not self.stop_sending:
            delay = max(0.001, self.intended(self.sent) - 0.0005 - perf())
            self.loop.call_later(delay, self.tick)
        else:
            self.check_finished()

    def dispatch(self, i: int) -> None:
        while self.idle:
            conn = self.idle.popleft()
            if not conn.dead:
                conn.send(i, min(self.intended(i), perf()), self.data)
                return
        self.queue.append(i)
        self.max_queue = max(self.max_queue, len(self.queue))
        if len(self.conns) + self.opening < self.max_conns and self.opening < len(self.queue):
            self.open_one()

    def open_one(self) -> None:
        self.opening += 1
        self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError as exc:
            self.opening -= 1
            if self.queue and not self.closed:  # the request that wanted this connection fails
                if self.queue.popleft() >= self.measure_from:
                    self.errors[f"connect:{type(exc).__name__}"] += 1
                self.done += 1
                self.check_finished()
            return
        self.opening -= 1
        if self.closed:
            conn.transport.abort()  # type: ignore[union-attr]
            return
        self.opened += 1
        self.conns.add(conn)
        self.release(conn)

    def release(self, conn: _Conn) -> None:
        """A connection is free: give it the oldest waiting request, or park it."""
        if self.queue:
            i = self.queue.popleft()
            conn.send(i, self.intended(i), self.data)
        else:
            self.idle.append(conn)

    # -- completions ------------------------------------------------------------------------------

    def completed(self, conn: _Conn, now: float) -> None:
        conn.busy = False
        self.done += 1
        ok = conn.status == 200 and (not self.expect_done or b"[DONE]" in conn.tail)
        if conn.idx >= self.measure_from:
            if ok:
                self.latencies.append(now - conn.start)
                self.last_completion = now
            else:
                self.errors[f"http_{conn.status}" if conn.status != 200 else "incomplete_stream"] += 1
        if conn.keep:
            self.release(conn)
        else:
            self.drop(conn)
        self.check_finished()

    def failed(self, conn: _Conn, why: str) -> None:
        if conn.busy:
            conn.busy = False
            self.done += 1
            if conn.idx >= self.measure_from:
                self.errors[why] += 1
        self.drop(conn)
        if conn.transport is not None:
            conn.transport.abort()
        self.check_finished()

    def lost(self, conn: _Conn) -> None:
        if conn.busy:
            self.failed(conn, "connection_lost")
        else:
            self.drop(conn)

    def drop(self, conn: _Conn) -> None:
        conn.dead = True
        self.conns.discard(conn)
        if self.queue and len(self.conns) + self.opening < self.max_conns:
            self.open_one()

    def check_finished(self) -> None:
        all_sent = self.sent >= self.n or self.stop_sending
        if all_sent and self.done >= self.sent and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


async def _run_step(
    *, host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None, rate: float,
    duration_s: float | None = None, warmup_s: float = 0.0, n: int | None = None, stream: bool = False,
    drain_s: float = 5.0, max_conns: int = 512, preopen: int = 32, preopen_gap_s: float = 0.002,
    max_s: float | None = None,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = n if n is not None else round(rate * (warmup_s + (duration_s or 0.0)))
    run = _Run(loop=loop, host=host, port=port, data=build_request(host, port, path, body, headers), rate=rate,
               n=total, measure_from=round(rate * warmup_s), expect_done=stream, max_conns=max_conns)
    run.finished = loop.create_future()
    # Pre-open part of the pool so the first requests do not pay for connects, and so the
    # connections spread over the server's worker processes before the load starts.
    # One at a time with a short gap: a server's worker that wakes up to accept takes every
    # connection already queued, so a burst of connects tends to land on a single worker.
    for _ in range(min(preopen, max_conns)):
        _, conn = await loop.create_connection(lambda: _Conn(run), host, port)
        run.conns.add(conn)
        run.idle.append(conn)
        run.opened += 1
        await asyncio.sleep(preopen_gap_s)
    cpu0 = time.process_time()
    run.t0 = perf() + 0.005
    loop.call_later(0.005, run.tick)
    send_deadline = run.t0 + (max_s if max_s is not None else total / rate + 1.0)

    def stop() -> None:
        run.stop_sending = True
        run.check_finished()

    stopper = loop.call_later(send_deadline - perf(), stop)
    hard_deadline = total / rate + drain_s + 0.01 if max_s is None else max_s + drain_s
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(run.finished), timeout=hard_deadline)
    stopper.cancel()
    end = perf()
    run.stop_sending = True
    # Whatever is still queued or in flight now is a timeout.
    pending_measured = sum(1 for c in run.conns if c.busy and c.idx >= run.measure_from)
    pending_measured += sum(1 for i in run.queue if i >= run.measure_from)
    if pending_measured:
        run.errors["timeout"] += pending_measured
    run.closed = True
    run.queue.clear()
    for conn in list(run.conns):
        conn.busy = False
        if conn.transport is not None:
            conn.transport.abort()
    await asyncio.sleep(0.05)  # let the aborts run their connection_lost callbacks
    measured_start = run.intended(run.measure_from)
    sent_measured = max(0, run.sent - run.measure_from)
    window = (run.last_completion - measured_start) if run.last_completion > measured_start else 0.0
    return {
        "offered_rps": rate,
        "planned": total - run.measure_from,
        "sent": sent_measured,
        "ok": len(run.latencies),
        "errors": dict(run.errors),
        "error_count": sum(run.errors.values()),
        "achieved_rps": len(run.latencies) / window if window > 0 else 0.0,
        "latencies_s": run.latencies,
        "max_send_lag_ms": run.max_lag * 1000,
        "max_queue": run.max_queue,
        "connections_opened": run.opened,
        "wall_s": end - run.t0,
        "loadgen_cpu_s": time.process_time() - cpu0,
    }


def _worker(pipe: Any) -> None:
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        while True:
            msg = pipe.recv()
            if msg is None:
                break
            try:
                pipe.send(loop.run_until_complete(_run_step(**msg)))
            except Exception as exc:  # reported to the parent, which decides
                pipe.send({"exception": f"{type(exc).__name__}: {exc}"})
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    finally:
        loop.close()


class LoadGen:
    """The generator in a process of its own (spawned, so it shares nothing with the caller)."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._pipe: Any = None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def start(self) -> LoadGen:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child,), name="loadgen", daemon=True)
        self._proc.start()
        child.close()
        self._pipe = parent
        return self

    def run(self, **params: Any) -> dict[str, Any]:
        self._pipe.send(params)
        result = self._pipe.recv()
        if "exception" in result:
            raise RuntimeError(f"load generator failed: {result['exception']}")
        return result

    def close(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(Exception):
            self._pipe.send(None)
        self._proc.join(timeout=3)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=3)
        if self._proc.is_alive():
            os.kill(self._proc.pid, 9)
        self._proc = None

    def __enter__(self) -> LoadGen:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 100)) - 1))
    return sorted_values[k]
