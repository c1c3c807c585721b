"""What several gateway replicas share through Redis: rate limits (`ratelimit`), live counters that
rollouts and alerts read (`live`), and notices of route-state changes (`changes`). `connection` says
how to reach Redis and what a failure means. Without Redis configured, none of this runs and one
machine works alone (SQLite limits, polled route state, the trace store's windows)."""
