"""Rate limits shared by every replica: the same GCRA as lockgate.gateway.ratelimit, in one Lua script.

The script reads and moves every bucket of a request in one atomic step on the Redis server, so the
all-or-nothing rule (a request refused by one limit costs nothing against the others) holds across
replicas exactly as it does across one machine's workers. Time comes from the Redis server (`TIME`)
so replicas whose clocks disagree still agree on every bucket. Each key expires once its TAT has
passed: a bucket at rest is no key at all. The script is sent once and then called by its SHA
(EVALSHA); redis-py's Script sends it again if the server answers NOSCRIPT (a restart, SCRIPT FLUSH).

When Redis cannot answer within its timeout, `on_failure` decides: `open` lets the request through
(limits protect capacity, and a limiter outage should not become a gateway outage), `closed` refuses
it as unavailable. Either way it is counted in `lockgate_ratelimit_errors_total` and logged (rate-limited).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lockgate.cluster.connection import Outage, RedisTarget
from lockgate.gateway.ratelimit import WINDOW_S, Charge, Decision

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

log = logging.getLogger(__name__)

# KEYS: one per bucket. ARGV: now ("" = the server's clock), window seconds, "1" to charge without
# checking (costs known afterwards), then cost and seconds-per-unit for each key.
# Returns {0, "0"} when taken, or {index of the refusing key (1-based), seconds until it would fit}.
GCRA_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local window = tonumber(ARGV[2])
local charge_only = ARGV[3] == '1'
local tats = {}
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[2 + 2 * i])
  local step = tonumber(ARGV[3 + 2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + cost * step
  if (not charge_only) and new_tat - now > window then
    return {i, string.format('%.6f', new_tat - now - window)}
  end
  tats[i] = new_tat
end
for i, key in ipairs(KEYS) do
  local ttl_ms = math.ceil((tats[i] - now) * 1000) + 1
  redis.call('SET', key, string.format('%.6f', tats[i]), 'PX', ttl_ms)
end
return {0, '0'}
"""


class RedisRateLimiter:
    def __init__(self, target: RedisTarget, *, clock: Callable[[], float] | None = None) -> None:
        """`clock`: None uses the Redis server's clock (production); tests pass one to control time."""
        self._target = target
        self._clock = clock
        self._client: redis.asyncio.Redis | None = None
        self._script: AsyncScript | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outage = Outage("rate limiter", log)

    def _gcra(self) -> AsyncScript:
        loop = asyncio.get_running_loop()
        if self._script is None or self._loop is not loop:  # connections belong to the loop that opened them
            self._client, self._loop = self._target.async_client(), loop
            self._script = self._client.register_script(GCRA_LUA)
        return self._script

    async def acquire_all(self, charges: list[Charge]) -> Decision:
        if not charges:
            return Decision(True)
        reply = await self._run(charges, charge_only=False)
        if reply is None:
            return self._unavailable()
        index, retry_after = int(reply[0]), float(reply[1])
        if index == 0:
            return Decision(True)
        return Decision(False, retry_after_s=retry_after, refused_by=charges[index - 1])

    async def charge_all(self, charges: list[Charge]) -> None:
        charges = [c for c in charges if c.cost > 0]
        if charges:
            await self._run(charges, charge_only=True)

    async def _run(self, charges: list[Charge], *, charge_only: bool) -> list[Any] | None:
        """The script's reply, or None when Redis failed (counted and logged here)."""
        from lockgate.observe.metrics import RATELIMIT_ERRORS

        if self._outage.recently_failed():
            RATELIMIT_ERRORS.inc()
            return None
        keys = [self._target.key("rl", c.bucket) for c in charges]
        args: list[str | float] = ["" if self._clock is None else repr(self._clock()), WINDOW_S,
                                   "1" if charge_only else "0"]
        for c in charges:
            args += [c.cost, WINDOW_S / c.per_minute]
        try:
            # The socket timeout bounds each read; this bounds the whole call (connect included).
            reply = await asyncio.wait_for(self._gcra()(keys=keys, args=args), self._target.timeout_s * 2)
        except Exception as exc:  # noqa: BLE001 - any failure of the limiter is handled as an outage
            RATELIMIT_ERRORS.inc()
            consequence = ("letting requests through" if self._target.on_failure == "open"
                           else "refusing requests (redis.on_failure: closed)")
            self._outage.failed(exc, consequence)
            await self._reset()
            return None
        self._outage.recovered()
        return list(reply)

    def _unavailable(self) -> Decision:
        if self._target.on_failure == "open":
            return Decision(True)
        return Decision(False, retry_after_s=1.0, unavailable=True)

    async def _reset(self) -> None:
        """A failed call may leave a half-read connection: start over with a new client next time."""
        client, self._client, self._script = self._client, None, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - closing a broken client may fail too; it is dropped anyway
                pass
