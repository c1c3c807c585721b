"""Shadow copies run beside live traffic, bounded so that a slow candidate cannot exhaust the worker.

A copy that would exceed the bound is dropped and counted (`lockgate_shadow_requests_total{result=
"dropped"}`): shadowing is a sample, and losing part of the sample is better than slowing the
requests users are waiting for.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from lockgate.observe import metrics

if TYPE_CHECKING:
    from lockgate.gateway.openai_types import ChatRequest
    from lockgate.gateway.runtime import Runtime
    from lockgate.store import ApiKeyRecord

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32


class ShadowRunner:
    def __init__(self, runtime: Runtime, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._runtime = runtime
        self._max = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, primary_id: str, chat: ChatRequest, key: ApiKeyRecord | None, version: int) -> bool:
        if len(self._tasks) >= self._max:
            metrics.SHADOW_REQUESTS.labels(route=chat.model, release=f"{chat.model}@{version}", result="dropped").inc()
            return False
        from lockgate.gateway.chat import run_shadow  # chat imports the runtime, which imports this module

        task = asyncio.create_task(run_shadow(self._runtime, primary_id, chat, key, version))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shadow copy failed: %s", task.exception())

    async def drain(self, timeout_s: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
