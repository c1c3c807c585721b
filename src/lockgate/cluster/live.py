"""Live counters per route, release and second, shared by every replica through Redis.

Writing: each worker adds every finished request's facts (the same trace_facts the store derives)
to an in-memory tally, and a background task adds the tally to Redis every FLUSH_INTERVAL_S in one
pipeline: the request path only touches a dict, and never waits on or fails because of Redis. A
tally that cannot be written is dropped (the store still gets every trace), so an outage costs
memory nothing and the counters only their completeness.

Layout: one hash per route and time bucket (`redis.live_bucket_s`, 1 s by default), kept for
`redis.live_retention_s`: `{prefix}:live:{route}:{bucket start}` with fields
`{release}|{p or s}|{fact}` (p: served, s: shadow copies); facts are the ReleaseWindow counts plus a
latency histogram `lat{i}` over LATENCY_BOUNDS_MS.

Reading (RedisLiveWindows): a window sums the buckets that start at or after `since` (traffic from
before the window, such as an earlier rollout's, is never counted; the window's first partial bucket
is left out instead) and before `until`. Windows reaching back beyond the retention, or read while
Redis is down, come from the trace store instead. Latencies come back as each request's histogram
bound (its bucket's upper edge), which is what p95 of a fixed-bucket histogram can say.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lockgate.cluster.connection import Outage, RedisTarget
from lockgate.observe.windows import LiveWindows
from lockgate.store import ReleaseWindow
from lockgate.store.trace_facts import trace_facts

if TYPE_CHECKING:
    import redis
    import redis.asyncio

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
# Upper edges in ms; a latency above the last one counts in an overflow bucket reported at the last edge.
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500,
                     10_000, 15_000, 20_000, 30_000, 60_000, 120_000)


def latency_bucket(ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return i
    return len(LATENCY_BOUNDS_MS)


def latency_of_bucket(index: int) -> float:
    return float(LATENCY_BOUNDS_MS[min(index, len(LATENCY_BOUNDS_MS) - 1)])


def counted_fields(trace: dict[str, Any]) -> Counter[str] | None:
    """The hash fields one trace adds to, with their increments; None for traces the store would not count
    (no release, or a client's own 4xx without a guard violation)."""
    release = trace.get("release")
    if not release or not trace.get("route"):
        return None
    shadow_of, failed, violation, grounding, prompt_tokens, completion_tokens = trace_facts(trace)
    status = trace.get("status") or 0
    if not (status < 400 or status >= 500 or violation):
        return None  # the same rule as the store's counted traces
    prefix = f"{release}|{'s' if shadow_of is not None else 'p'}|"
    fields: Counter[str] = Counter({prefix + "requests": 1})
    for name, value in (("failed", failed), ("guard_violations", violation), ("grounding_failures", grounding),
                        ("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens)):
        if value:
            fields[prefix + name] += value
    if status < 400:  # latencies of answered requests only, as the store's windows
        fields[prefix + f"lat{latency_bucket(float(trace.get('latency_ms') or 0.0))}"] += 1
    return fields


class LiveCounters:
    """One per worker process: `record` on the request path, `run_flusher` as a background task."""

    def __init__(self, target: RedisTarget) -> None:
        self._target = target
        self._tally: dict[str, Counter[str]] = {}
        self._client: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outage = Outage("live counters", log)

    def record(self, trace: dict[str, Any]) -> None:
        fields = counted_fields(trace)
        if fields is None:
            return
        size = self._target.live_bucket_s
        start = int(float(trace.get("ts") or time.time()) // size * size)
        key = self._target.key("live", trace["route"], start)
        self._tally.setdefault(key, Counter()).update(fields)

    async def run_flusher(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await self.flush()
        finally:
            await self.flush()  # what the last requests counted, at shutdown

    async def flush(self) -> None:
        tally, self._tally = self._tally, {}
        if not tally:
            return
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # connections belong to the loop that opened them
            self._client, self._loop = self._target.async_client(), loop
        ttl = self._target.live_retention_s + self._target.live_bucket_s
        pipe = self._client.pipeline(transaction=False)
        for key, fields in tally.items():
            for field, amount in fields.items():
                pipe.hincrby(key, field, amount)
            pipe.expire(key, ttl)
        try:
            await asyncio.wait_for(pipe.execute(), max(1.0, self._target.timeout_s * 10))
            self._outage.recovered()
        except Exception as exc:  # noqa: BLE001 - counters are best effort; the store keeps every trace
            self._outage.failed(exc, "live counts of this moment are lost (the trace store still has them)")
            client, self._client = self._client, None
            try:
                if client is not None:
                    await client.aclose()
            except Exception:  # noqa: BLE001 - a broken client may fail to close; it is dropped anyway
                pass


class RedisLiveWindows:
    """LiveWindows from the counters, for recent windows; the fallback (the store) for the rest."""

    def __init__(self, target: RedisTarget, fallback: LiveWindows, *, clock: Callable[[], float] = time.time) -> None:
        self._target = target
        self._fallback = fallback
        self._clock = clock
        # Read by the controller's and the evaluator's threads, off the request path: a longer wait is fine.
        self._client: redis.Redis = target.sync_client(timeout_s=max(target.timeout_s, 1.0))
        self._outage = Outage("live windows", log)

    def release_window(self, route: str, since: float, until: float | None = None, *,
                       with_latencies: bool = True) -> list[ReleaseWindow]:
        now = self._clock()
        until = until if until is not None else now + 1
        size = self._target.live_bucket_s
        if since < now - self._target.live_retention_s + size or self._outage.recently_failed():
            return self._fallback.release_window(route, since, until, with_latencies=with_latencies)
        starts = range(math.ceil(since / size) * size, math.ceil(until / size) * size, size)
        try:
            pipe = self._client.pipeline(transaction=False)
            for start in starts:
                pipe.hgetall(self._target.key("live", route, start))
            hashes = pipe.execute()
            self._outage.recovered()
        except Exception as exc:  # noqa: BLE001 - any failure: the store answers instead
            self._outage.failed(exc, "reading windows from the trace store instead")
            return self._fallback.release_window(route, since, until, with_latencies=with_latencies)
        return windows_from_counts(hashes, with_latencies=with_latencies)


def live_windows(store: LiveWindows, target: RedisTarget | None) -> LiveWindows:
    """Where analysis and alerts read windows: Redis counters (falling back to the store) or the store alone."""
    return RedisLiveWindows(target, store) if target is not None else store


def windows_from_counts(hashes: list[dict[bytes, bytes]], *, with_latencies: bool) -> list[ReleaseWindow]:
    totals: dict[tuple[str, bool], Counter[str]] = {}
    for fields in hashes:
        for raw_field, raw_value in fields.items():
            release, kind, fact = raw_field.decode().split("|", 2)
            totals.setdefault((release, kind == "s"), Counter())[fact] += int(raw_value)
    windows = []
    for (release, shadow), c in sorted(totals.items()):
        latencies: tuple[float, ...] = ()
        if with_latencies:
            latencies = tuple(latency_of_bucket(i) for i in range(len(LATENCY_BOUNDS_MS) + 1)
                              for _ in range(c[f"lat{i}"]))
        windows.append(ReleaseWindow(release, shadow, c["requests"], c["failed"], c["guard_violations"],
                                     c["grounding_failures"], latencies, c["prompt_tokens"], c["completion_tokens"]))
    return windows
