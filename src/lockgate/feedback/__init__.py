"""User feedback: `POST /v1/feedback` links a user's rating to the trace of the request it rates.

The path of one rating, and why it is correct with several worker processes (and, later, several
replicas sharing a database):

1. Accept (`lockgate.gateway.feedback`, any worker): validate (`submission`), write one journal
   line (`"kind": "feedback"`) to the worker's trace journal, answer `202` with the rating's id.
   No database on the request path; once acknowledged, the rating survives a database outage and a
   SIGKILL exactly as a trace does. The worker does *not* know the rated request's route or release:
   another worker, or a process since restarted, may have served it, and a client-supplied request id
   cannot be trusted to carry them.
2. Load (`lockgate.observe.journal`, the one loader per gateway: the lone worker, or the supervisor of
   several): ratings are inserted into the `feedback` table as `pending`, idempotently.
3. Link (`linking`, same loader, after every pass that loaded anything): every pending rating whose
   trace is now in the store takes the trace's route and release, and becomes `linked`, or
   `key_mismatch` when it was sent with another API key than the request's (a key rates only its own
   requests; such ratings are kept for inspection but never counted). Ratings and traces reach the
   store in either order; whichever load comes last makes the link, and the store links each rating
   exactly once, so the loader that links it counts it in Prometheus:
   `lockgate_feedback_total{route,release,rating}` and `lockgate_feedback_score` (_sum/_count).
   With several workers that loader is the supervisor, whose metrics join the workers' through the
   multiprocess directory. Counters are per process lifetime, as all Prometheus counters are.
4. Read: `Store.feedback_summary(route, since)` gives per release the count, the mean score and the
   negative count/rate (thumbs down, 1 or 2 stars), counting one rating per request and rater (the
   latest: a changed mind or a retried POST is not counted twice). Rollout analysis and alerts read it.

A rating for a request id that never reaches the store (mistyped, or from another gateway) stays
`pending`: `Store.list_feedback(status="pending")` lists them; it is never counted.

Ratings: thumbs or 1 to 5 stars, kept as sent and normalised to a score in [0, 1] (`rating`).
"""
