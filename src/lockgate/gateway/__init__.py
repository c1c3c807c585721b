"""The data plane: the OpenAI-compatible request path."""
