"""`lockgate`: serve the gateway, manage keys, read traces."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import NoReturn

import click

from lockgate.cli.context import config_or_exit, settings_of, store_or_exit
from lockgate.cli.logging_setup import configure_logging
from lockgate.cli.rollouts import register_rollout_commands
from lockgate.config import ConfigError
from lockgate.drift.cli import drift_command
from lockgate.settings import Settings
from lockgate.store import StoreUnavailable

_settings = settings_of


def _actor(ctx: click.Context) -> str:
    """Who the audit log names for this command: --actor, else the operating-system user."""
    from lockgate.audit.actions import default_actor

    return ctx.find_root().obj.get("actor") or default_actor()


@click.group()
@click.option("--data-dir", envvar="LOCKGATE_DATA_DIR", default=None, help="Data folder (default ./.lockgate).")
@click.option("--config", "config_path", envvar="LOCKGATE_CONFIG", default=None, type=click.Path(),
              help="lockgate.yaml to use (default: the embedded demo).")
@click.option("--actor", envvar="LOCKGATE_ACTOR", default=None,
              help="Who is acting, for the audit log (default: your operating-system user).")
@click.option("--database-url", envvar="LOCKGATE_DATABASE_URL", default=None,
              help="The store: postgresql://USER@HOST:PORT/DATABASE (default: SQLite in the data folder).")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, config_path: str | None, actor: str | None,
        database_url: str | None) -> None:
    """Lockgate: the safety layer between an AI application and production."""
    ctx.ensure_object(dict)
    ctx.obj["settings"] = Settings.from_env(data_dir=data_dir, config=config_path, database_url=database_url)
    ctx.obj["actor"] = actor


@cli.command()
@click.option("--config", "config_path", default=None, type=click.Path(), help="lockgate.yaml to serve.")
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8787).")
@click.option("--data-dir", default=None, help="Data folder (default ./.lockgate or LOCKGATE_DATA_DIR).")
@click.option("--workers", default=None, type=int, help="Worker processes (default: one per CPU core).")
@click.pass_context
def serve(ctx: click.Context, config_path: str | None, host: str | None, port: int | None,
          data_dir: str | None, workers: int | None) -> None:
    """Serve the gateway (the embedded demo when no --config is given)."""
    import uvicorn

    from lockgate.audit.actions import record_config_loaded
    from lockgate.cluster.changes import install_announcer
    from lockgate.cluster.connection import redis_target
    from lockgate.cluster.live import live_windows
    from lockgate.control.commands import reconcile, state_of
    from lockgate.drift.monitor import start_drift_monitor
    from lockgate.gateway.runtime import load_settings_config, open_store, register_releases
    from lockgate.privacy.secret import install_secret
    from lockgate.rollout.status import route_summary

    configure_logging()
    base = _settings(ctx)
    settings = Settings.from_env(
        data_dir=data_dir or str(base.data_dir),
        config=config_path or (str(base.config_path) if base.config_path else None),
        host=host, port=port, database_url=base.database,
    )
    try:
        config = load_settings_config(settings)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    redis = redis_target(settings, config)
    install_announcer(redis)  # reconciling may change a route's state: replicas hear of it at once
    registry = register_releases(config, store, actor=_actor(ctx))  # once, here, before workers race to do it
    record_config_loaded(store, config, str(settings.config_path or "<embedded demo.yaml>"), _actor(ctx))
    install_secret(settings.data_dir)  # created here, once, rather than by racing workers
    declared = {route: releases[config.routes[route].serve].version for route, releases in registry.items()}
    reconcile(store, declared)
    for route in registry:
        click.echo(f"route {route}: {route_summary(state_of(store, route))}")
    if config.server.require_api_key and not any(k.role == "app" for k in store.list_keys()):
        click.echo("no API keys yet: create one with `.venv/bin/lockgate keys create --name NAME` "
                   "(the key is printed on the last line)")
    try:
        # Drift checks run here, once, not in the workers (lockgate.drift.monitor); None without `drift:`.
        drift_monitor = start_drift_monitor(settings, config, store)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    n_workers = workers or config.server.workers or os.cpu_count() or 1
    click.echo(f"lockgate: listening on http://{settings.host}:{settings.port} with {n_workers} worker(s); "
               f"data in {settings.data_dir}")
    os.environ.update(settings.to_env())
    os.environ["LOCKGATE_WORKERS"] = str(n_workers)
    common = {"host": settings.host, "port": settings.port, "log_level": "warning", "access_log": False,
              "loop": "uvloop", "http": "httptools", "timeout_graceful_shutdown": 10}
    if n_workers == 1:
        from lockgate.gateway.app import create_app
        from lockgate.gateway.runtime import Runtime

        try:
            uvicorn.run(create_app(Runtime(settings, config, store, workers=1)), **common)
        finally:
            if drift_monitor is not None:
                drift_monitor.stop()
        return
    # Several processes: metrics are summed across workers through files in this folder.
    metrics_dir = settings.data_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    from lockgate.observe import metrics

    metrics.enable_multiprocess(str(metrics_dir))  # the workers inherit it; the supervisor counts feedback
    # The supervisor loads every worker's journaled traces into the store, off the workers' interpreters.
    from lockgate.observe.journal import TraceJournal
    from lockgate.observe.retention import RetentionSweeper

    loader = TraceJournal(settings.spool_dir, store, flush_interval_s=config.tracing.flush_interval_s,
                          housekeeping=RetentionSweeper(store, config))
    loader.start()
    # Rollouts advance here too, next to the traces they are judged on.
    from lockgate.rollout.analysis import Analyzer
    from lockgate.rollout.controller import RolloutController

    windows = live_windows(store, redis)  # Redis's live counters when configured, else the loaded traces
    controller = RolloutController(store, list(config.routes), analyzer=Analyzer(store, windows=windows))
    controller.start()
    from lockgate.alerts.evaluator import build_alert_evaluator

    alerts = build_alert_evaluator(store, config, windows=windows)  # and alerts, on the same traffic
    if alerts is not None:
        alerts.start()
    try:
        uvicorn.run("lockgate.gateway.app:create_app_from_env", factory=True, workers=n_workers, **common)
    finally:
        if alerts is not None:
            alerts.stop()
        controller.stop()
        if drift_monitor is not None:
            drift_monitor.stop()
        loader.stop()  # the workers sealed their segments on the way out; load them now


# -- keys ----------------------------------------------------------------------------------------


_store = store_or_exit


@cli.group()
def keys() -> None:
    """Create, list and revoke API keys."""


def _fail(exc: Exception, exit_code: int = 1) -> NoReturn:
    """An operation's own error (it says what to fix), or the store being unreachable."""
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, StoreUnavailable):
        message = f"the database is unavailable right now ({exc}); retry in a moment"
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--role", default="app", show_default=True,
              help="app (data plane) or an admin API role: viewer, reviewer, operator, deployer, admin.")
