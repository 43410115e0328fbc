"""Bound tree -> ClickHouse SQL (the other backend; null rules as in ``to_polars``).

Identifiers come only from the catalog; strings and dates are bound as ``{wb_pN:Type}``
parameters; numbers are written by Python from parsed values. Every division is guarded,
because ClickHouse returns inf or nan for x/0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from workbench.formulas.bound import Agg, Bound, Col, Lit, Op, Slot, can_be_null

SQL_TYPES = {"int": "Int64", "float": "Float64", "bool": "Bool", "string": "String", "date": "Date",
             "null": "Float64"}


class Params:
    """Collects the values bound as query parameters."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def bind(self, value: Any, sql_type: str) -> str:
        name = f"wb_p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{sql_type}}}"


def ident(name: str) -> str:
    """A catalog name as a ClickHouse identifier (names are checked snake_case already)."""
    assert name.replace("_", "").isalnum(), name
    return f"`{name}`"


def _div(a: str, b: str) -> str:
    return f"if({b} = 0, NULL, {a} / {b})"


_OPS: dict[str, Callable[..., str]] = {
    "neg": lambda a: f"(-({a}))",  # never "--": that starts a comment
    "add": lambda a, b: f"({a} + {b})",
    "sub": lambda a, b: f"({a} - {b})",
    "mul": lambda a, b: f"({a} * {b})",
    "div": _div,
    "eq": lambda a, b: f"({a} = {b})",
    "ne": lambda a, b: f"({a} != {b})",
    "lt": lambda a, b: f"({a} < {b})",
    "le": lambda a, b: f"({a} <= {b})",
    "gt": lambda a, b: f"({a} > {b})",
    "ge": lambda a, b: f"({a} >= {b})",
    "and": lambda a, b: f"({a} AND {b})",
    "or": lambda a, b: f"({a} OR {b})",
    "not": lambda a: f"(NOT {a})",
    "is_null": lambda a: f"({a} IS NULL)",
    "is_not_null": lambda a: f"({a} IS NOT NULL)",
    "if": lambda c, a, b: f"if({c}, {a}, {b})",
    "coalesce": lambda *args: f"coalesce({', '.join(args)})",
    "divide": lambda a, b, alt: f"if(coalesce({b}, 0) = 0, {alt}, {a} / {b})",
    "abs": lambda a: f"abs({a})",
    "least": lambda *args: f"least({', '.join(args)})",
    "greatest": lambda *args: f"greatest({', '.join(args)})",
    "ln": lambda a: f"if({a} > 0, log({a}), NULL)",
    "has_label": lambda labels, label: f"has({labels}, {label})",
}

_AGGS = {"SUM": "coalesce(sum({}), 0)", "AVG": "avgOrNull({})", "MIN": "minOrNull({})",
         "MAX": "maxOrNull({})", "COUNT": "toInt64(count({}))", "COUNT_DISTINCT": "toInt64(uniqExact({}))"}


def _lit(node: Lit, params: Params) -> str:
    value = node.value
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 2**31 else f"toInt64({value})"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.date):
        return params.bind(value, "Date")
    return params.bind(str(value), "String")


def column_sql(node: Col) -> str:
    if node.truncate == "week":
        return f"toMonday({ident(node.column)})"
    if node.truncate == "month":
        return f"toStartOfMonth({ident(node.column)})"
    return ident(node.column)


def _typed(node: Bound, sql: str, vtype: str) -> str:
    """``sql`` as the ClickHouse type of ``vtype``, for the branches of if/coalesce/least/greatest.

    ClickHouse has no common type for Int64 and Float64 (or UInt64 and Int64): ``if`` then
    returns a Variant (which Arrow and aggregates refuse) and ``least`` fails. Columns, slots
    and small literals already have a type that mixes; everything else is converted.
    """
    if vtype not in ("int", "float") or node.vtype == "null":
        return sql
    if isinstance(node, Lit) and (node.vtype == vtype or (isinstance(node.value, int) and abs(node.value) < 2**31)):
        return sql
    if node.vtype == vtype and (vtype == "float" or isinstance(node, (Col, Slot))):
        return sql  # float expressions are Float64; integer ones may be UInt64 (abs, sums of literals)
    return f"{'toFloat64' if vtype == 'float' else 'toInt64'}({sql})"


def compile_expr(node: Bound, params: Params) -> str:
    """ClickHouse SQL for ``node``; literal strings and dates are added to ``params``."""
    if isinstance(node, Lit):
        return _lit(node, params)
    if isinstance(node, Col):
        return column_sql(node)
    if isinstance(node, Slot):
        return ident(node.name)
    if isinstance(node, Agg):
        if node.arg is None:
            return "toInt64(count())"
        if node.func == "SUM" and can_be_null(node.arg):
            sql = f"sum({compile_expr(node.arg, params)})"  # null when every value is null
        elif node.func == "COUNT_DISTINCT" and node.arg.vtype == "float":
            sql = f"toInt64(uniqExact(({compile_expr(node.arg, params)}) + 0))"  # -0.0 + 0 is 0.0: one value
        else:
            sql = _AGGS[node.func].format(compile_expr(node.arg, params))
        if node.vtype == "int" and node.func in ("SUM", "MIN", "MAX") and not isinstance(node.arg, Col):
            sql = f"toInt64({sql})"  # sum(if(c, 1, 0)) is UInt64, abs() too: slots are Int64 or Float64
        return sql
    assert isinstance(node, Op)
    args = [compile_expr(a, params) for a in node.args]
    if node.op == "if":
        args[1:] = [_typed(a, sql, node.vtype) for a, sql in zip(node.args[1:], args[1:], strict=True)]
    elif node.op in ("coalesce", "least", "greatest"):
        args = [_typed(a, sql, node.vtype) for a, sql in zip(node.args, args, strict=True)]
    elif node.op == "divide":
        args[2] = _typed(node.args[2], args[2], "float")
    if node.op in ("in", "not_in"):
        keyword = "NOT IN" if node.op == "not_in" else "IN"
        return f"({args[0]} {keyword} ({', '.join(args[1:])}))"
    if node.op == "round":
        return f"round(toFloat64({args[0]}), {args[1]})"
    if node.op == "log":
        base = node.args[1]
        assert isinstance(base, Lit)
        log = f"log10({args[0]})" if base.value == 10 else f"log({args[0]}) / log({args[1]})"
        return f"if({args[0]} > 0, {log}, NULL)"
    return _OPS[node.op](*args)
