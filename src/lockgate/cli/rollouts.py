"""`lockgate rollout`, `lockgate flag` and `lockgate experiment`: the control plane from a terminal.

They write the route's state in the store; running gateways pick it up within a second. Exit codes:
0 done, 1 the action does not apply to the route's current state (the message says why), 2 bad
input or no store.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import click

from lockgate.cli.context import config_or_exit, operator, store_or_exit
from lockgate.control.state import RouteState
from lockgate.rollout.machine import RolloutError


def _run(action: Callable[[], RouteState]) -> RouteState:
    try:
        return action()
    except RolloutError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def register_rollout_commands(cli: click.Group) -> None:
    cli.add_command(rollout)
    cli.add_command(flag)
    cli.add_command(experiment)


@click.group()
def rollout() -> None:
    """Move a route from its stable release to a candidate, by a plan of steps."""


@rollout.command("start")
@click.argument("route")
@click.option("--candidate", required=True, help="The release to roll out: a label (v2), a version or ROUTE@N.")
@click.option("--plan", "plan_name", default=None, help="A plan declared under the route (default: 'default').")
@click.option("--as", "actor", default=None, help="Who starts it (default: your user name).")
@click.pass_context
def rollout_start(ctx: click.Context, route: str, candidate: str, plan_name: str | None, actor: str | None) -> None:
    """Start a rollout (e.g. `lockgate rollout start support-bot --candidate v2`)."""
    from lockgate.control.commands import start_rollout
    from lockgate.rollout.status import render

    config, store = config_or_exit(ctx), store_or_exit(ctx)
    who = operator(ctx, actor)
    state = _run(lambda: start_rollout(config, store, route, candidate, plan_name=plan_name, actor=who))
    click.echo(render(state))


@rollout.command("status")
@click.argument("route")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Refresh every second until interrupted.")
@click.pass_context
def rollout_status(ctx: click.Context, route: str, as_json: bool, watch: bool) -> None:
    """Where the route's rollout is: step, weights, analysis so far, next decision."""
    from lockgate.control.commands import state_of
    from lockgate.rollout import status

    store = store_or_exit(ctx)
    while True:
        state = _run(lambda: state_of(store, route))
        if as_json:
            click.echo(json.dumps(status.as_json(state), indent=2))
        else:
            if watch:
                click.clear()
            click.echo(status.render(state))
        if not watch:
            return
        time.sleep(1)


def _operator_action(name: str, doc: str, *, takes_reason: bool) -> click.Command:
    @click.argument("route")
    @click.option("--as", "actor", default=None, help="Who acts (default: your user name).")
    @click.pass_context
    def command(ctx: click.Context, route: str, actor: str | None, reason: str = "") -> None:
        from lockgate.control.commands import apply
        from lockgate.rollout.status import render

        store = store_or_exit(ctx)
        state = _run(lambda: apply(store, route, name, actor=operator(ctx, actor), reason=reason))
        click.echo(render(state))

    command.__doc__ = doc
    if takes_reason:
        command = click.option("--reason", default="", help="Why, for the audit log.")(command)
    return rollout.command(name)(command)


_operator_action("pause", "Hold the rollout at its current step and weights.", takes_reason=True)
_operator_action("resume", "Continue a paused rollout (a pause step completes; analysis measures afresh).",
                 takes_reason=False)
_operator_action("approve", "Approve a gate step; --as must name the gate's approver.", takes_reason=False)
_operator_action("promote", "Make the candidate stable now, skipping the remaining steps.", takes_reason=False)
_operator_action("abort", "Stop the rollout: the candidate gets no more traffic.", takes_reason=True)
_operator_action("rollback", "Roll back now: the candidate gets no more traffic.", takes_reason=True)


@click.group()
def flag() -> None:
    """Route flags; `kill_switch` sends a route to its last good release or a static answer."""


@flag.command("set")
@click.argument("route")
@click.argument("name", type=click.Choice(["kill_switch"]))
@click.argument("value", type=click.Choice(["off", "last_good", "static"]))
@click.option("--message", default=None, help="The static answer (kill_switch static).")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.option("--as", "actor", default=None, help="Who acts (default: your user name).")
@click.pass_context
def flag_set(ctx: click.Context, route: str, name: str, value: str, message: str | None, reason: str,
             actor: str | None) -> None:
    """e.g. `lockgate flag set support-bot kill_switch last_good --reason 'bad answers'`."""
    from lockgate.control.commands import set_kill_switch
    from lockgate.rollout.status import route_summary

    store = store_or_exit(ctx)
    who = operator(ctx, actor)
    state = _run(lambda: set_kill_switch(store, route, value, actor=who, message=message, reason=reason))
    click.echo(route_summary(state))


@flag.command("get")
@click.argument("route")
@click.pass_context
def flag_get(ctx: click.Context, route: str) -> None:
    """The route's flags, as JSON."""
    from lockgate.control.commands import flags_of, state_of

    store = store_or_exit(ctx)
    state = _run(lambda: state_of(store, route))
    click.echo(json.dumps(flags_of(state), indent=2))


@click.group()
def experiment() -> None:
    """A/B/n experiments: fixed weights over several releases, declared under the route."""


@experiment.command("start")
@click.argument("route")
@click.argument("name")
@click.option("--as", "actor", default=None)
@click.pass_context
def experiment_start(ctx: click.Context, route: str, name: str, actor: str | None) -> None:
    from lockgate.control.commands import start_experiment
    from lockgate.rollout.status import route_summary

    config, store = config_or_exit(ctx), store_or_exit(ctx)
    click.echo(route_summary(_run(lambda: start_experiment(config, store, route, name, actor=operator(ctx, actor)))))


@experiment.command("stop")
@click.argument("route")
@click.option("--as", "actor", default=None)
@click.pass_context
def experiment_stop(ctx: click.Context, route: str, actor: str | None) -> None:
    from lockgate.control.commands import stop_experiment
    from lockgate.rollout.status import route_summary

    store = store_or_exit(ctx)
    click.echo(route_summary(_run(lambda: stop_experiment(store, route, actor=operator(ctx, actor)))))


@experiment.command("report")
@click.argument("route")
@click.option("--since", "since_s", default=3600.0, show_default=True, help="Seconds of traffic to compare.")
@click.pass_context
def experiment_report(ctx: click.Context, route: str, since_s: float) -> None:
    """Per-metric comparison of the arms, with significance and a sample-ratio-mismatch check."""
    from lockgate.control.commands import state_of
    from lockgate.rollout.experiments import compare_arms, render_report

    store = store_or_exit(ctx)
    state = _run(lambda: state_of(store, route))
    if state.experiment is None:
        click.echo(f"error: no experiment runs on {route}", err=True)
        sys.exit(1)
    report = compare_arms(store, state, since=time.time() - since_s)
    click.echo(render_report(report))
