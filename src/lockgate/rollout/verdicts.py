"""The four verdicts a measurement can end in, and the only rules that combine them.

    Failed        any check, required or optional, failed with enough data: roll back.
    Error         a required check could not be measured (the store was unreachable, ...): pause.
    Inconclusive  a required check has too little data to judge: keep measuring, then pause.
                  Too little traffic never promotes.
    Successful    every required check succeeded; optional ones succeeded or had too little data.

Optional checks (ratings, sampled live checks, grounding by default) are the sparse ones: they can
fail a step, but their silence cannot hold a rollout back.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


def combine(results: Iterable[tuple[Verdict, bool]]) -> Verdict:
    """(verdict, required) per check -> the step's verdict, by the rules above."""
    results = list(results)
    if any(v is Verdict.FAILED for v, _ in results):
        return Verdict.FAILED
    if any(v is Verdict.ERROR and required for v, required in results):
        return Verdict.ERROR
    if any(v is Verdict.INCONCLUSIVE and required for v, required in results):
        return Verdict.INCONCLUSIVE
    return Verdict.SUCCESSFUL
