"""A metrics query: which gold tables to read, what to aggregate, and the two-stage shape.

Stage 1 groups each source table's rows by the requested dimensions and computes every
distinct aggregate once (``_a0``, ``_a1``...). When metrics come from several tables (spend
from campaign_daily, won_value from crm_attribution_daily), the per-table results are merged
on the dimensions. Stage 2 computes each requested metric from the aggregates: ratio of sums.
``to_sql`` and ``run_polars`` execute the same plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from workbench.errors import FormulaError
from workbench.formulas import to_polars, to_sql
from workbench.formulas.binder import Binder, WindowResolver
from workbench.formulas.bound import Agg, Bound, Col, Lit, Op, Slot, can_be_null, columns, walk
from workbench.formulas.catalog import FAMILY_TABLES, Catalog
from workbench.formulas.units import Unit
from workbench.lake.schemas import TABLES


@dataclass(frozen=True)
class Output:
    """One requested metric: its label, bound tree (over slots) and unit."""

    label: str
    node: Bound
    unit: Unit
    vtype: str
    format: str | None = None


@dataclass
class SourceGroup:
    table: str
    slots: dict[str, Agg] = field(default_factory=dict)


@dataclass
class Plan:
    dims: list[Col]
    outputs: list[Output]
    groups: list[SourceGroup]
    where: Bound | None
    start: dt.date | None
    end: dt.date | None

    @property
    def dim_names(self) -> list[str]:
        return [d.name for d in self.dims]


def _replace_aggs(node: Bound, slot_of: dict[Agg, Slot]) -> Bound:
    if isinstance(node, Agg):
        return slot_of[node]
    if isinstance(node, Op):
        return Op(node.op, tuple(_replace_aggs(a, slot_of) for a in node.args),
                  unit=node.unit, vtype=node.vtype, level=node.level)
    return node


def _family(agg: Agg, label: str) -> str:
    families = {c.family for c in columns(agg) if c.family is not None}
    if len(families) > 1:
        raise FormulaError(f"{label}: one aggregate combines columns of different gold tables "
                           f"({', '.join(sorted(families))}); aggregate each separately and combine the results")
    return families.pop() if families else "ads"


def build(catalog: Catalog, metrics: list[str] | dict[str, str], by: list[str] | None = None,
          where: str | None = None, start: dt.date | None = None, end: dt.date | None = None, *,
          windows: WindowResolver | None = None) -> Plan:
    """Bind the requested metrics, dimensions and filter, and assign tables and slots.

    ``metrics`` are names from the catalog or ad-hoc formulas (labelled by their text); a dict
    gives labels to formulas.
    """
    try:
        return _build(catalog, metrics, by, where, start, end, windows)
    except RecursionError:
        raise FormulaError("the metrics reference each other too deeply to evaluate; "
                           "flatten the chain of definitions") from None


def _build(catalog: Catalog, metrics: list[str] | dict[str, str], by: list[str] | None,
           where: str | None, start: dt.date | None, end: dt.date | None,
           windows: WindowResolver | None) -> Plan:
    binder = Binder(catalog, windows=windows)
    requested = metrics.items() if isinstance(metrics, dict) else [(m, m) for m in metrics]
    if not requested:
        raise FormulaError("ask for at least one metric, e.g. metrics=['spend', 'cpa']")
    dims: list[Col] = []
    for name in by or []:
        key = name.strip().lower()
        if key not in catalog.dimensions:
            hits = catalog.suggest(key, list(catalog.dimensions))
            hint = f" — did you mean {' or '.join(repr(h) for h in hits)}?" if hits else \
                f"; dimensions: {', '.join(sorted(catalog.dimensions))}"
            raise FormulaError(f"unknown dimension '{name}' in by{hint}", suggestions=hits)
        d = catalog.dimensions[key]
        if d.vtype == "list":
            raise FormulaError(f"{d.name} is a list and cannot be a grouping dimension; filter with HAS_LABEL('...')")
        if d.name in [x.name for x in dims]:
            raise FormulaError(f"'{d.name}' appears twice in by")
        dims.append(Col(d.name, d.column, None, d.truncate, unit=d.unit, vtype=d.vtype, level="row"))
    bound: list[tuple[str, Bound, str | None]] = []
    for label, text in requested:
        key = text.strip().lower()
        if key in catalog.metrics:
            bound.append((label, binder.metric(key), catalog.metrics[key].format))
        else:
            bound.append((label, binder.formula(text), None))
    filt = binder.condition(where) if where and where.strip() else None

    labels = [label for label, _, _ in bound]
    clash = sorted({x for x in labels if labels.count(x) > 1} | (set(labels) & {d.name for d in dims}))
    if clash:
        raise FormulaError(f"each output needs its own name; {', '.join(clash)} appears twice")
    filter_has_metrics = filt is not None and any(c.family for c in columns(filt))
    catalog_dims = catalog.dimensions
    needed_dims = {d.name for d in dims} | ({c.name for c in columns(filt) if c.family is None} if filt else set())

    wanted: dict[Agg, tuple[str, str]] = {}  # aggregate -> (family, table it needs)
    for label, node, _ in bound:
        for agg in [n for n in walk(node) if isinstance(n, Agg)]:
            if agg not in wanted:
                family = _family(agg, label)
                inner_dims = {c.name for c in columns(agg) if c.family is None}
                wanted[agg] = (family, _pick_table(family, needed_dims | inner_dims, filter_has_metrics,
                                                   catalog_dims, label, agg))
    if not wanted:  # only constants: still one row per group of the dimensions
        rows = Agg("COUNT", None, unit=Unit.COUNT, vtype="int", level="agg")
        wanted[rows] = ("ads", _pick_table("ads", needed_dims, filter_has_metrics, catalog_dims, "rows", rows))
    # One scan per family: if any aggregate of a family needs the finer table, all of them use it.
    family_table: dict[str, str] = {}
    for family, table in wanted.values():
        order = FAMILY_TABLES[family]
        if family not in family_table or order.index(table) > order.index(family_table[family]):
            family_table[family] = table
    groups: dict[str, SourceGroup] = {}
    slot_of: dict[Agg, Slot] = {}
    for agg, (family, _) in wanted.items():
        group = groups.setdefault(family_table[family], SourceGroup(family_table[family]))
        name = f"_a{len(slot_of)}"
        group.slots[name] = agg
        slot_of[agg] = Slot(name, not can_be_null(agg), unit=agg.unit, vtype=agg.vtype, level="agg")
    outputs = [Output(label, _replace_aggs(node, slot_of), node.unit, node.vtype, fmt)
               for label, node, fmt in bound]
    if filt is not None:
        for group in groups.values():
            have = TABLES[group.table].column_names
            missing = sorted({c.name for c in columns(filt) if c.column not in have})
            if missing:
                uses = sorted({c.name for agg in group.slots.values() for c in columns(agg)}) or ["rows"]
                raise FormulaError(f"the filter uses {', '.join(missing)}, which {group.table} (where "
                                   f"{', '.join(uses)} come from) does not have; filter those metrics by "
                                   "dimensions it has, or query them separately")
    return Plan(dims, outputs, list(groups.values()), filt, start, end)


def _one_column(node: Bound) -> bool:
    """A base column, or IF(condition on dimensions, such a value, a literal): summing it gives
    the same over campaign-days as over ad-days (a time window is such a condition)."""
    if isinstance(node, Col):
        return node.family is not None
    if isinstance(node, Lit):
        return node.value in (0, None)
    if isinstance(node, Op) and node.op == "if":
        cond, then, other = node.args
        return (all(c.family is None for c in columns(cond)) and _one_column(then)
                and isinstance(other, Lit) and other.value in (0, None))
    return False


def _pick_table(family: str, needed: set[str], filter_has_metrics: bool, dims: dict, label: str,
                agg: Agg) -> str:
    candidates = FAMILY_TABLES[family]
    # MIN, MAX and distinct counts of dimension values are the same at both grains too
    grain_free = agg.arg is not None and (
        (agg.func == "SUM" and _one_column(agg.arg))
        or (agg.func in ("MIN", "MAX", "COUNT_DISTINCT") and all(c.family is None for c in columns(agg.arg))))
    if family == "ads" and (filter_has_metrics or not grain_free):
        # Only a plain sum is the same over campaign-days and ad-days; counts, averages,
        # row-level logic and filters on row values are defined over the finest rows.
        candidates = candidates[-1:]
    for table in candidates:
        if all(table in dims[d].tables for d in needed):
            return table
    missing = sorted(d for d in needed if candidates[-1] not in dims[d].tables)
    names = sorted({c.name for c in columns(agg)}) or [label]
    raise FormulaError(f"{label}: {', '.join(names)} is not available by {', '.join(missing)} "
                       f"(it comes from {candidates[-1]})")


# -- Polars --------------------------------------------------------------------------------

def run_polars(plan: Plan, source: Callable[[str], pl.LazyFrame]) -> pl.DataFrame:
    """Execute ``plan`` on Polars; ``source(table)`` gives the organisation's rows of a gold table."""
    partials = []
    for group in plan.groups:
        lf = source(group.table)
        if plan.start is not None and plan.end is not None:
            lf = lf.filter(pl.col("date").is_between(plan.start, plan.end))
        if plan.where is not None:
            lf = lf.filter(to_polars.compile_expr(plan.where))
        aggs = [to_polars.compile_expr(agg).alias(name) for name, agg in group.slots.items()]
        keys = [to_polars.compile_expr(d).alias(d.name) for d in plan.dims]
        partials.append(lf.group_by(keys).agg(aggs) if keys else lf.select(aggs))
    frame = partials[0] if len(partials) == 1 else _merge(partials, plan.dim_names)
    finals = [to_polars.compile_expr(_fill(o.node, len(partials) > 1)).cast(to_polars.DTYPES[o.vtype]).alias(o.label)
              for o in plan.outputs]
    result = frame.select(*[pl.col(d) for d in plan.dim_names], *finals).collect()
    return _finish(result, plan)


