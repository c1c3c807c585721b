"""Ratings as clients send them, and the one score every summary and alert reads.

Clients rate with thumbs (`"up"`, `"down"`) or stars (an integer 1 to 5). Both are kept as sent
(`raw`, a short string that is also the Prometheus label value, so the label set stays bounded)
and normalised to a score in [0, 1]: up = 1, down = 0, n stars = (n - 1) / 4. A rating is
*negative* when its score is below 0.5: a thumbs-down, one star or two. Three stars is neutral.

Pure functions, no I/O: the HTTP handler, the store and tests share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THUMBS = {"up": 1.0, "down": 0.0}
MIN_STARS, MAX_STARS = 1, 5
NEGATIVE_BELOW = 0.5
RATING_HELP = '"up", "down", or an integer from 1 to 5 (a JSON number, not a string)'


class InvalidRating(ValueError):
    """The value is not a rating; the message says what is accepted."""


@dataclass(frozen=True)
class Rating:
    raw: str  # "up", "down", "1" .. "5"
    score: float

    @property
    def negative(self) -> bool:
        return self.score < NEGATIVE_BELOW


def parse_rating(value: Any) -> Rating:
    """`"up"`, `"down"` or an integer 1..5. Booleans, floats and numeric strings are refused, so a
    client bug (`"rating": true`, `"rating": "4"`) is reported rather than guessed at."""
    if isinstance(value, str):
        if value in THUMBS:
            return Rating(value, THUMBS[value])
        hint = " (lower case)" if value.lower() in THUMBS else ""
        if value.strip().isdigit():
            hint = f" (send {value.strip()} as a number, without quotes)"
        raise InvalidRating(f"got the string {_shown(value)}{hint}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRating(f"got {_shown(value)}")
    if not MIN_STARS <= value <= MAX_STARS:
        raise InvalidRating(f"got {value}, outside 1 to 5")
    return Rating(str(value), (value - MIN_STARS) / (MAX_STARS - MIN_STARS))


def rating_from_raw(raw: str) -> Rating:
    """The stored form back into a rating (journal lines and store rows keep `raw`)."""
    return parse_rating(raw if raw in THUMBS else int(raw))


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return f"a JSON {type(value).__name__.replace('dict', 'object').replace('list', 'array')}"