@click.option("--routes", default=None, help="Comma-separated routes an app key may use (default: all).")
@click.option("--rpm", type=int, default=None, help="Requests per minute (default: the server's default).")
@click.option("--tpm", type=int, default=None, help="Tokens per minute (default: the server's default).")
@click.pass_context
def keys_create(ctx: click.Context, name: str, role: str, routes: str | None, rpm: int | None,
                tpm: int | None) -> None:
    """Create a key. The key itself is printed once, alone on the last line."""
    from lockgate.auth.actor import Actor
    from lockgate.auth.operations import create_api_key
    from lockgate.errors import LockgateError

    route_list = [r.strip() for r in routes.split(",") if r.strip()] if routes else None
    try:
        new = create_api_key(_store(ctx), Actor.cli(_actor(ctx)), name=name, role=role, routes=route_list,
                             requests_per_minute=rpm, tokens_per_minute=tpm)
    except (LockgateError, StoreUnavailable) as exc:
        _fail(exc, exit_code=2)
    scope = "admin API" if new.record.role != "app" else f"routes: {','.join(route_list) if route_list else 'all'}"
    click.echo(f"created key {new.record.key_id} ({name}); role: {new.record.role}; {scope}. "
               "Store it now: it is not shown again.")
    click.echo(new.plaintext)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.pass_context
def keys_list(ctx: click.Context, include_revoked: bool) -> None:
    """List keys (never the keys themselves)."""
    rows = _store(ctx).list_keys(include_revoked=include_revoked)
    click.echo(f"{'KEY ID':<18} {'NAME':<20} {'ROLE':<9} {'ROUTES':<24} {'RPM':>6} {'TPM':>8}  CREATED"
               "              STATE")
    for k in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(k.created_at))
        state = "revoked" if k.revoked_at else "active"
        routes = "-" if k.role != "app" else ",".join(k.routes) if k.routes else "all"
        click.echo(f"{k.key_id:<18} {k.name[:20]:<20} {k.role:<9} {routes:<24} "
                   f"{k.requests_per_minute or '-':>6} {k.tokens_per_minute or '-':>8}  {created}  {state}")


