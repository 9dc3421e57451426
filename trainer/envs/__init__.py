"""RL environments: verifiable tool-use tasks, the registry, and the episode runner."""

from __future__ import annotations

from collections.abc import Callable

from trainer.envs.base import AssistantTurn, Environment, Episode, FinishReason, Task
from trainer.envs.calculator import CalculatorEnvironment

#: Environment name -> factory. Add a tenant's own environment here (docs/ENVIRONMENTS.md).
ENVIRONMENTS: dict[str, Callable[[], Environment]] = {
    "calculator": CalculatorEnvironment,
}


class UnknownEnvironmentError(KeyError):
    """Raised when no environment is registered under the requested name."""


def get_environment(name: str) -> Environment:
    """A fresh instance of the environment registered as ``name``."""
    try:
        factory = ENVIRONMENTS[name]
    except KeyError:
        raise UnknownEnvironmentError(
            f"unknown environment {name!r}; known: {sorted(ENVIRONMENTS)}"
        ) from None
    return factory()


__all__ = [
    "ENVIRONMENTS",
    "AssistantTurn",
    "CalculatorEnvironment",
    "Environment",
    "Episode",
    "FinishReason",
    "Task",
    "UnknownEnvironmentError",
    "get_environment",
]
