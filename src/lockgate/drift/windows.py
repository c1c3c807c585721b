"""Load a window's requests: a suite's inputs, or a route's traces from the store (see spec.py for
the forms). A window of traffic holds at most `max_traces` traces, the newest ones; dry runs are left
out (they are not traffic).
"""

from __future__ import annotations

import time

from lockgate.drift.analysis import PromptMemo, WindowSample
from lockgate.drift.features import from_case, from_trace
from lockgate.drift.spec import WindowError, WindowSpec
from lockgate.store import Store

MAX_TRACES = 20_000


def load_window(spec: WindowSpec, *, route: str, store: Store, now: float | None = None,
                max_traces: int = MAX_TRACES, memo: PromptMemo | None = None) -> WindowSample:
    now = time.time() if now is None else now
    if spec.suite is not None:
        from lockgate.evals.suite import SuiteError, load_suite

        try:
            suite = load_suite(spec.suite)
        except SuiteError as exc:
            raise WindowError(f"reference {spec.text!r}: {exc}") from exc
        if suite.route != route:
            raise WindowError(f"reference {spec.text!r}: the suite is for route {suite.route!r}, not {route!r}")
        observations = [from_case(case.messages or []) for case in suite.cases]
        return WindowSample(f"suite {suite.name} v{suite.version} ({spec.suite})", observations)
    since, until = spec.period(now)
    traces = store.traces_between(route, since, until, limit=max_traces, newest_first=True)
    observations = [from_trace(t) for t in traces if t.get("outcome") != "dry_run"]
    description = spec.describe(now)
    if len(traces) >= max_traces:
        description += f"; the newest {max_traces} traces"
    return WindowSample(description, observations, memo=memo)