@keys.command("revoke")
@click.argument("key")
@click.pass_context
def keys_revoke(ctx: click.Context, key: str) -> None:
    """Revoke a key by id or name. Gateways stop accepting it within seconds."""
    from lockgate.auth.actor import Actor
    from lockgate.auth.operations import revoke_api_keys
    from lockgate.errors import LockgateError

    try:
        revoked = revoke_api_keys(_store(ctx), Actor.cli(_actor(ctx)), key)
    except (LockgateError, StoreUnavailable) as exc:
        _fail(exc)
    click.echo("revoked " + ", ".join(f"{k.key_id} ({k.name})" for k in revoked))


# -- releases ------------------------------------------------------------------------------------


@cli.group()
def release() -> None:
    """Register, list, show and diff releases."""


_config_or_exit = config_or_exit


@release.command("create")
@click.pass_context
def release_create(ctx: click.Context) -> None:
    """Register every release declared in the configuration; the same content keeps its version."""
    from lockgate.auth.actor import Actor
    from lockgate.releases.operations import register_declared_releases

    config = _config_or_exit(ctx)
    for records in register_declared_releases(_store(ctx), config, Actor.cli(_actor(ctx))).values():
        for label, registered in records.items():
            record = registered.record
            state = "new" if registered.created else "unchanged"
            click.echo(f"{record.release_id:<24} {label:<12} {record.content_hash[:12]}  {state}")


@release.command("list")
@click.option("--route", default=None, help="Only this route.")
@click.pass_context
def release_list(ctx: click.Context, route: str | None) -> None:
    """Every registered release, oldest first; `serving` marks what the configuration serves."""
    from lockgate.releases.diff import serving_hashes
    from lockgate.releases.operations import list_releases

    serving = serving_hashes(_config_or_exit(ctx))
    click.echo(f"{'RELEASE':<24} {'LABEL':<12} {'HASH':<12}  {'CREATED':<19}  STATE")
    for listed in list_releases(_store(ctx), serving, route):
        record = listed.record
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created_at))
        state = "serving" if listed.serving else ""
        click.echo(f"{record.release_id:<24} {record.label:<12} {record.content_hash[:12]}  {created}  {state}")


def _release_or_exit(ctx: click.Context, release_id: str):  # noqa: ANN202 - returns ReleaseRecord
    from lockgate.errors import LockgateError
    from lockgate.releases.operations import find_release

    try:
        return find_release(_store(ctx), release_id)
    except (LockgateError, StoreUnavailable) as exc:
        _fail(exc)


@release.command("show")
@click.argument("release_id")
@click.pass_context
def release_show(ctx: click.Context, release_id: str) -> None:
    """One release's full content, as JSON (e.g. `lockgate release show support-bot@2`)."""
    record = _release_or_exit(ctx, release_id)
    click.echo(json.dumps({"release": record.release_id, "label": record.label, "hash": record.content_hash,
                           "created_at": record.created_at, "content": record.content}, indent=2, ensure_ascii=False))


@release.command("diff")
@click.argument("old")
@click.argument("new")
@click.pass_context
def release_diff(ctx: click.Context, old: str, new: str) -> None:
    """Exactly what changed from one release to another, one line per key path."""
    from lockgate.errors import LockgateError
    from lockgate.releases.operations import diff_releases

    try:
        diff = diff_releases(_store(ctx), old, new)
    except (LockgateError, StoreUnavailable) as exc:
        _fail(exc)
    a, b, changes = diff.old, diff.new, diff.changes
    click.echo(f"{a.release_id} ({a.content_hash[:12]}) -> {b.release_id} ({b.content_hash[:12]}): "
               f"{len(changes)} change(s)")
    for change in changes:
        click.echo(change.describe())


# -- traces --------------------------------------------------------------------------------------


@cli.group()
def traces() -> None:
    """Read request traces."""


