"""Time windows of rule conditions: ``cpa[last_7d]``, ``spend[today]``, ``ctr[previous_7d]``.

Relative to the evaluation date ``as_of`` (the organisation's "today"):

    today            as_of
    yesterday        as_of - 1
    last_N_d         the N full days before today (as_of - N .. as_of - 1), like the platforms' presets
    previous_N_d     the N days before last_N_d (as_of - 2N .. as_of - N - 1)
    month_to_date    the first of as_of's month .. as_of
    lifetime         every day up to as_of
    flight           the campaign's flight: start_date .. min(end_date, as_of) (campaign level)

A windowed reference becomes the same aggregates restricted to the window's rows
(``SUM(IF(<date in window>, spend, 0))``), so every window of a rule is computed in one scan.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from workbench.errors import FormulaError
from workbench.formulas import syntax as s
from workbench.formulas.binder import Binder
from workbench.formulas.bound import Agg, Bound, Col, Lit, Op, can_be_null
from workbench.formulas.catalog import DIMENSIONS
from workbench.formulas.units import Unit

_N = re.compile(r"^(last|previous)_(\d{1,4})_?d$")
NAMES = ("today", "yesterday", "last_N_d", "previous_N_d", "month_to_date", "lifetime", "flight")


@dataclass(frozen=True)
class Window:
    name: str
    start: dt.date | None  # None: no lower bound (lifetime) or per entity (flight)
    end: dt.date
    flight: bool = False


def resolve(name: str, as_of: dt.date) -> Window:
    """The dates of window ``name`` on ``as_of``; raises ValueError with the valid names."""
    key = name.lower()
    if key == "today":
        return Window(key, as_of, as_of)
    if key == "yesterday":
        day = as_of - dt.timedelta(days=1)
        return Window(key, day, day)
    if key == "month_to_date":
        return Window(key, as_of.replace(day=1), as_of)
    if key == "lifetime":
        return Window(key, None, as_of)
    if key == "flight":
        return Window(key, None, as_of, flight=True)
    match = _N.match(key)
    if match:
        n = int(match.group(2))
        if n < 1:
            raise ValueError("a window needs at least one day")
        if match.group(1) == "last":
            return Window(key, as_of - dt.timedelta(days=n), as_of - dt.timedelta(days=1))
        return Window(key, as_of - dt.timedelta(days=2 * n), as_of - dt.timedelta(days=n + 1))
    raise ValueError(f"unknown window '{name}'; windows: {', '.join(NAMES)} (e.g. last_7d, previous_28d)")


def _col(name: str) -> Col:
    d = DIMENSIONS[name]
    return Col(d.name, d.column, None, d.truncate, unit=d.unit, vtype=d.vtype, level="row")


def _date(value: dt.date) -> Lit:
    return Lit(value, unit=Unit.DATE, vtype="date", level="const")


def _cmp(op: str, a: Bound, b: Bound) -> Op:
    return Op(op, (a, b), unit=Unit.BOOLEAN, vtype="bool", level="row")


def predicate(window: Window, settled_only: bool = False) -> Bound:
    """The row condition 'this row's date lies in the window'."""
    date = _col("date")
    parts: list[Bound] = [_cmp("le", date, _date(window.end))]
    if window.start is not None:
        parts.append(_cmp("ge", date, _date(window.start)))
    if window.flight:
        parts += [_cmp("ge", date, _col("start_date")), _cmp("le", date, _col("end_date"))]
    if settled_only:
        parts.append(_cmp("eq", _col("settled"), Lit(True, unit=Unit.BOOLEAN, vtype="bool", level="const")))
    out = parts[0]
    for part in parts[1:]:
        out = Op("and", (out, part), unit=Unit.BOOLEAN, vtype="bool", level="row")
    return out


def restrict(node: Bound, pred: Bound) -> Bound:
    """``node`` with every aggregate reading only the rows where ``pred`` holds."""
    if isinstance(node, Agg):
        null = Lit(None, unit=Unit.NULL, vtype="null", level="const")
        if node.arg is None:  # COUNT(*) -> COUNT(IF(pred, 1, NULL))
            one = Lit(1, unit=Unit.NUMBER, vtype="int", level="const")
            arg: Bound = Op("if", (pred, one, null), unit=Unit.NUMBER, vtype="int", level="row")
            return Agg("COUNT", arg, unit=node.unit, vtype=node.vtype, level="agg")
        # a sum over no days of the window is 0 (no spend yesterday), unless the metric may be unreported
        other = Lit(0, unit=Unit.NUMBER, vtype="int", level="const") if (
            node.func == "SUM" and not can_be_null(node.arg)) else null
        arg = Op("if", (pred, node.arg, other), unit=node.arg.unit, vtype=node.arg.vtype, level="row")
        return Agg(node.func, arg, unit=node.unit, vtype=node.vtype, level="agg")
    if isinstance(node, Op):
        return Op(node.op, tuple(restrict(a, pred) for a in node.args), unit=node.unit, vtype=node.vtype,
                  level=node.level)
    return node


class WindowBinder:
    """The binder hook that resolves ``metric[window]`` for one evaluation date."""

    def __init__(self, as_of: dt.date, *, settled_only: bool = False, scope: Bound | None = None) -> None:
        self.as_of = as_of
        self.settled_only = settled_only
        self.scope = scope
        self.used: dict[str, Window] = {}

    def __call__(self, node: s.Name, binder: Binder) -> Bound:
        assert node.window is not None
        try:
            window = resolve(node.window, self.as_of)
        except ValueError as exc:
            raise FormulaError(str(exc), binder._scope.text, node.start, node.end) from None
        self.used[window.name] = window
        bound = binder._bind(s.Name(node.name, start=node.start, end=node.end), "agg")
        if bound.level != "agg":
            raise FormulaError(f"'{node.name}' is not a metric: only metrics take a time window",
                               binder._scope.text, node.start, node.end)
        pred = predicate(window, self.settled_only)
        if self.scope is not None:
            pred = Op("and", (self.scope, pred), unit=Unit.BOOLEAN, vtype="bool", level="row")
        return restrict(bound, pred)

    def scan_range(self) -> tuple[dt.date | None, dt.date]:
        """The dates one scan must read to compute every window used."""
        starts = [w.start for w in self.used.values()]
        if not starts or any(st is None for st in starts):
            return None, self.as_of
        return min(st for st in starts if st is not None), max(w.end for w in self.used.values())
