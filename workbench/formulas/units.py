"""Units and value types of formula values, and how operators combine them.

Units say what a number means (money, count, ratio...) and drive display formatting; value
types (int, float, bool, string, date) fix the column type both backends return. ``number``
is a bare literal: it takes the unit of whatever it meets (``1.3 * cpa`` is money).
"""

from __future__ import annotations

from enum import StrEnum


class Unit(StrEnum):
    MONEY = "money"
    COUNT = "count"
    RATIO = "ratio"
    PERCENT = "percent"
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"
    DATE = "date"
    NULL = "null"


NUMERIC = frozenset({Unit.MONEY, Unit.COUNT, Unit.RATIO, Unit.PERCENT, Unit.NUMBER})
DIMENSIONLESS = frozenset({Unit.RATIO, Unit.PERCENT, Unit.NUMBER})
DECLARABLE = frozenset({Unit.MONEY, Unit.COUNT, Unit.RATIO, Unit.PERCENT, Unit.BOOLEAN, Unit.STRING, Unit.DATE})

# Value types: "int", "float", "bool", "string", "date", "null".
FORMATS = ("currency", "integer", "number", "percent", "multiple", "boolean", "date", "text")


def article(unit: Unit) -> str:
    """'money', 'a count', 'a string'... for messages."""
    return {Unit.MONEY: "money", Unit.COUNT: "a count", Unit.RATIO: "a ratio", Unit.PERCENT: "a percentage",
            Unit.NUMBER: "a number", Unit.BOOLEAN: "a true/false value", Unit.STRING: "a string",
            Unit.DATE: "a date", Unit.NULL: "null"}[unit]


def compatible(a: Unit, b: Unit) -> bool:
    """Can values of these units be added, compared or be the two branches of an IF?"""
    if a is Unit.NULL or b is Unit.NULL or a is b:
        return True
    if a in NUMERIC and b in NUMERIC:
        return a is Unit.NUMBER or b is Unit.NUMBER or (a in DIMENSIONLESS and b in DIMENSIONLESS)
    return False


def unify(a: Unit, b: Unit) -> Unit:
    """The unit of a value that may be either (the caller checked ``compatible``)."""
    if a in (Unit.NULL, Unit.NUMBER):
        return b if b is not Unit.NULL else a
    return a


def multiply(a: Unit, b: Unit) -> Unit | None:
    """Unit of ``a * b``, or None when the product has no meaning (money * money)."""
    if a in DIMENSIONLESS and b in DIMENSIONLESS:
        return Unit.RATIO if Unit.NUMBER not in (a, b) else (b if a is Unit.NUMBER else a)
    if a in DIMENSIONLESS:
        return b
    if b in DIMENSIONLESS:
        return a
    if {a, b} == {Unit.MONEY, Unit.COUNT}:
        return Unit.MONEY  # cost per click * clicks
    if a is b is Unit.COUNT:
        return Unit.COUNT
    return None


def divide(a: Unit, b: Unit) -> Unit:
    """Unit of ``a / b``: money / count is money (a cost per), like / like is a ratio."""
    if b is Unit.NUMBER:
        return a
    if a is Unit.MONEY and b in (Unit.COUNT, Unit.RATIO, Unit.PERCENT):
        return Unit.MONEY
    if a is Unit.COUNT and b in (Unit.RATIO, Unit.PERCENT):
        return Unit.COUNT
    return Unit.RATIO


def default_format(unit: Unit, vtype: str) -> str:
    """How a value of this unit is shown when the definition does not say."""
    return {Unit.MONEY: "currency", Unit.COUNT: "integer" if vtype == "int" else "number",
            Unit.PERCENT: "percent", Unit.BOOLEAN: "boolean", Unit.DATE: "date",
            Unit.STRING: "text"}.get(unit, "number")


def arith_type(a: str, b: str, op: str) -> str:
    """Value type of an arithmetic result: ints stay ints except through division."""
    if op == "/":
        return "float"
    if a in ("int", "null") and b in ("int", "null") and not (a == b == "null"):
        return "int"
    return "float"
