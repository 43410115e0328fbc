"""Bound tree -> Polars expressions (one of the two backends; see ``to_sql`` for the other).

Null rules shared with the SQL backend: any division by zero is null; LOG of a value <= 0 is
null; SUM of no rows is 0 and of only nulls null; AVG, MIN and MAX of no values are null; LEAST and GREATEST skip
nulls; a null condition counts as false in IF and in filters.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from workbench.formulas.bound import Agg, Bound, Col, Lit, Op, Slot, can_be_null

DTYPES: dict[str, pl.DataType] = {"int": pl.Int64(), "float": pl.Float64(), "bool": pl.Boolean(),
                                  "string": pl.String(), "date": pl.Date(), "null": pl.Float64()}


def _div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return pl.when(b == 0).then(None).otherwise(a / b)


def _log(x: pl.Expr, base: float | None) -> pl.Expr:
    return pl.when(x > 0).then(x.log() if base is None else x.log(base)).otherwise(None)


_OPS: dict[str, Callable[..., pl.Expr]] = {
    "neg": lambda a: -a,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": _div,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "not": lambda a: ~a,
    "is_null": lambda a: a.is_null(),
    "is_not_null": lambda a: a.is_not_null(),
    "if": lambda c, a, b: pl.when(c).then(a).otherwise(b),
    "coalesce": lambda *args: pl.coalesce(*args),
    "divide": lambda a, b, alt: pl.when(b.fill_null(0) == 0).then(alt).otherwise(a / b),
    "abs": lambda a: a.abs(),
    "least": lambda *args: pl.min_horizontal(*args),
    "greatest": lambda *args: pl.max_horizontal(*args),
    "ln": lambda a: _log(a, None),
    "has_label": lambda labels, label: labels.list.contains(label).fill_null(False),
}


def _lit(node: Lit) -> pl.Expr:
    if node.value is None:
        return pl.lit(None)
    return pl.lit(node.value, dtype=DTYPES[node.vtype])


def _column(node: Col) -> pl.Expr:
    expr = pl.col(node.column)
    if node.truncate == "week":
        return expr.dt.truncate("1w")
    if node.truncate == "month":
        return expr.dt.month_start()
    return expr


def _aggregate(node: Agg) -> pl.Expr:
    if node.arg is None:
        return pl.len().cast(pl.Int64)
    arg = compile_expr(node.arg)
    if node.arg.level == "const":
        arg = pl.repeat(arg, pl.len())  # a literal counts once per row, as in SQL
    if node.func == "SUM":
        # SUM of only nulls is null (a metric nobody reported), as in SQL; of no rows, 0
        return pl.when(arg.count() > 0).then(arg.sum()) if can_be_null(node.arg) else arg.sum()
    if node.func == "AVG":
        return arg.mean()
    if node.func == "MIN":
        return arg.min()
    if node.func == "MAX":
        return arg.max()
    if node.func == "COUNT":
        return arg.count().cast(pl.Int64)
    return arg.drop_nulls().n_unique().cast(pl.Int64)  # COUNT_DISTINCT


def compile_expr(node: Bound) -> pl.Expr:
    """A Polars expression for ``node`` (row-level, aggregate, or over first-stage slots)."""
    if isinstance(node, Lit):
        return _lit(node)
    if isinstance(node, Col):
        return _column(node)
    if isinstance(node, Slot):
        return pl.col(node.name)
    if isinstance(node, Agg):
        return _aggregate(node)
    assert isinstance(node, Op)
    if node.op in ("in", "not_in"):
        values = [a.value for a in node.args[1:] if isinstance(a, Lit)]
        vtypes = {node.args[0].vtype, *(a.vtype for a in node.args[1:])}
        dtype = pl.Float64() if "float" in vtypes else DTYPES[node.args[0].vtype]
        member = compile_expr(node.args[0]).cast(dtype).is_in(pl.Series(values, dtype=dtype))  # clicks IN (0.5)
        return ~member if node.op == "not_in" else member
    if node.op == "round":
        digits = node.args[1]
        assert isinstance(digits, Lit) and isinstance(digits.value, int)
        return compile_expr(node.args[0]).cast(pl.Float64).round(digits.value)
    if node.op == "log":
        base = node.args[1]
        assert isinstance(base, Lit) and isinstance(base.value, (int, float))
        return _log(compile_expr(node.args[0]), float(base.value))
    return _OPS[node.op](*(compile_expr(a) for a in node.args))
