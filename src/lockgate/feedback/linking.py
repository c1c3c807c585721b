"""Linking stored feedback to stored traces, and counting it per release as it is linked.

Runs in whichever process loads the journal (the lone worker, or the supervisor of several), after
each load pass: a rating is linked once both it and its trace are in the store, whichever arrived
first. The store links each rating exactly once, so counting at that moment counts each once.
"""

from __future__ import annotations

from lockgate.observe import metrics
from lockgate.store import FeedbackRecord, Store


def link_pending(store: Store) -> list[FeedbackRecord]:
    """Links what can be linked now and counts it; raises StoreUnavailable when the store is down."""
    linked = store.link_feedback()
    for record in linked:
        count(record)
    return linked


def count(record: FeedbackRecord) -> None:
    # A trace without a release was refused before routing (bad key, unknown route...): its route
    # name came from the client, and clients must not mint label values.
    labels = {"route": record.route or "unknown", "release": record.release or "none"}
    if record.release is None:
        labels["route"] = "unknown"
    if record.status != "linked":
        metrics.FEEDBACK_KEY_MISMATCH.labels(**labels).inc()
        return
    metrics.FEEDBACK.labels(rating=record.rating, **labels).inc()
    metrics.FEEDBACK_SCORE.labels(**labels).observe(record.score)
