"""`lockgate alerts status`: every rule of the configuration, its shared state and its value now."""

from __future__ import annotations

import json
import time

import click

from lockgate.cli.context import config_or_exit, store_or_exit


@click.group()
def alerts() -> None:
    """Alert rules declared in lockgate.yaml (docs/alerts.md)."""


@alerts.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule.")
@click.pass_context
def alerts_status(ctx: click.Context, as_json: bool) -> None:
    """Each rule's state as the evaluators share it, and its condition evaluated now (read-only)."""
    from lockgate.alerts.measure import evaluate

    config, store = config_or_exit(ctx), store_or_exit(ctx)
    states = {s.alert: s for s in store.list_alert_states()}
    now = time.time()
    if not config.alerts:
        click.echo("no alert rules in the configuration (add them under `alerts:`; see docs/alerts.md)")
        return
    if not as_json:
        click.echo(f"{'ALERT':<24} {'ROUTE':<14} {'KIND':<10} {'STATE':<8} {'SINCE':<19}  NOW")
    for rule in config.alerts:
        stored = states.get(rule.name)
        condition = evaluate(store, rule, now)
        state = stored.state if stored else "-"  # no gateway has evaluated it yet
        since = stored.firing_since if stored and stored.state == "firing" else None
        if as_json:
            click.echo(json.dumps({"alert": rule.name, "route": rule.route, "kind": rule.kind, "state": state,
                                   "firing_since": since, "details": stored.details if stored else None,
                                   "now": {"status": condition.status.value, "value": condition.value,
                                           "threshold": condition.threshold, "summary": condition.summary}}))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "-"
        click.echo(f"{rule.name[:24]:<24} {rule.route[:14]:<14} {rule.kind:<10} {state:<8} {when:<19}  "
                   f"{condition.status.value}: {condition.summary}")
    if not as_json and any(rule.name not in states for rule in config.alerts):
        click.echo("STATE -: no gateway has evaluated the rule yet (gateways evaluate rules while they serve)")
