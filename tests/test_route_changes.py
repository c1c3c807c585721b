"""Route-state changes reach other processes through Redis, not only at their next poll of the store.

The caches here never poll (a one-hour interval): a test can only pass through the notice, or,
after Redis comes back, through the full re-read every new subscription does.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from lockgate.cluster.changes import follow_route_changes
from lockgate.cluster.connection import RedisTarget
from lockgate.config import load_config
from lockgate.control.cache import ControlCache
from lockgate.control.commands import declared_versions, reconcile, set_kill_switch
from lockgate.gateway.runtime import open_store
from lockgate.settings import Settings
from lockgate.store import Store
from tests.harness import database_url_at, run_cli, write_config
from tests.redis_helpers import SHARED_REDIS_URL, target

NEVER_S = 3600.0


def redis_config(tmp_path: Path, upstream_url: str, url: str, prefix: str) -> Path:
    path = write_config(tmp_path / "lockgate.yaml", upstream_url)
    path.write_text(path.read_text() + f"redis:\n  url: {url}\n  prefix: {prefix}\n")
    return path


def cache_over(tmp_path: Path, config_path: Path) -> tuple[Store, ControlCache]:
    # The database `lockgate` commands started on this data folder use (PostgreSQL in that pass).
    database = database_url_at(tmp_path / "data" / "lockgate.sqlite3")
    settings = Settings.from_env(data_dir=str(tmp_path / "data"), config=str(config_path), database_url=database)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    declared = declared_versions(load_config(config_path), store)
    reconcile(store, declared)
    cache = ControlCache(store, declared, refresh_interval_s=NEVER_S)
    cache.refresh()
    return store, cache


async def wait_for_revision(cache: ControlCache, route: str, revision: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while cache.revision(route) < revision and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def test_a_kill_switch_set_by_the_cli_reaches_another_process_cache_through_redis(tmp_path, upstream, redis_prefix):
    config_path = redis_config(tmp_path, upstream.base_url, SHARED_REDIS_URL, redis_prefix)
    store, cache = cache_over(tmp_path, config_path)
    before = cache.revision("echo")
    notices: list[tuple[str, int]] = []

    async def on_change(route: str, revision: int) -> None:
        notices.append((route, revision))
        await asyncio.to_thread(cache.refresh_route, route)

    async def run() -> None:
        subscribed = asyncio.Event()

        async def on_subscribed() -> None:
            subscribed.set()

        follower = asyncio.create_task(follow_route_changes(target(SHARED_REDIS_URL, redis_prefix),
                                                            on_change=on_change, on_subscribed=on_subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        # Another process: the real CLI, which announces the change once its compare-and-set has won.
        await asyncio.to_thread(run_cli, "flag", "set", "echo", "kill_switch", "static", "--message", "Back soon.",
                                data_dir=tmp_path / "data", config=config_path)
        await wait_for_revision(cache, "echo", before + 1)
        follower.cancel()

    asyncio.run(run())
    stored = store.get_route_state("echo")
    assert stored is not None and stored[0] == before + 1
    assert notices == [("echo", before + 1)]
    assert cache.revision("echo") == before + 1
    kill = cache.state("echo").kill_switch
    assert kill is not None and kill.mode == "static" and kill.message == "Back soon."


def test_after_redis_comes_back_the_cache_reads_every_route_again(tmp_path, upstream, private_redis):
    """Notices sent while the subscription was down are lost: a new subscription re-reads everything."""
    config_path = redis_config(tmp_path, upstream.base_url, private_redis.url, "t")
    store, cache = cache_over(tmp_path, config_path)
    before = cache.revision("echo")
    subscriptions = 0

    async def on_subscribed() -> None:
        nonlocal subscriptions
        subscriptions += 1
        await asyncio.to_thread(cache.refresh)

    async def on_change(route: str, revision: int) -> None:
        await asyncio.to_thread(cache.refresh_route, route)

    async def run() -> None:
        follower = asyncio.create_task(follow_route_changes(RedisTarget(private_redis.url, prefix="t"),
                                                            on_change=on_change, on_subscribed=on_subscribed))
        deadline = time.monotonic() + 10
        while subscriptions == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        private_redis.kill()
        # Changed while Redis is down (this process announces nothing either way: no announcer installed).
        await asyncio.to_thread(set_kill_switch, store, "echo", "last_good", actor="test")
        private_redis.start()
        await wait_for_revision(cache, "echo", before + 1)
        follower.cancel()

    asyncio.run(run())
    assert subscriptions == 2
    assert cache.revision("echo") == before + 1
    kill = cache.state("echo").kill_switch
    assert kill is not None and kill.mode == "last_good"
