"""Syntax tree + catalog -> bound tree: resolve names, infer and check units and levels.

Rules (see ``docs/formulas.md``): a base metric at the top of a metric formula is summed over
the rows of each group (ratio of sums); inside an aggregate (``SUM(IF(platform = 'meta',
spend, 0))``) names are row values. Dimensions are row values only, so they must sit inside
an aggregate or in a filter. Derived metrics are bound once and reused; a cycle is reported
with every metric on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

from workbench.errors import FormulaError
from workbench.formulas import syntax as s
from workbench.formulas.bound import Agg, Bound, Col, Lit, Op
from workbench.formulas.catalog import AGGREGATES, FUNCTIONS, Catalog
from workbench.formulas.parser import parse
from workbench.formulas.units import NUMERIC, Unit, arith_type, article, compatible, divide, multiply, unify

WindowResolver = Callable[[s.Name, "Binder"], Bound]
_ARITY = {"IF": (2, 3), "COALESCE": (1, 99), "DIVIDE": (2, 3), "ROUND": (1, 2), "ABS": (1, 1),
          "LEAST": (2, 99), "GREATEST": (2, 99), "LOG": (1, 2), "LN": (1, 1), "HAS_LABEL": (1, 1), "SUM": (1, 1),
          "AVG": (1, 1), "MIN": (1, 1), "MAX": (1, 1), "COUNT": (0, 1), "COUNT_DISTINCT": (1, 1)}
_USAGE = {"IF": "IF(condition, value if true[, value if false])", "COALESCE": "COALESCE(a, b, ...)",
          "DIVIDE": "DIVIDE(numerator, denominator[, value when the denominator is 0])",
          "ROUND": "ROUND(x[, digits])", "ABS": "ABS(x)", "LEAST": "LEAST(a, b, ...)",
          "GREATEST": "GREATEST(a, b, ...)", "LOG": "LOG(x[, base]) (base 10 by default)", "LN": "LN(x)",
          "HAS_LABEL": "HAS_LABEL('brand')",
          "SUM": "SUM(x)", "AVG": "AVG(x)", "MIN": "MIN(x)", "MAX": "MAX(x)", "COUNT": "COUNT(*) or COUNT(x)",
          "COUNT_DISTINCT": "COUNT_DISTINCT(x)"}


@dataclass
class _Scope:
    text: str
    metric: str | None  # the metric whose formula this is, when it is not the one typed


def _vtype_union(a: str, b: str) -> str:
    if a == "null":
        return b
    if b == "null" or a == b:
        return a
    if {a, b} <= {"int", "float"}:
        return "float"
    return a


class Binder:
    """Binds formulas against one catalog; derived metrics are bound once and cached."""

    def __init__(self, catalog: Catalog, *, windows: WindowResolver | None = None) -> None:
        self.catalog = catalog
        self.windows = windows
        self._metrics: dict[str, Bound] = {}
        self._stack: list[str] = []
        self._scope = _Scope("", None)

    # -- entry points ----------------------------------------------------------------------

    def metric(self, name: str) -> Bound:
        """The bound tree of derived metric ``name`` (aggregate level)."""
        key = name.lower()
        if key in self._metrics:
            return self._metrics[key]
        if key in self._stack:
            cycle = [*self._stack[self._stack.index(key):], key]
            raise FormulaError("metrics depend on each other in a cycle: " + " → ".join(cycle)
                               + "; change one of them so the chain ends in base metrics")
        definition = self.catalog.metrics[key]
        self._stack.append(key)
        outer = self._scope
        self._scope = _Scope(definition.formula, key)
        try:
            bound = self._top(parse_in(definition.formula, key))
            if definition.unit is not None:
                bound = self._declare(bound, definition.unit, definition.formula)
        finally:
            self._scope = outer
            self._stack.pop()
        self._metrics[key] = bound
        return bound

    def formula(self, text: str) -> Bound:
        """Bind an ad-hoc metric formula (aggregate level)."""
        self._scope = _Scope(text, None)
        return self._top(parse(text))

    def condition(self, text: str) -> Bound:
        """Bind a row filter (``where``): a true/false condition over dimensions and base metrics."""
        self._scope = _Scope(text, None)
        node = parse(text)
        bound = self._bind(node, "row")
        if bound.unit not in (Unit.BOOLEAN, Unit.NULL):
            raise self._error(f"a filter must be true or false for each row; this is {article(bound.unit)}", node)
        return bound

    # -- helpers -------------------------------------------------------------------------

    def _error(self, message: str, node: s.Node | None = None, suggestions: tuple[str, ...] = ()) -> FormulaError:
        if node is None:
            return FormulaError(message, self._scope.text, metric=self._scope.metric, suggestions=suggestions)
        return FormulaError(message, self._scope.text, node.start, node.end, metric=self._scope.metric,
                            suggestions=suggestions)

    def _snippet(self, node: s.Node) -> str:
        text = " ".join(self._scope.text[node.start:node.end].split())
        return text if len(text) <= 40 else text[:37] + "..."

    def _describe(self, node: s.Node, bound: Bound) -> str:
        return f"{article(bound.unit)} ({self._snippet(node)})"

    def _top(self, node: s.Node) -> Bound:
        bound = self._bind(node, "agg")
        if bound.level == "row":
            cols = [n for n in s.walk(node) if isinstance(n, s.Name) and n.name.lower() in self.catalog.dimensions]
            culprit = cols[0] if cols else node
            raise self._error(
                f"a metric has one value per group, but '{self._snippet(culprit)}' has one value per row: "
                "group by it (by=[...]) or aggregate it, e.g. COUNT_DISTINCT(campaign_id)", culprit)
        return bound

    def _declare(self, bound: Bound, unit: Unit, text: str) -> Bound:
        ok = bound.unit is unit or (bound.unit in (Unit.NUMBER, Unit.NULL) and unit in NUMERIC) or (
            compatible(bound.unit, unit) and bound.unit in NUMERIC and unit in NUMERIC)
        if not ok:
            raise FormulaError(f"the formula gives {article(bound.unit)}, but the definition declares "
                               f"its unit as {unit.value}; remove the unit or fix the formula",
                               text, metric=self._scope.metric)
        return replace(bound, unit=unit)

    def _level(self, parts: list[tuple[s.Node, Bound]], at: s.Node) -> str:
        rows = [(n, b) for n, b in parts if b.level == "row"]
        aggs = [(n, b) for n, b in parts if b.level == "agg"]
        if rows and aggs:
            raise self._error(
                f"`{self._snippet(rows[0][0])}` has a value per row but `{self._snippet(aggs[0][0])}` is "
                "aggregated over the group; put the row-level part inside an aggregate, e.g. "
                "SUM(IF(platform = 'meta', spend, 0))", rows[0][0])
        return "agg" if aggs else "row" if rows else "const"

    # -- binding -------------------------------------------------------------------------

    def _bind(self, node: s.Node, ctx: str) -> Bound:
        if isinstance(node, s.Number):
            unit = Unit.PERCENT if node.percent else Unit.NUMBER
            return Lit(node.value, unit=unit, vtype="int" if isinstance(node.value, int) else "float", level="const")
        if isinstance(node, s.String):
            return Lit(node.value, unit=Unit.STRING, vtype="string", level="const")
        if isinstance(node, s.Boolean):
            return Lit(node.value, unit=Unit.BOOLEAN, vtype="bool", level="const")
        if isinstance(node, s.Null):
            return Lit(None, unit=Unit.NULL, vtype="null", level="const")
        if isinstance(node, s.Name):
            return self._name(node, ctx)
        if isinstance(node, s.Unary):
            return self._unary(node, ctx)
        if isinstance(node, s.Binary):
            return self._binary(node, ctx)
        if isinstance(node, s.In):
            return self._in(node, ctx)
        if isinstance(node, s.IsNull):
            operand = self._bind(node.operand, ctx)
            return Op("is_not_null" if node.negated else "is_null", (operand,), unit=Unit.BOOLEAN,
                      vtype="bool", level=operand.level)
        if isinstance(node, s.Call):
            return self._call(node, ctx)
        raise self._error("this part of the formula is not supported", node)

    def _name(self, node: s.Name, ctx: str) -> Bound:
        if node.window is not None:
            if self.windows is None:
                raise self._error(f"time windows like {node.name}[{node.window}] belong in rule conditions, "
                                  "not in metric definitions or queries", node)
            return self.windows(node, self)
        key = node.name.lower()
        cat = self.catalog
        if key in cat.dimensions:
            d = cat.dimensions[key]
            if d.vtype == "list":
                raise self._error(f"{d.name} is a list of values: test one with HAS_LABEL('brand')", node)
            return Col(d.name, d.column, None, d.truncate, unit=d.unit, vtype=d.vtype, level="row")
        if key in cat.base:
            m = cat.base[key]
            col = Col(m.name, m.column, m.family, nullable=m.nullable, unit=m.unit, vtype=m.vtype, level="row")
            if ctx == "row":
                return col
            if not m.additive:
                raise self._error(f"{m.name} is not additive (the same person counts once per row it "
                                  f"appears in); use MAX({m.name}) at the grain the platform reported", node)
            return Agg("SUM", col, unit=m.unit, vtype=m.vtype, level="agg")
        if key in cat.metrics:
            if ctx == "row":
                raise self._error(f"{key} is a derived metric, computed from aggregated values; inside an "
                                  "aggregate or a filter use base metrics and dimensions", node)
            return self.metric(key)
        if key.upper() in FUNCTIONS:
            raise self._error(f"{key.upper()} is a function: call it with brackets, e.g. {_USAGE[key.upper()]}", node)
        kind = "dimension or base metric" if ctx == "row" else "metric"
        hits = cat.suggest(key)
        hint = f" — did you mean {' or '.join(repr(h) for h in hits)}?" if hits else \
            " (workbench metric list shows every name)"
        raise self._error(f"unknown {kind} '{node.name}'{hint}", node, hits)

    def _unary(self, node: s.Unary, ctx: str) -> Bound:
        operand = self._bind(node.operand, ctx)
        if node.op == "not":
            self._want_bool(node.operand, operand, "NOT")
            return Op("not", (operand,), unit=Unit.BOOLEAN, vtype="bool", level=operand.level)
        if operand.unit not in NUMERIC | {Unit.NULL}:
            raise self._error(f"cannot negate {self._describe(node.operand, operand)}", node)
        return Op("neg", (operand,), unit=operand.unit, vtype=operand.vtype, level=operand.level)

    def _want_bool(self, node: s.Node, bound: Bound, what: str) -> None:
        if bound.unit not in (Unit.BOOLEAN, Unit.NULL):
            raise self._error(f"{what} needs a true/false value; {self._describe(node, bound)} is not one", node)

    def _binary(self, node: s.Binary, ctx: str) -> Bound:
        left, right = self._bind(node.left, ctx), self._bind(node.right, ctx)
        level = self._level([(node.left, left), (node.right, right)], node)
        op = node.op
        if op in ("and", "or"):
            self._want_bool(node.left, left, op.upper())
            self._want_bool(node.right, right, op.upper())
            return Op(op, (left, right), unit=Unit.BOOLEAN, vtype="bool", level=level)
        if op in ("=", "!=", "<", "<=", ">", ">="):
            left, right = self._comparable(node.left, left, node.right, right, ordered=op not in ("=", "!="))
            name = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}[op]
            return Op(name, (left, right), unit=Unit.BOOLEAN, vtype="bool", level=level)
        for side, bound in ((node.left, left), (node.right, right)):
            if bound.unit not in NUMERIC | {Unit.NULL}:
                raise self._error(f"cannot use {self._describe(side, bound)} in arithmetic ('{op}')", side)
        vtype = arith_type(left.vtype, right.vtype, op)
        if op in ("+", "-"):
            if not compatible(left.unit, right.unit):
                verb = "add" if op == "+" else "subtract"
                raise self._error(f"cannot {verb} {self._describe(node.left, left)} and "
                                  f"{self._describe(node.right, right)}: they have different units", node)
            return Op("add" if op == "+" else "sub", (left, right), unit=unify(left.unit, right.unit),
                      vtype=vtype, level=level)
        if op == "*":
            unit = multiply(left.unit, right.unit) if Unit.NULL not in (left.unit, right.unit) else Unit.NULL
            if unit is None:
                raise self._error(f"multiplying {self._describe(node.left, left)} by "
                                  f"{self._describe(node.right, right)} has no meaning", node)
            return Op("mul", (left, right), unit=unit, vtype=vtype, level=level)
        return Op("div", (left, right), unit=divide(left.unit, right.unit), vtype="float", level=level)

    def _comparable(self, ln: s.Node, left: Bound, rn: s.Node, right: Bound, *, ordered: bool) -> tuple[Bound, Bound]:
        left, right = self._coerce_date(ln, left, right), self._coerce_date(rn, right, left)
        if not compatible(left.unit, right.unit):
            raise self._error(f"cannot compare {self._describe(ln, left)} with {self._describe(rn, right)}",
                              rn if left.level != "const" else ln)
        if ordered and Unit.BOOLEAN in (left.unit, right.unit):
            raise self._error("true/false values have no order; compare them with = or !=", ln)
        return left, right

    def _coerce_date(self, node: s.Node, bound: Bound, other: Bound) -> Bound:
        """A string literal compared with a date becomes a date ('2026-01-31')."""
        if other.unit is Unit.DATE and isinstance(bound, Lit) and bound.unit is Unit.STRING:
            try:
                value = dt.date.fromisoformat(str(bound.value))
            except ValueError:
                raise self._error(f"'{bound.value}' is not a date; write dates as 'YYYY-MM-DD'", node) from None
            return Lit(value, unit=Unit.DATE, vtype="date", level="const")
        return bound

    def _in(self, node: s.In, ctx: str) -> Bound:
        operand = self._bind(node.operand, ctx)
        items = []
        for item in node.items:
            bound = self._bind(item, ctx)
            if not isinstance(bound, Lit) and not (isinstance(bound, Op) and bound.op == "neg"
                                                   and isinstance(bound.args[0], Lit)):
                raise self._error("IN takes a list of values, e.g. platform IN ('meta', 'ttd')", item)
            if isinstance(bound, Op):
                value = bound.args[0]
                assert isinstance(value, Lit) and isinstance(value.value, (int, float))
                bound = Lit(-value.value, unit=value.unit, vtype=value.vtype, level="const")
            if bound.unit is Unit.NULL:
                raise self._error("NULL in an IN list never matches anything; test with IS NULL", item)
            _, bound = self._comparable(node.operand, operand, item, bound, ordered=False)
            items.append(bound)
        return Op("not_in" if node.negated else "in", (operand, *items), unit=Unit.BOOLEAN, vtype="bool",
                  level=operand.level)

    def _call(self, node: s.Call, ctx: str) -> Bound:
        fn = node.name.upper()
        if fn not in FUNCTIONS:
            if node.name.lower() in {*self.catalog.base, *self.catalog.metrics, *self.catalog.dimensions}:
                raise self._error(f"{node.name} is a metric or dimension, not a function: write it "
                                  "without brackets", node)
            hits = self.catalog.suggest(node.name, list(FUNCTIONS))
            hint = f" — did you mean {' or '.join(hits)}?" if hits else f"; functions: {', '.join(FUNCTIONS)}"
            raise self._error(f"unknown function '{node.name}'{hint}", node, hits)
        low, high = _ARITY[fn]
        n = len(node.args)
        if node.star and fn != "COUNT":
            raise self._error(f"only COUNT takes *: {_USAGE[fn]}", node)
        if not low <= n <= high:
            count = str(low) if low == high else f"{low} to {high}" if high < 99 else f"at least {low}"
            raise self._error(f"{fn} takes {count} argument{'s' if high != 1 else ''}, got {n}: {_USAGE[fn]}", node)
        if fn in AGGREGATES:
            return self._aggregate(node, fn, ctx)
        if fn == "HAS_LABEL":
            return self._has_label(node)
        args = [self._bind(a, ctx) for a in node.args]
        parts = list(zip(node.args, args, strict=True))
        level = self._level(parts, node)
        return getattr(self, f"_fn_{fn.lower()}")(node, parts, level)

    def _aggregate(self, node: s.Call, fn: str, ctx: str) -> Bound:
        if ctx == "row":
            raise self._error(f"{fn} cannot be used here: inside another aggregate or in a row filter "
                              "every name is already one row's value", node)
        if not node.args:
            return Agg("COUNT", None, unit=Unit.COUNT, vtype="int", level="agg")
        arg_node = node.args[0]
        arg = self._bind(arg_node, "row")
        if arg.vtype == "null":
            raise self._error(f"{fn} of NULL has no value; aggregate a column or an expression", arg_node)
        if fn in ("COUNT", "COUNT_DISTINCT"):
            return Agg(fn, arg, unit=Unit.COUNT, vtype="int", level="agg")
        allowed = NUMERIC | {Unit.NULL} if fn in ("SUM", "AVG") else NUMERIC | {Unit.NULL, Unit.DATE, Unit.STRING}
        if arg.unit not in allowed:
            raise self._error(f"{fn} needs numbers; {self._describe(arg_node, arg)} is not a number", arg_node)
        unit = arg.unit
        vtype = "float" if fn == "AVG" else arg.vtype
        return Agg(fn, arg, unit=unit, vtype=vtype, level="agg")

    def _has_label(self, node: s.Call) -> Bound:
        label = node.args[0]
        if not isinstance(label, s.String):
            raise self._error("HAS_LABEL takes a quoted label, e.g. HAS_LABEL('brand')", label)
        d = self.catalog.dimensions["labels"]
        col = Col(d.name, d.column, None, unit=d.unit, vtype=d.vtype, level="row")
        return Op("has_label", (col, Lit(label.value, unit=Unit.STRING, vtype="string", level="const")),
                  unit=Unit.BOOLEAN, vtype="bool", level="row")

    # -- scalar functions: (node, [(arg node, bound)], level) -> bound ---------------------

    def _same_units(self, node: s.Call, parts: list[tuple[s.Node, Bound]], numeric: bool) -> tuple[Unit, str]:
        unit, vtype = Unit.NULL, "null"
        first: tuple[s.Node, Bound] | None = None
        for arg_node, bound in parts:
            if numeric and bound.unit not in NUMERIC | {Unit.NULL, Unit.DATE}:
                raise self._error(f"{node.name.upper()} needs numbers; {self._describe(arg_node, bound)} is not one",
                                  arg_node)
            if first is not None and not compatible(unit, bound.unit):
                raise self._error(f"{node.name.upper()} mixes {self._describe(first[0], first[1])} and "
                                  f"{self._describe(arg_node, bound)}", arg_node)
            if first is None or unit in (Unit.NULL, Unit.NUMBER):
                first = (arg_node, bound)
            unit, vtype = unify(unit, bound.unit), _vtype_union(vtype, bound.vtype)
        return unit, vtype

    def _fn_if(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        self._want_bool(parts[0][0], parts[0][1], "IF's condition")
        unit, vtype = self._same_units(node, parts[1:], numeric=False)
        args = tuple(b for _, b in parts)
        if len(args) == 2:
            args = (*args, Lit(None, unit=Unit.NULL, vtype="null", level="const"))
        return Op("if", args, unit=unit, vtype=vtype, level=level)

    def _fn_coalesce(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        unit, vtype = self._same_units(node, parts, numeric=False)
        return Op("coalesce", tuple(b for _, b in parts), unit=unit, vtype=vtype, level=level)

    def _fn_divide(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        for arg_node, bound in parts[:2]:
            if bound.unit not in NUMERIC | {Unit.NULL}:
                raise self._error(f"DIVIDE needs numbers; {self._describe(arg_node, bound)} is not one", arg_node)
        unit = divide(parts[0][1].unit, parts[1][1].unit)
        alt = parts[2][1] if len(parts) == 3 else Lit(None, unit=Unit.NULL, vtype="null", level="const")
        if not compatible(unit, alt.unit):
            raise self._error(f"DIVIDE's third argument should be {article(unit)} like the quotient; "
                              f"{self._describe(parts[2][0], alt)} is not", parts[2][0])
        vtype = "float" if alt.vtype in ("int", "float", "null") else alt.vtype
        return Op("divide", (parts[0][1], parts[1][1], alt), unit=unit, vtype=vtype, level=level)

    def _fn_round(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        unit, _ = self._same_units(node, parts[:1], numeric=True)
        digits = 0
        if len(parts) == 2:
            d = parts[1][1]
            if not (isinstance(d, Lit) and isinstance(d.value, int) and 0 <= d.value <= 12):
                raise self._error("ROUND's digits must be a whole number from 0 to 12", parts[1][0])
            digits = d.value
        return Op("round", (parts[0][1], Lit(digits, unit=Unit.NUMBER, vtype="int", level="const")),
                  unit=unit, vtype="float", level=level)

    def _fn_abs(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        unit, vtype = self._same_units(node, parts, numeric=True)
        return Op("abs", (parts[0][1],), unit=unit, vtype=vtype, level=level)

    def _fn_least(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        unit, vtype = self._same_units(node, parts, numeric=True)
        return Op(node.name.lower(), tuple(b for _, b in parts), unit=unit, vtype=vtype, level=level)

    _fn_greatest = _fn_least

    def _fn_log(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        for arg_node, bound in parts:
            if bound.unit not in NUMERIC | {Unit.NULL}:
                raise self._error(f"{node.name.upper()} needs numbers; {self._describe(arg_node, bound)} is not one",
                                  arg_node)
        base = parts[1][1] if len(parts) == 2 else Lit(10, unit=Unit.NUMBER, vtype="int", level="const")
        if not (isinstance(base, Lit) and isinstance(base.value, (int, float)) and base.value > 0
                and base.value != 1):
            raise self._error("LOG's base must be a positive number other than 1, e.g. LOG(x, 2)", parts[1][0])
        return Op("log", (parts[0][1], base), unit=Unit.RATIO, vtype="float", level=level)

    def _fn_ln(self, node: s.Call, parts: list[tuple[s.Node, Bound]], level: str) -> Bound:
        self._fn_log(node, parts, level)
        return Op("ln", (parts[0][1],), unit=Unit.RATIO, vtype="float", level=level)


def parse_in(text: str, metric: str) -> s.Node:
    """Parse the formula of a stored metric; errors name the metric."""
    try:
        return parse(text)
    except FormulaError as exc:
        raise FormulaError(exc.message, exc.text, exc.start, exc.end, metric=metric,
                           suggestions=exc.suggestions) from None
