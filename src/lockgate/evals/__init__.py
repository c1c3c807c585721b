"""Evaluation gate: versioned test suites and the assertions that judge a release."""
