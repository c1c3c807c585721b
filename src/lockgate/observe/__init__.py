"""Seeing what the gateway does: traces, metrics."""
