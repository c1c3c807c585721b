"""Changes to a route's state, as operators ask for them: the one implementation behind both the
CLI and the admin API.

Each change reads the route's state, applies a pure transition, writes it back with
compare-and-set (retrying if the controller or another operator wrote in between), and appends the
transition's events to the audit log. Workers pick the new state up within a fraction of a second:
at once where Redis carries the change notice (lockgate.cluster.changes), at their next poll otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lockgate.cluster import changes
from lockgate.config import LockgateConfig
from lockgate.control.state import Experiment, KillSwitch, RouteState
from lockgate.releases import parse_release_id
from lockgate.rollout import machine
from lockgate.rollout.machine import Event, RolloutError
from lockgate.store import Store

CAS_ATTEMPTS = 20


def declared_versions(config: LockgateConfig, store: Store) -> dict[str, int]:
    """Each route's stable version as the configuration declares it (`serve:`)."""
    from lockgate.gateway.runtime import register_releases

    registry = register_releases(config, store)
    return {route: registry[route][rc.serve].version for route, rc in config.routes.items()}


def reconcile(store: Store, declared: dict[str, int], actor: str = "config") -> None:
    """At start: a route without a stored state gets one; a route whose `serve:` was edited in the
    configuration since the last start takes the configured release as stable (the file is the
    operator's declared intent), unless a rollout is in progress, which keeps going."""
    for route, version in declared.items():
        def change(state: RouteState | None, route: str = route, version: int = version) -> machine.Result:
            if state is None:
                return RouteState(route=route, stable=version, declared=version), []
            if state.declared == version or state.active_rollout() is not None:
                return state, []
            event = Event("route.stable_from_config",
                          f"lockgate.yaml now serves {route}@{version} (was {route}@{state.stable})",
                          {"previous": state.stable, "stable": version})
            return state.model_copy(update={"stable": version, "declared": version, "last_good": state.stable}), [event]

        update_state(store, route, change, actor=actor, default_stable=version)


def update_state(store: Store, route: str, change: Callable[[RouteState | None], tuple[RouteState, list[Event]]], *,
                 actor: str, default_stable: int | None = None) -> RouteState:
    """Read-modify-write with compare-and-set; audit records for the events once the write won."""
    for _ in range(CAS_ATTEMPTS):
        stored = store.get_route_state(route)
        revision, current = (stored[0], RouteState.from_json(stored[1])) if stored else (0, None)
        if current is None and default_stable is not None:
            new, events = change(None)
        else:
            if current is None:
                raise RolloutError(f"route {route} has no state yet: start `lockgate serve` once")
            new, events = change(current)
        if new == current:
            return new
        if store.put_route_state(route, new.to_json(), revision):
            changes.announce(route, revision + 1)  # before the audit records: serving the change comes first
            for event in events:
                store.append_audit(actor, event.action, route, {"reason": event.reason, **event.details})
            return new
        time.sleep(0.01)
    raise RolloutError(f"route {route}'s state kept changing under this command; try again")


def state_of(store: Store, route: str) -> RouteState:
    stored = store.get_route_state(route)
    if stored is None:
        raise RolloutError(f"route {route} has no state yet: start `lockgate serve` once, or check the route name")
    return RouteState.from_json(stored[1])


def resolve_version(config: LockgateConfig, store: Store, route: str, ref: str) -> int:
    """A release of `route` by label (v2), version (3) or id (support-bot@3)."""
    if route not in config.routes:
        raise RolloutError(f"unknown route {route!r}; routes: {', '.join(sorted(config.routes))}")
    if ref.isdigit():
        version = int(ref)
    else:
        parsed = parse_release_id(ref)
        if parsed is not None:
            if parsed[0] != route:
                raise RolloutError(f"{ref} is a release of route {parsed[0]}, not {route}")
            version = parsed[1]
        elif ref in config.routes[route].releases:
            return declared_label_version(config, store, route, ref)
        else:
            labels = ", ".join(sorted(config.routes[route].releases))
            raise RolloutError(f"{ref!r} is not a release of {route}: use a label ({labels}), a version or {route}@N")
    if store.get_release(route, version) is None:
        known = ", ".join(str(r.version) for r in store.list_releases(route)) or "none"
        raise RolloutError(f"{route}@{version} does not exist (versions: {known})")
    return version


def declared_label_version(config: LockgateConfig, store: Store, route: str, label: str) -> int:
    spec = config.routes[route].releases[label]
    return store.register_release(route, label, spec.content_hash(), spec.content()).version


# -- rollouts ---------------------------------------------------------------------------------------


