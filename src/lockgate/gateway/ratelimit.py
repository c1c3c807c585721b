"""Per-minute request and token limits, shared by every worker process on the machine (SQLite) or by
every replica (Redis, lockgate.cluster.ratelimit): one `RateLimiter` interface, two implementations.

The algorithm is GCRA (the generic cell rate algorithm): one number per key, the theoretical
arrival time (TAT). A request of cost `c` under a limit of `L` per minute moves the TAT forward by
`c * 60 / L` seconds and is allowed while the TAT stays within one minute of now, so a full minute's
allowance may be spent in a burst and refills smoothly.

Without Redis, the state lives in a small SQLite file beside the data (not in the main database), updated in one
IMMEDIATE transaction per decision, so several worker processes enforce one limit together. Each
decision costs tens of microseconds and never waits on the network.

If the limiter's own file fails (disk full, corrupted, locked beyond a short wait), requests are
let through rather than refused: limits protect capacity, and an outage of the limiter must not
become an outage of the gateway. Each such failure is logged and counted
(`lockgate_ratelimit_errors_total`).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

WINDOW_S = 60.0
BUSY_TIMEOUT_S = 0.5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Charge:
    bucket: str
    cost: float
    per_minute: int
    what: str = ""  # for people: "requests per minute for this API key"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    refused_by: Charge | None = None
    unavailable: bool = False  # refused because the limiter could not decide (Redis down, `on_failure: closed`)


class RateLimiter(Protocol):
    """Asynchronous because the Redis implementation waits on the network, on the request's event loop."""

    async def acquire_all(self, charges: list[Charge]) -> Decision:
        """All or nothing: takes every charge if every limit allows it, none otherwise.

        One atomic step for all of a request's buckets (key and route, requests and tokens), so a
        request refused by one limit costs nothing against the others.
        """
        ...

    async def charge_all(self, charges: list[Charge]) -> None:
        """Adds costs known only afterwards (tokens generated); may push buckets into debt."""
        ...


class SqliteRateLimiter:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = Path(path)
        self._clock = clock
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # A short busy wait: transactions here last microseconds, and this runs on the event loop.
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            _enable_wal(conn)
            # Limits are soft state: losing the last decisions in a power cut is harmless.
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE IF NOT EXISTS gcra (bucket TEXT PRIMARY KEY, tat REAL NOT NULL)")
            self._local.conn = conn
        return conn

    async def acquire_all(self, charges: list[Charge]) -> Decision:
        # Called on the event loop directly: one local transaction of microseconds costs less than a thread hop.
        try:
            return self._acquire_all(charges)
        except sqlite3.Error as exc:
            self._failed(exc)
            return Decision(True)

    async def charge_all(self, charges: list[Charge]) -> None:
        try:
            self._charge_all(charges)
        except sqlite3.Error as exc:
            self._failed(exc)

    def _failed(self, exc: sqlite3.Error) -> None:
        from lockgate.observe.metrics import RATELIMIT_ERRORS

        RATELIMIT_ERRORS.inc()
        log.warning("rate limiter unavailable, letting the request through: %s", exc)
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _acquire_all(self, charges: list[Charge]) -> Decision:
        if not charges:
            return Decision(True)
        conn = self._conn()
        now = self._clock()
        conn.execute("BEGIN IMMEDIATE")
        try:
            updates = []
            for charge in charges:
                interval = WINDOW_S / charge.per_minute
                row = conn.execute("SELECT tat FROM gcra WHERE bucket = ?", (charge.bucket,)).fetchone()
                new_tat = max(row[0] if row else now, now) + charge.cost * interval
                if new_tat - now > WINDOW_S:
                    conn.execute("ROLLBACK")
                    # Allowed again once the TAT has fallen back to within the window.
                    return Decision(False, retry_after_s=new_tat - now - WINDOW_S, refused_by=charge)
                updates.append((charge.bucket, new_tat))
            conn.executemany("INSERT OR REPLACE INTO gcra (bucket, tat) VALUES (?, ?)", updates)
            conn.execute("COMMIT")
            return Decision(True)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _charge_all(self, charges: list[Charge]) -> None:
        now = self._clock()
        rows = []
        for charge in charges:
            if charge.cost > 0:
                step = charge.cost * WINDOW_S / charge.per_minute
                rows.append((charge.bucket, now + step, now, step))
        if rows:
            self._conn().executemany(
                "INSERT INTO gcra (bucket, tat) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE SET tat = MAX(tat, ?) + ?",
                rows,
            )


def _enable_wal(conn: sqlite3.Connection, *, attempts: int = 200) -> None:
    """Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at
    once (no busy wait) when another worker is switching it at the same moment: the first requests
    of freshly started workers. So retry briefly; once the file is in WAL mode this is a no-op."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.005)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def refuse_if_unavailable(decision: Decision) -> None:
    """A limiter that could not decide, set to fail closed: a 503 that says so, not a misleading 429."""
    if decision.unavailable:
        from lockgate.errors import RateLimiterUnavailable

        raise RateLimiterUnavailable(
            "The rate limiter is unavailable (its Redis did not answer), and this gateway refuses requests it "
            "cannot rate-limit (redis.on_failure: closed). Retry shortly; operators: check Redis, or set "
            "redis.on_failure: open to let requests through while it is down.",
            headers={"retry-after": retry_after_header(decision.retry_after_s)},
        )