def _fill(node: Bound, merged: bool) -> Bound:
    """After a merge, a sum or count of a table with no rows for a group is 0, not null."""
    if not merged:
        return node
    if isinstance(node, Slot) and node.zero_when_missing:
        zero = Lit(0, unit=Unit.NUMBER, vtype="int", level="const")
        return Op("coalesce", (node, zero), unit=node.unit, vtype=node.vtype, level="agg")
    if isinstance(node, Op):
        return Op(node.op, tuple(_fill(a, merged) for a in node.args), unit=node.unit, vtype=node.vtype,
                  level=node.level)
    return node


def _merge(partials: list[pl.LazyFrame], dims: list[str]) -> pl.LazyFrame:
    stacked = pl.concat(partials, how="diagonal_relaxed")
    if not dims:
        return stacked.select(pl.all().max())
    return stacked.group_by(dims).agg(pl.all().max())


def _finish(result: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    casts = {d.name: to_polars.DTYPES[d.vtype] for d in plan.dims}
    casts.update({o.label: to_polars.DTYPES[o.vtype] for o in plan.outputs})
    result = result.cast(casts)  # type: ignore[arg-type]
    return result.sort(plan.dim_names, nulls_last=True) if plan.dims else result


# -- SQL -----------------------------------------------------------------------------------

def to_sql_text(plan: Plan) -> tuple[str, dict[str, object]]:
    """The plan as one ClickHouse statement over lake table names, with its parameters.

    Output columns are the dimensions followed by ``m0``, ``m1``... in the order requested.
    """
    params = to_sql.Params()
    all_slots = [(name, agg) for g in plan.groups for name, agg in g.slots.items()]
    dim_sql = [f"{to_sql.column_sql(d)} AS {to_sql.ident(d.name)}" for d in plan.dims]
    group_by = f"\nGROUP BY {', '.join(to_sql.ident(d.name) for d in plan.dims)}" if plan.dims else ""
    conditions = []
    if plan.start is not None and plan.end is not None:
        conditions.append(f"`date` BETWEEN {params.bind(plan.start, 'Date')} AND {params.bind(plan.end, 'Date')}")
    if plan.where is not None:
        conditions.append(to_sql.compile_expr(plan.where, params))
    where = f"\nWHERE {' AND '.join(conditions)}" if conditions else ""
    branches = []
    merged = len(plan.groups) > 1
    for group in plan.groups:
        cols = list(dim_sql)
        for name, agg in all_slots:
            if name in group.slots:
                expr = to_sql.compile_expr(agg, params)
            else:
                expr = f"CAST(NULL AS Nullable({to_sql.SQL_TYPES[agg.vtype]}))"
            cols.append(f"{expr} AS {to_sql.ident(name)}")
        branches.append(f"SELECT {', '.join(cols)}\nFROM {group.table}{where}{group_by}")
    if merged:
        dims = [to_sql.ident(d.name) for d in plan.dims]
        maxes = [f"max({to_sql.ident(n)}) AS {to_sql.ident(n)}" for n, _ in all_slots]
        inner = "\nUNION ALL\n".join(f"({b})" for b in branches)
        stage1 = f"SELECT {', '.join(dims + maxes)}\nFROM ({inner}){group_by}"
    else:
        stage1 = branches[0]
    finals = [f"{to_sql.compile_expr(_fill(o.node, merged), params)} AS m{i}" for i, o in enumerate(plan.outputs)]
    outer_dims = [to_sql.ident(d.name) for d in plan.dims]
    sql = f"SELECT {', '.join(outer_dims + finals)}\nFROM (\n{stage1}\n)"
    return sql, params.values


def run_sql(plan: Plan, query: Callable[[str, dict[str, object]], pl.DataFrame]) -> pl.DataFrame:
    """Execute ``plan`` with ``query(sql, params)`` on the query engine."""
    sql, params = to_sql_text(plan)
    raw = query(sql, params)
    names = {f"m{i}": o.label for i, o in enumerate(plan.outputs)}
    return _finish(raw.rename(names), plan)
