"""Drift detection: a current window of a route's requests against a reference window, feature by feature.

spec.py reads window specifications, windows.py loads them, features.py reads requests, stats.py
holds the tests and the verdict rule, analysis.py compares two windows, report.py renders the result,
monitor.py runs periodic checks in `lockgate serve` and publish.py puts their scores on /metrics.
"""
