"""Metric queries and explanations for one organisation: what ``Workspace`` and the CLI call."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from workbench.errors import FormulaError, ValidationError
from workbench.formulas import plan as planner
from workbench.formulas.binder import Binder
from workbench.formulas.bound import Bound
from workbench.formulas.catalog import Catalog
from workbench.formulas.definitions import dependencies, dependents, load_catalog
from workbench.formulas.units import default_format

if TYPE_CHECKING:
    from workbench.stores import Stores

ENGINES = ("sql", "polars")


def run(stores: Stores, org_id: str, metrics: list[str] | dict[str, str], by: list[str] | None = None,
        where: str | None = None, start: dt.date | None = None, end: dt.date | None = None,
        engine: str = "sql", catalog: Catalog | None = None) -> tuple[pl.DataFrame, dict[str, str]]:
    """Evaluate metrics for ``org_id``; returns the frame and each output column's display format."""
    if engine not in ENGINES:
        raise ValidationError(f"engine must be one of {', '.join(ENGINES)}, not '{engine}'")
    if (start is None) != (end is None):
        raise ValidationError("give both a start and an end date (or neither)")
    if start is not None and end is not None and end < start:
        raise ValidationError(f"the end date {end} is before the start date {start}")
    catalog = catalog or load_catalog(stores.db, org_id)
    plan = planner.build(catalog, metrics, by, where, start, end)
    if engine == "sql":
        def query(sql: str, params: dict[str, Any]) -> pl.DataFrame:
            return stores.warehouse.query(sql, params, org=org_id, trusted=True)
        frame = planner.run_sql(plan, query)
    else:
        def source(table: str) -> pl.LazyFrame:
            return stores.lake.scan(table).filter(pl.col("org_id") == org_id)
        frame = planner.run_polars(plan, source)
    formats = {o.label: o.format or default_format(o.unit, o.vtype) for o in plan.outputs}
    return frame, formats


@dataclass
class Explanation:
    """What a metric is made of: formula, unit, dependency tree, dependents and generated SQL."""

    name: str
    formula: str
    unit: str
    format: str
    origin: str
    tree: str
    used_by: list[str] = field(default_factory=list)
    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.name} = {self.formula}", f"  unit: {self.unit}   format: {self.format}   from: {self.origin}",
                 "", "depends on:", self.tree, "",
                 f"used by: {', '.join(self.used_by) if self.used_by else 'no other metric'}", "",
                 "ClickHouse SQL (no grouping):", self.sql]
        if self.params:
            lines.append(f"parameters: {self.params}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def _describe(catalog: Catalog, binder: Binder, name: str) -> str:
    if name in catalog.base:
        m = catalog.base[name]
        how = "SUM" if m.additive else "MAX at the reported grain"
        return f"{name}  [{m.unit.value}]  base: {how}({m.column}) from {'/'.join(_tables(m.family))}"
    if name in catalog.dimensions:
        return f"{name}  [{catalog.dimensions[name].unit.value}]  dimension"
    d = catalog.metrics[name]
    return f"{name}  [{binder.metric(name).unit.value}]  = {d.formula}  ({_origin(d.origin, d.version)})"


def _tables(family: str) -> tuple[str, ...]:
    from workbench.formulas.catalog import FAMILY_TABLES

    return tuple(t.split(".")[1] for t in FAMILY_TABLES[family])


def _origin(origin: str, version: int | None) -> str:
    return f"{origin} v{version}" if version else origin


def _names_in(catalog: Catalog, formula: str) -> list[str]:
    from workbench.formulas import syntax as s
    from workbench.formulas.parser import parse

    out: list[str] = []
    for node in s.walk(parse(formula)):
        if isinstance(node, s.Name):
            key = node.name.lower()
            if key not in out and (key in catalog.base or key in catalog.metrics or key in catalog.dimensions):
                out.append(key)
    return out


def _tree(catalog: Catalog, binder: Binder, formula: str, prefix: str = "", seen: tuple[str, ...] = ()) -> list[str]:
    names = _names_in(catalog, formula)
    lines = []
    for i, name in enumerate(names):
        last = i == len(names) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{_describe(catalog, binder, name)}")
        if name in catalog.metrics and name not in seen:
            lines += _tree(catalog, binder, catalog.metrics[name].formula, prefix + ("    " if last else "│   "),
                           (*seen, name))
    return lines


def explain(catalog: Catalog, name_or_formula: str) -> Explanation:
    """Explain a metric of the catalog, or an ad-hoc formula."""
    key = name_or_formula.strip().lower()
    binder = Binder(catalog)
    if key in catalog.base:
        raise ValidationError(f"{key} is a base metric: {_describe(catalog, binder, key)}")
    bound: Bound
    if key in catalog.metrics:
        d = catalog.metrics[key]
        bound, formula, fmt, origin = binder.metric(key), d.formula, d.format, _origin(d.origin, d.version)
        used_by = dependents(catalog, key)
    else:
        bound, formula, fmt, origin, used_by = binder.formula(name_or_formula), name_or_formula, None, "ad hoc", []
    plan = planner.build(catalog, [formula])
    sql, params = planner.to_sql_text(plan)
    tree = "\n".join(_tree(catalog, binder, formula)) or "(constants only)"
    return Explanation(key if key in catalog.metrics else formula, formula, bound.unit.value,
                       fmt or default_format(bound.unit, bound.vtype), origin, tree, used_by, sql, params)


def catalog_frame(catalog: Catalog) -> pl.DataFrame:
    """Every name formulas can use: base metrics, derived metrics and dimensions."""
    rows = []
    binder = Binder(catalog)
    for m in catalog.base.values():
        rows.append({"name": m.name, "kind": "base", "unit": m.unit.value, "formula": "",
                     "origin": "built-in", "description": m.description})
    for d in sorted(catalog.metrics.values(), key=lambda x: x.name):
        try:
            unit = binder.metric(d.name).unit.value
        except FormulaError:
            unit = "(invalid)"
        rows.append({"name": d.name, "kind": "derived", "unit": unit, "formula": d.formula,
                     "origin": _origin(d.origin, d.version), "description": d.description})
    for dim in catalog.dimensions.values():
        rows.append({"name": dim.name, "kind": "dimension", "unit": dim.unit.value, "formula": "",
                     "origin": "built-in", "description": dim.description})
    return pl.DataFrame(rows)


__all__ = ["ENGINES", "Explanation", "catalog_frame", "dependencies", "explain", "run"]
