"""Route-state changes announced to every replica at once, so a rollback, a flag or a kill switch is
obeyed everywhere well within a second rather than at the next poll.

The writer of a change (the CLI, the admin API, the rollout controller, an alert action: all go
through lockgate.control.commands.update_state) publishes `{"route", "revision"}` once its
compare-and-set has won. Every worker subscribes and reads that route from the store at once. The
notice carries no state: the store stays the one source of truth, and a lost notice (Redis down, a
reconnect) costs only speed, because workers still poll the store (ControlCache.refresh_interval_s)
and re-read everything after each (re)subscription.

The announcer is installed once per process (`install_announcer`) rather than passed to every
command: every route-state write of a process must announce itself, whichever entry point made it,
and an entry point that forgot to pass it would silently fall back to polling speed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lockgate.cluster.connection import Outage, RedisTarget

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

RECONNECT_S = 0.5
# A subscription's reads wait this long for a message before checking the connection is alive.
LISTEN_TIMEOUT_S = 1.0


def channel_of(target: RedisTarget) -> str:
    return target.key("route-state")


class RouteChangeAnnouncer:
    def __init__(self, target: RedisTarget) -> None:
        self._channel = channel_of(target)
        # Announcing happens off the request path (commands run in threads), so it may wait a little longer.
        self._client: redis.Redis = target.sync_client(timeout_s=max(target.timeout_s, 0.5))
        self._outage = Outage("route change notices", log)

    def announce(self, route: str, revision: int) -> None:
        """Never raises: the change is already stored; a notice that fails only makes it slower to spread."""
        try:
            self._client.publish(self._channel, json.dumps({"route": route, "revision": revision}))
            self._outage.recovered()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            self._outage.failed(exc, "replicas will see the change at their next poll of the store")


_announcer: RouteChangeAnnouncer | None = None


def install_announcer(target: RedisTarget | None) -> None:
    """Called once at process start with the process's Redis (None: no notices, polling only)."""
    global _announcer
    _announcer = RouteChangeAnnouncer(target) if target is not None else None


def announce(route: str, revision: int) -> None:
    if _announcer is not None:
        _announcer.announce(route, revision)


def parse_notice(data: Any) -> tuple[str, int] | None:
    try:
        body = json.loads(data)
        return str(body["route"]), int(body["revision"])
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring an unreadable route change notice %r: %s", data, exc)
        return None


async def follow_route_changes(target: RedisTarget, *, on_change: Callable[[str, int], Awaitable[None]],
                               on_subscribed: Callable[[], Awaitable[None]]) -> None:
    """Runs until cancelled: calls `on_change(route, revision)` for every notice, and `on_subscribed()`
    each time a subscription is in place (first start and every reconnect: notices sent while the
    subscription was down are lost, so the caller re-reads everything then)."""
    outage = Outage("route change subscription", log)
    while True:
        client = target.async_client()
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel_of(target))
            while True:
                message = await pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
                if message is None:
                    await pubsub.ping()  # a dead connection shows here rather than never
                    continue
                if message["type"] == "subscribe":
                    outage.recovered()
                    await on_subscribed()
                elif message["type"] == "message":
                    notice = parse_notice(message["data"])
                    if notice is not None:
                        await on_change(*notice)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: resubscribe after a pause; polling covers meanwhile
            outage.failed(exc, f"resubscribing in {RECONNECT_S:g} s; polling the store meanwhile")
        finally:
            await _close_quietly(pubsub, client)
        await asyncio.sleep(RECONNECT_S)


async def _close_quietly(pubsub: Any, client: Any) -> None:
    for closeable in (pubsub, client):
        try:
            await closeable.aclose()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
            pass
