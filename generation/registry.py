"""One small registry helper for every pluggable axis: nodes, reward functions, combiners, scalers.

    NODES = Registry("pipeline node")

    @NODES.register("grpo-rl-pipeline")
    def run_grpo(...): ...

    NODES.get("grpo-rl-pipline")  # UnknownNameError: ... did you mean 'grpo-rl-pipeline'?
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from generation.errors import UserInputError

T = TypeVar("T")


class UnknownNameError(UserInputError, KeyError):
    """A name that no registry entry has. The message lists the valid names and the closest match."""

    def __str__(self) -> str:  # KeyError would otherwise print the message with quotes
        return str(self.args[0])


def did_you_mean(name: str, valid: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """A name -> object table filled by a decorator; `get` explains a miss."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that files the decorated object under `name`.

        Registering a *different* object under a taken name raises: two rewards silently shadowing each
        other is a bug. Re-registering the same object (a module imported twice) is fine.
        """

        def decorator(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and _qualname(existing) != _qualname(obj):
                raise ValueError(f"{self.kind} '{name}' is already registered by {_qualname(existing)}")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered under `name`; an UnknownNameError listing the valid names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            valid = sorted(self._entries)
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, valid)}; known: {', '.join(valid) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
