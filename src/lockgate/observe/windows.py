"""Where rollout analysis and alert rules read a route's recent traffic from: one small interface.

The store answers it from the traces the loader moved into it (about a second behind, complete,
any window). With Redis, lockgate.cluster.live answers recent windows from counters every replica
increments as its requests complete (fresher, and shared by all replicas), and hands older windows
to the store. Either way the readers get the same `ReleaseWindow`s, so the analysis never forks.
"""

from __future__ import annotations

from typing import Protocol

from lockgate.store import ReleaseWindow


class LiveWindows(Protocol):
    def release_window(self, route: str, since: float, until: float | None = None, *,
                       with_latencies: bool = True) -> list[ReleaseWindow]:
        """Per (release, shadow or not): the route's counted requests in [since, until)."""
        ...
