"""Where the Redis settings come from, and what a wrong one says."""

from __future__ import annotations

import pytest

from lockgate.cluster.connection import redis_target
from lockgate.config.loader import ConfigError, parse_config
from lockgate.settings import Settings
from tests.harness import ONE_ROUTE_YAML

pytestmark = pytest.mark.store_free  # never opens a store (tests/conftest.py)

BASE = ONE_ROUTE_YAML


def test_without_a_url_there_is_no_redis(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCKGATE_REDIS_URL", raising=False)
    assert redis_target(Settings.from_env(data_dir=str(tmp_path)), parse_config(BASE, source="t.yaml")) is None


def test_the_environment_wins_over_the_file_and_reaches_worker_processes(tmp_path, monkeypatch):
    config = parse_config(BASE + "redis: {url: 'redis://file:6379/0', on_failure: closed, prefix: staging, "
                                 "timeout_ms: 50}", source="t.yaml")
    monkeypatch.setenv("LOCKGATE_REDIS_URL", "redis://env:6379/1")
    settings = Settings.from_env(data_dir=str(tmp_path))
    target = redis_target(settings, config)
    assert target is not None
    assert (target.url, target.on_failure, target.prefix, target.timeout_s) == ("redis://env:6379/1", "closed",
                                                                               "staging", 0.05)
    assert settings.to_env()["LOCKGATE_REDIS_URL"] == "redis://env:6379/1"
    monkeypatch.delenv("LOCKGATE_REDIS_URL")
    target = redis_target(Settings.from_env(data_dir=str(tmp_path)), config)
    assert target is not None and target.url == "redis://file:6379/0"


def test_a_wrong_url_or_failure_mode_says_what_to_write(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + "redis: {url: 'http://127.0.0.1:6379', on_failure: maybe}", source="t.yaml")
    text = str(caught.value)
    assert "redis.url: a Redis URL starts with redis://, rediss:// (TLS) or unix://" in text
    assert "redis.on_failure: Input should be 'open' or 'closed'" in text
