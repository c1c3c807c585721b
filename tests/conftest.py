from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.devtools.fake_upstream import FakeUpstreamThread, run_in_thread
from tests.harness import Gateway, create_key, free_port, write_config


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstreamThread]:
    """A fake OpenAI-compatible upstream on a real port; fault modes are chosen by model name."""
    server = run_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def upstream_url(upstream: FakeUpstreamThread) -> str:
    """The fake upstream's base URL, for tests that only write it into a configuration."""
    return upstream.base_url


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator:
    """Starts `lockgate serve` processes; every one is stopped at the end of the test."""
    started: list[Gateway] = []

    def start(config: Path | None = None, *, workers: int = 1, data_dir: Path | None = None,
              env: dict[str, str] | None = None, wait_ready: bool = True) -> Gateway:
        gw = Gateway(data_dir=data_dir or tmp_path / "data", config=config, port=free_port(), workers=workers,
                     env=env or {})
        started.append(gw)
        return gw.start(wait_ready=wait_ready)

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def echo_gateway(tmp_path: Path, upstream: FakeUpstreamThread, start_gateway) -> tuple[Gateway, str]:
    """The `echo` route over the fake upstream, with a key that may use it."""
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    return start_gateway(config, data_dir=data_dir), key


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted at the end."""
    from tests.redis_helpers import SHARED_REDIS_URL, delete_prefix, unique_prefix

    prefix = unique_prefix()
    yield prefix
    delete_prefix(SHARED_REDIS_URL, prefix)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator:
    """A redis-server of this test's own, which it may kill and restart (tests.redis_helpers.PrivateRedis)."""
    from tests.redis_helpers import PrivateRedis

    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.kill()
