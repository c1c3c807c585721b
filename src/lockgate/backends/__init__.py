"""Where models run: OpenAI-compatible HTTP endpoints and in-process llama.cpp."""

from lockgate.backends.base import Backend, BackendCall, BackendFailure, Completion, StreamDelta

__all__ = ["Backend", "BackendCall", "BackendFailure", "Completion", "StreamDelta"]
