"""Reading feedback per release: the time windows people type."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str, *, now: float) -> float:
    """`30m`, `6h`, `7d` -> the timestamp that long before `now`."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a duration; use a number and a unit: 90s, 30m, 6h, 7d")
    return now - float(match.group(1)) * _UNITS[match.group(2)]
