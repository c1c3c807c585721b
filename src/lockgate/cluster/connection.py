"""Where Redis is, how long to wait for it, and what its failures cost.

Every call on the request path waits at most `timeout_ms` and is never retried: a slow Redis must
cost a request milliseconds, not seconds. After a failure the path does not try again for
`RETRY_AFTER_S`, so an unreachable host (a connect that hangs until the timeout) does not add the
timeout to every request; it answers as `on_failure` says at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from lockgate.config import LockgateConfig
    from lockgate.settings import Settings

RETRY_AFTER_S = 1.0
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class RedisTarget:
    url: str
    prefix: str = "lockgate"
    timeout_s: float = 0.1
    on_failure: Literal["open", "closed"] = "open"
    live_bucket_s: int = 1
    live_retention_s: int = 3600

    def key(self, *parts: str | int) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def async_client(self) -> redis.asyncio.Redis:
        """One per event loop: its connections belong to the loop that opened them."""
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return redis.asyncio.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0), health_check_interval=0,
        )

    def sync_client(self, *, timeout_s: float | None = None) -> redis.Redis:
        """For threads (the controller, the alert evaluator, the CLI); thread-safe through its pool."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        timeout = timeout_s if timeout_s is not None else self.timeout_s
        return redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    retry=Retry(NoBackoff(), 0))


def redis_target(settings: Settings, config: LockgateConfig) -> RedisTarget | None:
    """LOCKGATE_REDIS_URL wins over `redis.url`; neither: None (one machine, no Redis)."""
    url = settings.redis_url or config.redis.url
    if not url:
        return None
    r = config.redis
    return RedisTarget(url=url, prefix=r.prefix, timeout_s=r.timeout_ms / 1000, on_failure=r.on_failure,
                       live_bucket_s=r.live_bucket_s, live_retention_s=r.live_retention_s)


class Outage:
    """Remembers a recent failure (to skip Redis for a moment) and logs failures at most every LOG_EVERY_S."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self._what = what
        self._log = logger
        self._down_until = 0.0
        self._last_logged = 0.0
        self._suppressed = 0
        self._lock = threading.Lock()

    def recently_failed(self) -> bool:
        return time.monotonic() < self._down_until

    def failed(self, exc: BaseException, consequence: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._down_until = now + RETRY_AFTER_S
            if now - self._last_logged < LOG_EVERY_S:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_logged = self._suppressed, 0, now
        more = f" ({suppressed} more since the last message)" if suppressed else ""
        self._log.warning("%s: Redis unavailable (%s: %s); %s%s", self._what, type(exc).__name__, exc,
                          consequence, more)

    def recovered(self) -> None:
        self._down_until = 0.0
