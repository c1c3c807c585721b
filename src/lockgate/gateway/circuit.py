"""A circuit breaker per backend: stop calling a backend that keeps failing, probe it after a pause.

closed --(N consecutive failures)--> open --(cooldown elapsed)--> half_open
half_open --(probe succeeds)--> closed;  half_open --(probe fails)--> open
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge_value(self) -> int:
        return {"closed": 0, "half_open": 1, "open": 2}[self.value]


class CircuitBreaker:
    def __init__(
        self, *, failure_threshold: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_started = 0.0

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            return CircuitState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """True if a call may go through now. In half-open, only one probe at a time; a probe whose
        outcome never arrived (its request vanished) stops blocking after one cooldown."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        now = self._clock()
        probe_lost = self._probe_in_flight and now - self._probe_started >= self.cooldown_s
        if state is CircuitState.HALF_OPEN and (not self._probe_in_flight or probe_lost):
            self._state = CircuitState.HALF_OPEN
            self._probe_in_flight = True
            self._probe_started = now
            return True
        return False

    def record_success(self) -> None:
        self._state = CircuitState.CLOSED
        self._consecutive_failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._probe_in_flight = False
        if self._state is CircuitState.HALF_OPEN:
            self._open()
            return
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._consecutive_failures = 0
