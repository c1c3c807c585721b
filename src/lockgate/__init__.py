"""Lockgate: the safety layer between an AI application and production."""

__version__ = "0.1.0"