@traces.command("tail")
@click.option("-n", "limit", default=20, show_default=True, help="How many recent traces.")
@click.option("--route", default=None, help="Only this route.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new traces.")
@click.pass_context
def traces_tail(ctx: click.Context, limit: int, route: str | None, follow: bool) -> None:
    """The most recent traces, one line each, oldest first."""
    store = _store(ctx)
    seen: set[str] = set()
    click.echo(f"{'TIME':<19} {'TRACE ID':<28} {'ROUTE':<14} {'RELEASE':<16} {'STATUS':>6} {'OUTCOME':<18} "
               f"{'LATENCY':>9} {'TOKENS':>7}")
    while True:
        for t in reversed(store.recent_traces(limit=limit, route=route)):
            if t["trace_id"] in seen:
                continue
            seen.add(t["trace_id"])
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["ts"]))
            tokens = (t.get("prompt_tokens") or 0) + (t.get("completion_tokens") or 0)
            click.echo(f"{when:<19} {t['trace_id'][:28]:<28} {str(t.get('route'))[:14]:<14} "
                       f"{str(t.get('release'))[:16]:<16} {t['status']:>6} {t['outcome'][:18]:<18} "
                       f"{t.get('latency_ms') or 0:>7.1f}ms {tokens:>7}")
        if not follow:
            return
        time.sleep(1.0)


@traces.command("show")
@click.argument("trace_id")
@click.pass_context
def traces_show(ctx: click.Context, trace_id: str) -> None:
    """One trace in full, as JSON."""
    trace = _store(ctx).get_trace(trace_id)
    if trace is None:
        click.echo(f"error: no trace '{trace_id}' (traces reach the store within a second of the response; "
                   "see `lockgate traces tail`)", err=True)
        sys.exit(1)
    click.echo(json.dumps(trace, indent=2, ensure_ascii=False))


# -- feedback ------------------------------------------------------------------------------------


@cli.group()
def feedback() -> None:
    """Read user feedback (POST /v1/feedback) per release."""


@feedback.command("summary")
@click.option("--route", required=True, help="The route to summarise.")
@click.option("--since", default=None, help="Only ratings from this long ago on: 30m, 6h, 7d (default: all).")
@click.pass_context
def feedback_summary(ctx: click.Context, route: str, since: str | None) -> None:
    """Ratings per release: count, mean score (0 to 1) and negative rate (thumbs down, 1-2 stars)."""
    from lockgate.feedback.summary import parse_since

    try:
        since_ts = parse_since(since, now=time.time()) if since else None
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    store = _store(ctx)
    click.echo(f"{'RELEASE':<24} {'RATINGS':>8} {'MEAN SCORE':>10} {'NEGATIVE':>9} {'NEG RATE':>8}")
    for row in store.feedback_summary(route, since_ts):
        click.echo(f"{row.release:<24} {row.count:>8} {row.mean_score:>10.3f} {row.negative:>9} "
                   f"{row.negative_rate:>8.1%}")
    pending = len(store.list_feedback(status="pending", limit=10_000))
    if pending:
        click.echo(f"{pending} rating(s) not linked to a trace yet (their request ids are not in the store)")


# -- eval ----------------------------------------------------------------------------------------


@cli.command("eval")
@click.argument("suite_path", metavar="SUITE", type=click.Path())
@click.option("--release", "release_ref", required=True,
              help="Release to evaluate: ROUTE@VERSION or ROUTE:LABEL (e.g. support-bot:v2).")
@click.option("--baseline", "baseline_ref", default=None, help="Release to compare with (paired McNemar test).")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(min=1),
              help="Cases in flight at once.")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Folder for the reports (default ./.lockgate/evals/).")
@click.pass_context
def eval_command(ctx: click.Context, suite_path: str, release_ref: str, baseline_ref: str | None,
                 concurrency: int, out_dir: str | None) -> None:
    """Run an evaluation suite through the gateway and gate the release (exit 0 pass, 1 fail, 2 error)."""
    from lockgate.evals.report import summary_text, write_reports
    from lockgate.evals.runner import run_evaluation
    from lockgate.evals.suite import SuiteError, check_case_count, load_suite

    try:
        suite = load_suite(suite_path)
        check_case_count(suite)
    except SuiteError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    config = _config_or_exit(ctx)
    try:
        report = run_evaluation(_settings(ctx), config, suite, release_ref, baseline_ref, concurrency=concurrency)
    except Exception as exc:  # noqa: BLE001 - any setup failure is exit 2 with its message
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    paths = write_reports(report, out_dir or os.path.join(".lockgate", "evals"))
    click.echo(summary_text(report))
    click.echo("reports: " + ", ".join(str(p) for p in paths.values()))
    sys.exit(0 if report["passed"] else 1)


register_rollout_commands(cli)
from lockgate.cli.audit import audit  # noqa: E402 - the command group lives in its own module

cli.add_command(audit)
cli.add_command(drift_command)
from lockgate.cli.alerts import alerts  # noqa: E402
from lockgate.cli.incidents import incident  # noqa: E402

cli.add_command(alerts)
cli.add_command(incident)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
