"""Traffic written straight into a real store, for testing analysis and the state machine."""

from __future__ import annotations

import itertools
from typing import Any

from lockgate.store import SqlStore

_ids = itertools.count()


def add_traffic(store: SqlStore, route: str, version: int, n: int, **shape: Any) -> None:
    """n traces of route@version (see `traffic`) written into the store."""
    store.insert_traces(traffic(route, version, n, **shape))


def traffic(route: str, version: int, n: int, *, ts: float, failed: int = 0, violations: int = 0,
            latency_ms: float = 100.0, shadow: bool = False, output: str = "fine answer", spread_s: float = 1.0,
            prompt_tokens: int = 0, completion_tokens: int = 0) -> list[dict[str, Any]]:
    """n traces of route@version at ts .. ts + spread_s; the first `failed` are 502s, the next
    `violations` had an output guard redact, the rest are plain 200s."""
    traces: list[dict[str, Any]] = []
    for i in range(n):
        trace_id = f"t{next(_ids)}"
        status, outcome, guards = 200, "ok", {"input": [], "output": []}
        if i < failed:
            status, outcome = 502, "upstream_error"
        elif i < failed + violations:
            guards["output"] = [{"guard": "pii", "action": "redact", "score": 1.0}]
        traces.append({
            "trace_id": trace_id, "ts": ts + spread_s * i / max(1, n), "route": route,
            "release": f"{route}@{version}", "status": status, "outcome": outcome, "latency_ms": latency_ms,
            "guards": guards, "output": output if status == 200 else None,
            "shadow_of": f"p{trace_id}" if shadow else None,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        })
    return traces
