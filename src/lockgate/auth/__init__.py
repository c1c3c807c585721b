"""API keys: created once, stored hashed, checked in memory on every request."""
