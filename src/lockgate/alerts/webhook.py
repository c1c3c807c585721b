"""Delivers alert notices to webhooks, off the evaluator's path: a thread with its own event loop.

The evaluator hands a notice over and moves on; this thread POSTs it as JSON with aiohttp (the
project's HTTP client), retrying connection errors, timeouts, 5xx, 408 and 429 with exponential
backoff (`backoff_s`, doubled each time, `retries` times). Other 4xx are not retried: the receiver
said the request itself is wrong. Notices of one alert are delivered in order (a resolve never
overtakes the firing it ends, even while that one is being retried); different alerts do not wait
for each other. Outcomes are logged and counted (lockgate_alert_webhook_*); nothing here can stop
the evaluator. At most `max_pending` notices wait; beyond that new ones are dropped, and counted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from lockgate.config.alerts import WebhookAction
from lockgate.observe import metrics

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class Notice:
    alert: str
    target: WebhookAction
    payload: dict[str, Any]


class WebhookSender:
    def __init__(self, *, max_pending: int = 1000) -> None:
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._session: aiohttp.ClientSession | None = None
        self._last: dict[str, asyncio.Task[None]] = {}  # each alert's latest delivery, which the next one waits on
        self._tasks: set[asyncio.Task[None]] = set()

    # -- any thread -----------------------------------------------------------------------------

    def send(self, notice: Notice) -> bool:
        """Queues the notice; False when it was dropped because too many are waiting."""
        with self._lock:
            if self._pending >= self.max_pending:
                metrics.ALERT_WEBHOOKS.labels(alert=notice.alert, outcome="dropped").inc()
                log.error("alert %s: webhook notice dropped, %d already waiting", notice.alert, self._pending)
                return False
            self._pending += 1
        self.start()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._schedule, notice)
        return True

    def pending(self) -> int:
        with self._lock:
            return self._pending

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="lockgate-webhooks", daemon=True)
            self._thread.start()
        self._ready.wait()

    def stop(self, grace_s: float = 5.0) -> None:
        """Gives deliveries in flight up to `grace_s` to finish, then cancels the rest."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._drain(grace_s), loop)
        try:
            future.result(timeout=grace_s + 5)
        except Exception:  # noqa: BLE001 - stopping must not raise; what was lost is logged
            log.exception("webhook sender did not stop cleanly")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        with self._lock:
            self._thread, self._loop, self._session = None, None, None
            self._ready.clear()

    # -- the sender's thread --------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _schedule(self, notice: Notice) -> None:
        previous = self._last.get(notice.alert)
        task = asyncio.get_running_loop().create_task(self._deliver_after(previous, notice))
        self._last[notice.alert] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(notice.alert, t))

    def _finished(self, alert: str, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._pending -= 1
        self._tasks.discard(task)
        if self._last.get(alert) is task:
            del self._last[alert]

    async def _deliver_after(self, previous: asyncio.Task[None] | None, notice: Notice) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await self.deliver(notice)

    async def deliver(self, notice: Notice) -> bool:
        target = notice.target
        body = orjson.dumps(notice.payload)
        headers = {"content-type": "application/json", "user-agent": "lockgate-alerts", **target.headers}
        timeout = aiohttp.ClientTimeout(total=target.timeout_s)
        problem = ""
        for attempt in range(target.retries + 1):
            if attempt:
                metrics.ALERT_WEBHOOK_RETRIES.labels(alert=notice.alert).inc()
                await asyncio.sleep(min(MAX_BACKOFF_S, target.backoff_s * 2 ** (attempt - 1)))
            try:
                async with self._client().post(target.url, data=body, headers=headers, timeout=timeout) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        metrics.ALERT_WEBHOOKS.labels(alert=notice.alert, outcome="delivered").inc()
                        return True
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status not in RETRYABLE_STATUSES:
                        break
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("alert %s: webhook %s attempt %d of %d failed (%s)", notice.alert, target.url, attempt + 1,
                        target.retries + 1, problem)
        metrics.ALERT_WEBHOOKS.labels(alert=notice.alert, outcome="failed").inc()
        log.error("alert %s: %s notice not delivered to %s (%s)", notice.alert, notice.payload.get("state"),
                  target.url, problem)
        return False

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Proxies from the environment are ignored, as for backends: they would reroute local receivers.
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session

    async def _drain(self, grace_s: float) -> None:
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("%d webhook notice(s) abandoned at shutdown", len(late))
                await asyncio.wait(late)
        if self._session is not None:
            await self._session.close()
