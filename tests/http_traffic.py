"""Requests to real gateways from tests: one chat call, steady traffic from threads, waiting for a condition."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx


def chat(gw, key: str, *, user: str | None = None, headers: dict[str, str] | None = None,
         text: str = "hello") -> httpx.Response:
    body: dict = {"model": "echo", "messages": [{"role": "user", "content": text}]}
    if user:
        body["user"] = user
    return httpx.post(gw.base_url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key}", **(headers or {})})


class Traffic:
    """Requests from several threads until stopped: analysis windows need traffic while they measure."""

    def __init__(self, gw, key: str, threads: int = 4) -> None:
        self.gw, self.key = gw, key
        self.stop_event = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self.stop_event.is_set():
                n += 1
                r = client.post(self.gw.base_url + "/v1/chat/completions",
                                headers={"authorization": f"Bearer {self.key}"},
                                json={"model": "echo", "user": f"t{index}-{n}",
                                      "messages": [{"role": "user", "content": f"hello {n}"}]})
                self.statuses[r.status_code] += 1

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)


def wait_for(predicate, timeout_s: float = 20.0, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")
