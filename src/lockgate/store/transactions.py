"""Reads and write transactions over an engine: the one place a connection is borrowed and returned."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from lockgate.store.engines import Connection, Engine

T = TypeVar("T")


class Transactions:
    """The base every query group of the store builds on (lockgate.store.queries)."""

    engine: Engine

    def _read(self, fn: Callable[[Connection], T]) -> T:
        """Runs `fn` outside any transaction: each statement sees what was committed when it started."""
        with self.engine.connection() as c:
            return fn(c)

    def _write(self, fn: Callable[[Connection], T], *locks: str) -> T:
        """Runs `fn` in one write transaction holding the named write locks (engines.WRITE_LOCKS):
        everything `fn` writes commits together, or nothing does."""
        with self.engine.connection() as c:
            self.engine.begin_write(c, locks)
            try:
                result = fn(c)
            except BaseException:
                _rollback(c)
                raise
            c.execute("COMMIT")
            return result


def _rollback(c: Connection) -> None:
    try:
        c.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the connection broke: the original error is the one to report
        pass


def marks(values: Sequence[object]) -> str:
    """`?, ?, ?` for an IN list of these values."""
    return ", ".join("?" * len(values))
