"""Checks of a method's options at construction, one message format for all of them:
``method <name>: option <key>=<value>; expected ... (method_options.<name>.<key>)``, which names the
culprit and the setting that fixes it. Booleans are never numbers here (YAML's ``true`` is not 1)."""
from __future__ import annotations


def refuse(method: str, option: str, value, expected: str) -> ValueError:
    """The error to raise for an option value outside what ``expected`` says."""
    return ValueError(f"method {method}: option {option}={value!r}; expected {expected} "
                      f"(method_options.{method}.{option})")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_choice(method: str, option: str, value, choices: tuple) -> None:
    """A value among ``choices``."""
    if value not in choices:
        raise refuse(method, option, value, f"one of {', '.join(map(str, choices))}")


def check_layers(method: str, option: str, value) -> tuple[int, ...]:
    """Layer sizes as a tuple of positive ints (YAML gives a list)."""
    if not isinstance(value, (list, tuple)) or not value or not all(_integer(v) and v > 0 for v in value):
        raise refuse(method, option, value, "a non-empty list of positive integers")
    return tuple(value)


def check_positive(method: str, option: str, value, zero_ok: bool = False) -> float:
    """A number > 0 (or >= 0)."""
    if not (_number(value) and (value >= 0 if zero_ok else value > 0)):
        raise refuse(method, option, value, f"a number {'>=' if zero_ok else '>'} 0")
    return float(value)


def check_count(method: str, option: str, value, minimum: int = 1) -> int:
    """An integer >= ``minimum``."""
    if not (_integer(value) and value >= minimum):
        raise refuse(method, option, value, "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
    return value


def check_fraction(method: str, option: str, value) -> float:
    """A rate in [0, 1), e.g. a dropout probability."""
    if not (_number(value) and 0 <= value < 1):
        raise refuse(method, option, value, "a number in [0, 1)")
    return float(value)
