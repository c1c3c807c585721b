"""`FakeUpstreamThread` and `run_in_thread`: the fake on its own loop in a daemon thread.

Why it exists: synchronous tests (and the gateway they drive) block on HTTP calls, so the fake must
serve from another thread; this wraps `FakeUpstream` with start/stop and mirrors its state API.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from typing import Any

from .modes import DEFAULT_DELAY_S
from .server import FakeUpstream


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it roughly doubles throughput), plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class FakeUpstreamThread:
    """A `FakeUpstream` on its own event loop in a daemon thread, for synchronous tests.

    The fake must not share the test's thread, or a blocking client call would deadlock against it.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, mode: str = "ok", delay_s: float = DEFAULT_DELAY_S
    ) -> None:
        self.upstream = FakeUpstream(mode=mode, delay_s=delay_s)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> FakeUpstreamThread:
        """Start the thread and block until the port is bound (or re-raise why it could not be)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._main, name="fake-upstream", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _main(self) -> None:
        loop = _new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.upstream.start(self._host, self._port))
            except BaseException as exc:  # surfaced to start() in the calling thread
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self.upstream.stop())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call more than once."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = None
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> FakeUpstreamThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self.upstream.host

    @property
    def port(self) -> int:
        return self.upstream.port

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    @property
    def counts(self) -> Counter[str]:
        return self.upstream.counts

    @property
    def mode(self) -> str:
        return self.upstream.mode

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        self.upstream.set_mode(mode, delay_s)

    def reset_counts(self) -> None:
        self.upstream.reset_counts()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.upstream.requests

    def last_request(self) -> dict[str, Any] | None:
        return self.upstream.last_request()

    def clear_requests(self) -> None:
        self.upstream.clear_requests()


def run_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, mode: str = "ok", delay_s: float = DEFAULT_DELAY_S
) -> FakeUpstreamThread:
    """Start a fake upstream in a background thread; use the result as a context manager or call `.stop()`."""
    return FakeUpstreamThread(host, port, mode=mode, delay_s=delay_s).start()
