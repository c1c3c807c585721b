"""Per-minute request and token limits, shared by every worker process on the machine.

The algorithm is GCRA (the generic cell rate algorithm): one number per key, the theoretical
arrival time (TAT). A request of cost `c` under a limit of `L` per minute moves the TAT forward by
`c * 60 / L` seconds and is allowed while the TAT stays within one minute of now, so a full minute's
allowance may be spent in a burst and refills smoothly.

The state lives in a small SQLite file beside the data (not in the main database), updated in one
IMMEDIATE transaction per decision, so several worker processes enforce one limit together. Each
decision costs tens of microseconds and never waits on the network.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WINDOW_S = 60.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0


class RateLimiter:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = Path(path)
        self._clock = clock
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # Limits are soft state: losing the last decisions in a power cut is harmless.
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE IF NOT EXISTS gcra (bucket TEXT PRIMARY KEY, tat REAL NOT NULL)")
            self._local.conn = conn
        return conn

    def acquire(self, bucket: str, *, cost: float, per_minute: int) -> Decision:
        """Takes `cost` from the bucket if the limit allows it; otherwise says when to retry."""
        interval = WINDOW_S / per_minute
        conn = self._conn()
        now = self._clock()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT tat FROM gcra WHERE bucket = ?", (bucket,)).fetchone()
            tat = max(row[0] if row else now, now)
            new_tat = tat + cost * interval
            if new_tat - now > WINDOW_S:
                conn.execute("COMMIT")
                # Allowed again once the TAT has fallen back to within the window.
                return Decision(False, retry_after_s=new_tat - now - WINDOW_S)
            conn.execute("INSERT OR REPLACE INTO gcra (bucket, tat) VALUES (?, ?)", (bucket, new_tat))
            conn.execute("COMMIT")
            return Decision(True)
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def charge(self, bucket: str, *, cost: float, per_minute: int) -> None:
        """Adds a cost known only afterwards (tokens generated); may push the bucket into debt."""
        if cost <= 0:
            return
        interval = WINDOW_S / per_minute
        conn = self._conn()
        now = self._clock()
        conn.execute(
            "INSERT INTO gcra (bucket, tat) VALUES (?, ?) "
            "ON CONFLICT (bucket) DO UPDATE SET tat = MAX(tat, ?) + ?",
            (bucket, now + cost * interval, now, cost * interval),
        )


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
