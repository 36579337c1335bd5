"""Lethe: a stream-processing retention enforcer."""

__version__ = "0.1.0"
