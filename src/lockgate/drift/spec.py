"""Window specifications: which requests make a window, as one short string (CLI and lockgate.yaml).

    suite:PATH                     the inputs of an evaluation suite (reference only)
    last:DURATION                  the route's traffic of the last 90s / 15m / 1h / 7d / 2w
    since:TIME[,until:TIME]        the route's traffic in a period (until defaults to now)

TIME is ISO 8601 (`2025-06-01`, `2025-06-01T09:30`, `2025-06-01T09:30:00+02:00`); a time without a zone
is UTC. Parsing only, no I/O and no heavy imports: the configuration validates specs with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
FORMS = "suite:PATH, last:DURATION (e.g. last:1h) or since:TIME[,until:TIME] (e.g. since:2025-06-01,until:2025-06-08)"


class WindowError(ValueError):
    """A window that cannot be read or loaded; the message says what to write instead."""


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise WindowError(f"cannot read the duration {text!r}: write a positive number and a unit, "
                          "s, m, h, d or w (e.g. 90s, 15m, 1h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WindowError(f"cannot read the time {text!r}: write ISO 8601, e.g. 2025-06-01 or "
                          "2025-06-01T09:30:00+02:00 (no zone means UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WindowSpec:
    text: str
    suite: Path | None = None
    last_s: float | None = None
    since: float | None = None
    until: float | None = None

    def period(self, now: float) -> tuple[float, float]:
        if self.last_s is not None:
            return now - self.last_s, now
        assert self.since is not None
        return self.since, self.until if self.until is not None else now

    def fixed(self, now: float) -> bool:
        """True when the window holds the same requests whenever it is read: a suite, or a period over."""
        return self.suite is not None or (self.until is not None and self.until <= now)

    def describe(self, now: float) -> str:
        if self.suite is not None:
            return f"suite {self.suite}"
        since, until = self.period(now)
        return f"{self.text} ({_iso(since)} .. {_iso(until)})"


def parse_window(text: str, *, allow_suite: bool = True, base_dir: Path | None = None) -> WindowSpec:
    """Read a window; `base_dir` is where a relative suite path starts (the config file's folder)."""
    kind, sep, rest = text.strip().partition(":")
    if not sep or not rest:
        raise WindowError(f"cannot read the window {text!r}; write {FORMS}")
    if kind == "suite":
        if not allow_suite:
            raise WindowError(f"{text!r}: the current window must be traffic, not a suite; "
                              "write last:DURATION or since:TIME[,until:TIME]")
        path = Path(rest).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return WindowSpec(text, suite=path)
    if kind == "last":
        return WindowSpec(text, last_s=parse_duration(rest))
    if kind == "since":
        start, comma, tail = rest.partition(",")
        until = None
        if comma:
            key, colon, value = tail.partition(":")
            if key.strip() != "until" or not colon:
                raise WindowError(f"cannot read {tail!r} in the window {text!r}: after the comma write "
                                  "until:TIME, e.g. since:2025-06-01,until:2025-06-08")
            until = parse_time(value)
        since = parse_time(start)
        if until is not None and until <= since:
            raise WindowError(f"the window {text!r} ends before it starts; `until` must be after `since`")
        return WindowSpec(text, since=since, until=until)
    raise WindowError(f"unknown window kind {kind!r} in {text!r}; write {FORMS}")
