"""The bound tree: names resolved to gold columns, every node typed with a unit and a level.

Levels: ``const`` (a literal), ``row`` (one value per gold row: dimensions, base metrics inside
an aggregate), ``agg`` (one value per group: aggregates and what is computed from them). Nodes
are hashable and carry no positions, so two identical aggregates are computed once.
Both backends (``to_polars``, ``to_sql``) walk this tree and nothing else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from workbench.formulas.syntax import preorder
from workbench.formulas.units import Unit


@dataclass(frozen=True)
class Bound:
    unit: Unit = field(kw_only=True)
    vtype: str = field(kw_only=True)  # int float bool string date null
    level: str = field(kw_only=True)  # const row agg


@dataclass(frozen=True)
class Lit(Bound):
    value: int | float | str | bool | dt.date | None


@dataclass(frozen=True)
class Col(Bound):
    """A gold column at row level: a base metric's column or a dimension."""

    name: str  # the catalog name (spend, platform, week)
    column: str  # the gold column (spend_org, platform, date)
    family: str | None = None  # base metrics: which tables have the column
    truncate: str | None = None  # week / month dimensions
    nullable: bool = True  # base metrics the platforms always report are not


@dataclass(frozen=True)
class Agg(Bound):
    func: str  # SUM AVG MIN MAX COUNT COUNT_DISTINCT
    arg: Bound | None = None  # None: COUNT(*)


@dataclass(frozen=True)
class Op(Bound):
    op: str
    args: tuple[Bound, ...] = ()


@dataclass(frozen=True)
class Slot(Bound):
    """An aggregate already computed by the first stage of a query, read by name."""

    name: str
    zero_when_missing: bool = False  # sums and counts of a source with no rows for a group


def children(node: Bound) -> tuple[Bound, ...]:
    if isinstance(node, Op):
        return node.args
    if isinstance(node, Agg) and node.arg is not None:
        return (node.arg,)
    return ()


def walk(node: Bound) -> list[Bound]:
    """Every node of the bound tree, parents before children."""
    return preorder(node, children)


def columns(node: Bound) -> list[Col]:
    return [n for n in walk(node) if isinstance(n, Col)]


_NULL_IF_ANY = {"neg", "add", "sub", "mul", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "in",
                "not_in", "abs", "round"}


def can_be_null(node: Bound) -> bool:
    """Whether ``node`` may evaluate to null (decides how SUM treats "no values")."""
    if isinstance(node, Lit):
        return node.value is None
    if isinstance(node, Col):
        return node.nullable
    if isinstance(node, Slot):
        return True
    if isinstance(node, Agg):
        if node.func in ("COUNT", "COUNT_DISTINCT"):
            return False
        return node.func != "SUM" or node.arg is None or can_be_null(node.arg)
    assert isinstance(node, Op)
    if node.op in ("is_null", "is_not_null"):
        return False
    if node.op in _NULL_IF_ANY:
        return any([can_be_null(a) for a in node.args])
    if node.op == "if":
        return can_be_null(node.args[1]) or can_be_null(node.args[2])
    if node.op in ("coalesce", "least", "greatest"):
        return all([can_be_null(a) for a in node.args])
    return True  # div, divide, log, ln: null on a zero or non-positive input
