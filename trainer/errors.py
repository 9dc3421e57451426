"""Typed errors of the trainer, so callers never match on message strings."""

from __future__ import annotations


class TrainerError(Exception):
    """Base class of every error the trainer raises on purpose."""


class AdapterNotFoundError(TrainerError, KeyError):
    """An adapter id that the engine does not hold."""


class AdapterExistsError(TrainerError):
    """`create_adapter` on an id the engine already holds."""


class AdapterMismatchError(TrainerError):
    """An adapter (settings, PEFT files or checkpoint) that does not fit the loaded base model."""


class InvalidBatchError(TrainerError, ValueError):
    """A batch whose fields are missing or inconsistent for the requested loss."""


class NonFiniteError(TrainerError):
    """A step refused because the loss or gradient is NaN or infinite; adapter state is intact."""


class ChatTemplateError(TrainerError, ValueError):
    """A chat template that does not render conversations prefix-consistently."""
