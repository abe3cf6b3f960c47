"""A small decorator registry (after timm's ``create_model``), one per kind of component.

Registries hold factories for datasets, encoders, fusions and methods, so that adding a
component is one new registered file and registry-driven tests pick it up.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown component name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class Registry:
    """Maps names to factories; ``create`` builds by name with a helpful error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (a duplicate name is an error)."""

        def wrap(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj  # type: ignore[assignment]
            return obj

        return wrap

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered as ``name``; unknown names list the valid ones."""
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def create(self, name: str, *args: Any, **cfg: Any) -> Any:
        """Build the component registered as ``name``."""
        return self.get(name)(*args, **cfg)

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
