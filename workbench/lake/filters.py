"""Row filters for lake scans, overwrites and deletes (pyiceberg expressions, typed).

pyiceberg's expression classes take their arguments through pydantic, which type checkers
cannot follow; building them here keeps the rest of the code typed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from pyiceberg.expressions import (
    AlwaysTrue, And, BooleanExpression, EqualTo, GreaterThanOrEqual, In, LessThanOrEqual,
)


def _literal(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def eq(column: str, value: Any) -> BooleanExpression:
    return EqualTo(column, _literal(value))  # type: ignore[call-arg, arg-type]


def between(column: str, low: Any, high: Any) -> BooleanExpression:
    """``low <= column <= high`` (both ends included)."""
    return And(GreaterThanOrEqual(column, _literal(low)),  # type: ignore[call-arg, arg-type]
               LessThanOrEqual(column, _literal(high)))  # type: ignore[call-arg, arg-type]


def isin(column: str, values: Iterable[Any]) -> BooleanExpression:
    return In(column, [_literal(v) for v in values])  # type: ignore[call-arg, arg-type]


def all_of(*conditions: BooleanExpression) -> BooleanExpression:
    """Every condition (``AlwaysTrue`` when none)."""
    if not conditions:
        return AlwaysTrue()
    out = conditions[0]
    for c in conditions[1:]:
        out = And(out, c)
    return out
