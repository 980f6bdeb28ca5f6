"""Decomposition engines. ``classical`` needs no weights; ``learned`` loads a checkpoint."""

from .classical import ClassicalSettings, peel_objects

__all__ = ["ClassicalSettings", "peel_objects"]
