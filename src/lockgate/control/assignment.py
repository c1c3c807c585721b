"""Which release serves one request: the single place that reads a route's state on the request path.

Order of precedence: a tester's pin (header), the kill switch, an A/B/n experiment, a rollout's
canary weight, and otherwise the stable release. Shadow copies are decided on their own.

Sticky assignment: a user id (the OpenAI `user` field or the `x-lockgate-user` header) hashes to
one of 10,000 buckets, and the candidate serves buckets below its weight. Raising the weight from 5%
to 20% therefore keeps every user of the first 5% on the candidate. The hash is salted with the
rollout's id, so each rollout's first users are a different slice. Without a user id each request
is hashed on its own id, which is random.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lockgate.control.state import RouteState

BUCKETS = 10_000


@dataclass(frozen=True)
class Assignment:
    version: int | None  # None only with a static kill switch: no release is called
    role: str  # stable, canary, pinned, experiment, kill_switch
    static_message: str | None = None
    shadow_version: int | None = None  # also send a copy to this release; its answer is never returned
    sticky: bool = False  # assigned by user id (sticky) or per request


def bucket(salt: str, subject: str) -> int:
    digest = hashlib.blake2b(f"{salt}\x00{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _edge(percent: float) -> float:
    return percent * BUCKETS / 100


def assign(state: RouteState, *, user: str | None, request_id: str, pinned: int | None = None) -> Assignment:
    subject, sticky = (user, True) if user else (request_id, False)
    if pinned is not None:
        return Assignment(pinned, "pinned", sticky=sticky)
    kill = state.kill_switch
    if kill is not None:
        if kill.mode == "static":
            return Assignment(None, "kill_switch", static_message=kill.message or "", sticky=sticky)
        return Assignment(state.last_good or state.stable, "kill_switch", sticky=sticky)
    if state.experiment is not None:
        point = bucket(f"experiment:{state.experiment.name}", subject)
        edge = 0.0
        for version, weight in sorted(state.experiment.arms.items()):
            edge += _edge(weight)
            if point < edge:
                return Assignment(version, "experiment", sticky=sticky)
        return Assignment(max(state.experiment.arms), "experiment", sticky=sticky)
    rollout = state.active_rollout()
    if rollout is None:
        return Assignment(state.stable, "stable", sticky=sticky)
    shadow = None
    if rollout.shadow_percent > 0 and bucket(f"shadow:{rollout.id}", request_id) < _edge(rollout.shadow_percent):
        shadow = rollout.candidate
    if rollout.canary_weight > 0 and bucket(f"rollout:{rollout.id}", subject) < _edge(rollout.canary_weight):
        return Assignment(rollout.candidate, "canary", sticky=sticky)
    return Assignment(rollout.stable, "stable", shadow_version=shadow, sticky=sticky)
