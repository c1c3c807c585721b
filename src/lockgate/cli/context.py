"""What every `lockgate` command needs from its context: settings, the store, the configuration."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from lockgate.config import ConfigError
from lockgate.settings import Settings
from lockgate.store import StoreUnavailable

if TYPE_CHECKING:
    from lockgate.config import LockgateConfig
    from lockgate.store import Store


def settings_of(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def store_or_exit(ctx: click.Context) -> Store:
    from lockgate.gateway.runtime import open_store

    settings = settings_of(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(settings)
    except StoreUnavailable as exc:
        from lockgate.store.engines import redacted

        where = redacted(settings.database) if settings.database else settings.data_dir
        click.echo(f"error: cannot open the store at {where}: {exc}", err=True)
        sys.exit(2)
    _announce_changes(settings)
    return store


def _announce_changes(settings: Settings) -> None:
    """A command that changes a route's state (rollback, kill switch...) tells every replica through Redis
    when the configuration names one (without a loadable configuration, replicas see it at their next poll)."""
    from lockgate.cluster.changes import install_announcer
    from lockgate.cluster.connection import redis_target
    from lockgate.gateway.runtime import load_settings_config

    try:
        config = load_settings_config(settings)
    except ConfigError:
        return
    install_announcer(redis_target(settings, config))


def config_or_exit(ctx: click.Context) -> LockgateConfig:
    from lockgate.gateway.runtime import load_settings_config

    try:
        return load_settings_config(settings_of(ctx))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def operator(ctx: click.Context, explicit: str | None = None) -> str:
    """Who is acting, for the audit log: `--as NAME`, else `lockgate --actor NAME`, else the OS user."""
    from lockgate.audit.actions import default_actor

    return explicit or ctx.find_root().obj.get("actor") or default_actor()
