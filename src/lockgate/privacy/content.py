"""What of a request's prompt and answer a trace keeps, per route (`trace_content` in lockgate.yaml):

- `full`: the prompt as the input guards left it (PII they redacted stays redacted) and the answer.
- `redacted`: the same with every PII value and credential replaced by a placeholder (`<EMAIL_1>`,
  `<OPENAI_KEY_1>`; the same value gets the same placeholder within one trace). The values are not
  kept anywhere.
- `hashed`: keyed hashes only (HMAC-SHA256 with the install secret): equal prompts have equal
  hashes in this install, so repeats can be counted, but a guess cannot be confirmed by hashing it.
- `none`: nothing of the content.

Credentials are never stored, whatever the mode: API keys, tokens, private keys and connection
strings found by the secrets detector become placeholders in `full` mode too, and in error messages.
(The request's own Lockgate key never reaches a trace at all: traces name the key by its id.)
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

import orjson

from lockgate.guards.base import Span
from lockgate.guards.pii import find_pii
from lockgate.guards.redaction import Placeholders
from lockgate.guards.secrets import find_secrets
from lockgate.privacy.secret import derive_key

ContentMode = Literal["full", "redacted", "hashed", "none"]


def _credentials(text: str) -> list[Span]:
    return find_secrets(text)


def _credentials_and_pii(text: str) -> list[Span]:
    return find_secrets(text) + find_pii(text)


class TraceContent:
    def __init__(self, install_secret: bytes) -> None:
        self._key = derive_key(install_secret, "trace-content")

    def fields(self, mode: ContentMode, prompt: list[dict[str, Any]], output: str | None) -> dict[str, Any]:
        if mode == "none":
            return {"content_mode": "none"}
        if mode == "hashed":
            return {"content_mode": "hashed", "prompt_hmac": self._mac(orjson.dumps(prompt)),
                    "output_hmac": self._mac((output or "").encode("utf-8"))}
        find = _credentials if mode == "full" else _credentials_and_pii
        placeholders = Placeholders()  # one per trace: a value repeated in prompt and answer reads the same

        def clean(text: str | None) -> str | None:
            return placeholders.redact(text, find(text)) if text else text

        messages = [{**m, "content": clean(m.get("content")) if isinstance(m.get("content"), str) else m.get("content")}
                    for m in prompt]
        return {"content_mode": mode, "prompt": messages, "output": clean(output)}

    def scrub(self, trace: dict[str, Any]) -> None:
        """Masks credentials in the free text a trace carries besides the content: error messages,
        which can quote what a client or a backend sent."""
        placeholders = Placeholders()
        if trace.get("error"):
            trace["error"] = placeholders.redact(trace["error"], _credentials(trace["error"]))
        for attempt in trace.get("attempts") or ():
            if attempt.get("error"):
                attempt["error"] = placeholders.redact(attempt["error"], _credentials(attempt["error"]))

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()