def start_rollout(config: LockgateConfig, store: Store, route: str, candidate_ref: str, *, plan_name: str | None,
                  actor: str) -> RouteState:
    candidate = resolve_version(config, store, route, candidate_ref)
    plans = config.routes[route].plans
    if not plans:
        raise RolloutError(f"route {route} declares no rollout plan; add one under routes.{route}.plans "
                           "in lockgate.yaml")
    name = plan_name or ("default" if "default" in plans else next(iter(plans)))
    if name not in plans:
        raise RolloutError(f"route {route} has no plan {name!r}; plans: {', '.join(plans)}")
    plan = plans[name]
    return update_state(store, route, lambda s: machine.start(_require(s), candidate=candidate, plan_name=name,
                                                               plan=plan, actor=actor), actor=actor)


def apply(store: Store, route: str, action: str, *, actor: str, reason: str = "") -> RouteState:
    """pause, resume, approve, promote, abort or rollback the route's rollout."""
    transitions: dict[str, Callable[[RouteState], machine.Result]] = {
        "pause": lambda s: machine.pause(s, actor=actor, reason=reason),
        "resume": lambda s: machine.resume(s, actor=actor),
        "approve": lambda s: machine.approve(s, actor=actor),
        "promote": lambda s: machine.promote(s, actor=actor),
        "abort": lambda s: machine.abort(s, actor=actor, reason=reason),
        "rollback": lambda s: machine.rollback(s, actor=actor, reason=reason),
    }
    if action not in transitions:
        raise RolloutError(f"unknown rollout action {action!r}")
    return update_state(store, route, lambda s: transitions[action](_require(s)), actor=actor)


def _require(state: RouteState | None) -> RouteState:
    if state is None:
        raise RolloutError("the route has no state yet: start `lockgate serve` once")
    return state


# -- flags and the kill switch ----------------------------------------------------------------------

FLAGS = ("kill_switch",)


def set_kill_switch(store: Store, route: str, mode: str, *, actor: str, message: str | None = None,
                    reason: str = "") -> RouteState:
    """mode: off, last_good (serve the release before the latest promotion) or static (a fixed answer).
    Turning it on also ends a rollout in progress (rolled back): the candidate must not keep serving."""
    if mode not in ("off", "last_good", "static"):
        raise RolloutError(f"kill_switch takes off, last_good or static, not {mode!r}")
    if mode == "static" and not message:
        raise RolloutError("a static kill switch needs the answer to give: --message 'TEXT'")

    def change(state: RouteState | None) -> machine.Result:
        state = _require(state)
        events: list[Event] = []
        if mode == "off":
            if state.kill_switch is None:
                return state, []
            return state.model_copy(update={"kill_switch": None}), [
                Event("flag.kill_switch", f"kill switch off (by {actor})", {"mode": "off"})]
        if state.active_rollout() is not None:
            state, events = machine.rollback(state, actor=actor, reason="kill switch")
        now = time.time()
        switch = KillSwitch(mode=mode, message=message, reason=reason, set_by=actor, set_at=now)  # type: ignore[arg-type]
        target = (f"serving {route}@{state.last_good or state.stable}" if mode == "last_good"
                  else "answering with a static message")
        return state.model_copy(update={"kill_switch": switch}), [
            *events, Event("flag.kill_switch", f"kill switch on: {target} (by {actor})"
                           + (f": {reason}" if reason else ""), {"mode": mode, "message": message})]

    return update_state(store, route, change, actor=actor)


def flags_of(state: RouteState) -> dict[str, Any]:
    kill = state.kill_switch
    return {"kill_switch": kill.model_dump(mode="json") if kill else "off"}


# -- experiments --------------------------------------------------------------------------------------


def start_experiment(config: LockgateConfig, store: Store, route: str, name: str, *, actor: str) -> RouteState:
    if route not in config.routes:
        raise RolloutError(f"unknown route {route!r}")
    experiments = config.routes[route].experiments
    if name not in experiments:
        raise RolloutError(f"route {route} has no experiment {name!r}; declared: {', '.join(experiments) or 'none'}")
    spec = experiments[name]
    arms = {declared_label_version(config, store, route, label): weight for label, weight in spec.arms.items()}

    def change(state: RouteState | None) -> machine.Result:
        state = _require(state)
        if state.active_rollout() is not None:
            raise RolloutError(f"a rollout is in progress on {route}; finish it before starting an experiment")
        if state.experiment is not None:
            raise RolloutError(f"experiment {state.experiment.name!r} already runs on {route}; stop it first")
        experiment = Experiment(name=name, arms=arms, started_at=time.time(), started_by=actor)
        return state.model_copy(update={"experiment": experiment}), [
            Event("experiment.start", f"experiment {name} started by {actor}",
                  {"arms": {str(k): v for k, v in arms.items()}})]

    return update_state(store, route, change, actor=actor)


def stop_experiment(store: Store, route: str, *, actor: str) -> RouteState:
    def change(state: RouteState | None) -> machine.Result:
        state = _require(state)
        if state.experiment is None:
            raise RolloutError(f"no experiment runs on {route}")
        return state.model_copy(update={"experiment": None}), [
            Event("experiment.stop", f"experiment {state.experiment.name} stopped by {actor}", {})]

    return update_state(store, route, change, actor=actor)
