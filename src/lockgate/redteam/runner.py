"""`lockgate redteam`: generate the attacks, send them through the release's whole pipeline (guards,
retrieval, fallbacks; the same in-process serving as `lockgate eval`), judge every answer, and
store the rates as the release's evidence, diffed against the previous release's run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from lockgate.config import LockgateConfig
from lockgate.evals.serving import (
    ask,
    open_store_and_registry,
    release_info,
    resolve_release,
    run_bounded,
    serve,
    stderr_progress,
)
from lockgate.gateway.runtime import ServingRelease
from lockgate.guards.leakage import canary_for
from lockgate.redteam import metrics
from lockgate.redteam.attacks import CATEGORIES, Attack, check_names, generate
from lockgate.redteam.detectors import Target, judge
from lockgate.redteam.strategies import STRATEGIES
from lockgate.settings import Settings
from lockgate.store import EvidenceRecord, Store

log = logging.getLogger(__name__)

EVIDENCE_KIND = "redteam"
OUTPUT_EXCERPT_CHARS = 2000


@dataclass
class AttackResult:
    id: str
    category: str
    strategy: str
    template: str
    prompt: str
    output: str = ""
    outcome: str = "error"
    blocked_by: str | None = None  # "input" or "output" when the guards withheld the answer
    detector: str | None = None
    reason: str = ""
    latency_ms: float = 0.0
    status: int | None = None
    guard_action: str | None = None
    finish_reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_of(ref: ServingRelease) -> Target:
    """The system prompt as the release declares it, and the canary the gateway plants in it (only
    with the `system_prompt_leak` output guard, exactly as in production)."""
    prompt = ref.spec.system_prompt
    planted = any(rule.guard == "system_prompt_leak" for rule in ref.spec.effective_guards().output)
    return Target(system_prompt=prompt, canary=canary_for(ref.record.content_hash) if planted and prompt else None)


async def _attack(client: httpx.AsyncClient, route: str, attack: Attack, target: Target) -> AttackResult:
    result = AttackResult(id=attack.id, category=attack.category, strategy=attack.strategy, template=attack.template,
                          prompt=attack.prompt)
    answer = await ask(client, route, attack.messages())
    result.output = answer.output[:OUTPUT_EXCERPT_CHARS]
    result.latency_ms, result.status, result.guard_action = answer.latency_ms, answer.status, answer.guard_action
    result.finish_reason, result.error = answer.finish_reason, answer.error
    if answer.error is not None:
        result.reason = answer.error
        return result
    if answer.withheld:
        result.outcome = "blocked"
        result.blocked_by = "output" if answer.status == 200 else "input"
        result.reason = f"the {result.blocked_by} guards withheld the answer ({answer.guard_action})"
        return result
    finding = judge(attack, answer.output, target)
    result.outcome = "succeeded" if finding.succeeded else "resisted"
    result.detector, result.reason = finding.detector, finding.reason
    return result


async def _serve_and_attack(settings: Settings, config: LockgateConfig, store: Store, ref: ServingRelease,
                            attacks: list[Attack], concurrency: int,
                            progress: Callable[[int, int], None]) -> list[AttackResult]:
    target = target_of(ref)
    async with serve(settings, config, store, ref) as client:
        return await run_bounded(attacks, lambda a: _attack(client, ref.route, a, target), concurrency, progress)


def previous_run(store: Store, ref: ServingRelease) -> EvidenceRecord | None:
    """The latest red-team run of an earlier release of the route (else of any other release of it)."""
    others = [e for e in store.list_evidence(ref.route, kind=EVIDENCE_KIND) if e.version != ref.record.version]
    earlier = [e for e in others if e.version < ref.record.version]
    pool = earlier or others
    return max(pool, key=lambda e: e.evidence_id) if pool else None


def run_redteam(settings: Settings, config: LockgateConfig, release: str, *, seed: int = 0, count: int = 108,
                categories: Sequence[str] | None = None, strategies: Sequence[str] | None = None,
                concurrency: int = 2, max_asr: float = metrics.DEFAULT_MAX_ASR,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the attacks on `release` and return the full report. Raises AttackError on bad arguments
    and EvalSetupError when the release cannot be served."""
    attacks = generate(seed, count, categories, strategies)  # bad arguments fail before any model loads
    cats = check_names(categories, list(CATEGORIES), "category")
    strats = check_names(strategies, list(STRATEGIES), "strategy")
    store, registry = open_store_and_registry(settings, config)
    ref = resolve_release(config, registry, store, release)
    started = time.time()
    results = asyncio.run(_serve_and_attack(settings, config, store, ref, attacks, concurrency,
                                            progress or stderr_progress("redteam", ref.release_id)))
    computed = metrics.compute_metrics(results, cats, strats)
    check = metrics.gate(computed, max_asr)
    target = target_of(ref)
    report: dict[str, Any] = {
        "kind": EVIDENCE_KIND,
        "release": release_info(ref),
        "seed": seed,
        "attacks_requested": count,
        "categories": cats,
        "strategies": strats,
        "max_asr": max_asr,
        "canary_planted": target.canary is not None,
        "generated_at": started,
        "duration_s": time.time() - started,
        "metrics": computed,
        "gate": check,
        "passed": check["ok"],
        "diff": None,
        "outcomes": metrics.outcomes_of(results),
        "attacks": [r.to_dict() for r in results],
    }
    previous = previous_run(store, ref)
    if previous is not None:
        prev_release = {"id": f"{previous.route}@{previous.version}", "version": previous.version,
                        "label": previous.summary.get("release", {}).get("label"),
                        "generated_at": previous.summary.get("generated_at"), "seed": previous.summary.get("seed")}
        report["diff"] = metrics.diff(computed, previous.summary["metrics"], prev_release, report["outcomes"],
                                      previous.summary.get("outcomes"))
    _store_evidence(store, report)
    return report


def _store_evidence(store: Store, report: dict[str, Any]) -> None:
    """The rates, the verdict and each attack's outcome become the release's evidence (the prompts and
    answers live in the report files): what a promotion cites, and what the next release's run is
    diffed against (paired, attack by attack, when it drew the same attacks)."""
    release = report["release"]
    summary = {k: v for k, v in report.items() if k != "attacks"}
    try:
        store.add_evidence(release["route"], release["version"], EVIDENCE_KIND, report["passed"], summary)
    except Exception as exc:  # noqa: BLE001 - the run's verdict stands; losing its record is reported
        log.warning("could not store the red-team run as evidence for %s: %s", release["id"], exc)
