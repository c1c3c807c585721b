"""The persisted state of one route: stable release, last good release, kill switch, rollout, experiment.

One JSON document per route in the store, written with compare-and-set, read by every worker
every fraction of a second. Versions are release versions of the route (`support-bot@3` is 3).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class KillSwitch(Frozen):
    mode: Literal["last_good", "static"]
    message: str | None = None  # the static answer
    reason: str = ""
    set_by: str = ""
    set_at: float = 0.0


class RolloutStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # by an operator, a pause step, or analysis that could not judge
    AWAITING_APPROVAL = "awaiting_approval"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    @property
    def active(self) -> bool:
        return self in (RolloutStatus.RUNNING, RolloutStatus.PAUSED, RolloutStatus.AWAITING_APPROVAL)


class StepOutcome(Frozen):
    index: int
    kind: str
    started_at: float
    ended_at: float
    result: str  # "completed", "failed", "skipped", ...
    note: str = ""
    analysis: dict[str, Any] | None = None


class Rollout(Frozen):
    id: str
    route: str
    candidate: int
    stable: int
    plan_name: str
    plan: dict[str, Any]  # the plan as it was when the rollout started: later config edits do not change it
    status: RolloutStatus = RolloutStatus.RUNNING
    step_index: int = 0
    step_started_at: float = 0.0
    canary_weight: float = 0.0  # percent of users on the candidate
    shadow_percent: float = 0.0  # percent of requests copied to the candidate
    pause_reason: str | None = None
    approvals: tuple[dict[str, Any], ...] = ()
    steps_done: tuple[StepOutcome, ...] = ()
    last_analysis: dict[str, Any] | None = None
    shadow_summary: dict[str, Any] | None = None
    started_at: float = 0.0
    started_by: str = ""
    ended_at: float | None = None
    end_reason: str | None = None


class Experiment(Frozen):
    name: str
    arms: dict[int, float]  # version -> percent
    started_at: float
    started_by: str = ""


class RouteState(Frozen):
    route: str
    stable: int
    declared: int | None = None  # the configuration's `serve` version when this state was last reconciled
    last_good: int | None = None  # the stable before the latest promotion: where the kill switch goes
    kill_switch: KillSwitch | None = None
    rollout: Rollout | None = None
    experiment: Experiment | None = None
    history: tuple[dict[str, Any], ...] = Field(default=(), description="Ended rollouts, newest last (bounded).")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RouteState:
        return cls.model_validate(body)

    def active_rollout(self) -> Rollout | None:
        return self.rollout if self.rollout is not None and self.rollout.status.active else None
