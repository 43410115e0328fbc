"""Formula queries: compiled formulas beside hand-written Polars and a row-by-row interpreter,
and the latency of a metrics query on the SQL backend.

1. An in-memory frame shaped like ``gold.performance_daily`` (``--rows`` rows, numpy-generated:
   one organisation, a year of dates, 3 platforms, 300 campaigns, 9,600 ads; whole campaigns
   with no impressions, no clicks, no conversions, no spend or no video views, so ratios meet
   zero denominators and all-null sums).
2. ``compiled``: ``plan.build`` + ``plan.run_polars`` (binding and compiling included in the
   time) of 10 metrics by platform and campaign name, and of a second query with a ``where``
   filter and an explicit aggregate (``SUM(IF(platform = 'meta', spend, 0))``) by month and
   campaign name.
3. ``hand``: the same results written directly in Polars (group_by + sums, ratios guarded
   against zero denominators, the same null rules); both answers are checked equal.
   Target: compiled / hand <= 1.1 (median of ``--runs`` interleaved runs).
4. ``row-by-row``: a small Python interpreter over the bound tree (``bound.py`` nodes) that
   reads one row at a time, accumulates aggregates per group in a dict and evaluates the
   metrics at the end, on ``--python-rows`` rows; checked equal to the compiled answer on
   those rows and extrapolated linearly to ``--rows``.
5. ``sql``: a workbench home with ``--days`` days of demo data for one organisation, then
   ``ws.metrics(<10 metrics>, by=["platform", "campaign_name"], engine="sql")`` (and
   ``engine="polars"``) over the whole period: p50 / p95 after ``--warmup`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from workbench.formulas import plan as planner
from workbench.formulas.bound import Col, Lit, Op, Slot, can_be_null, columns
from workbench.formulas.catalog import Catalog
from workbench.formulas.packs import metric_packs
from workbench.formulas.to_polars import DTYPES
from workbench.formulas.units import Unit

HERE = Path(__file__).resolve().parent
TARGET_VS_HAND = 1.1
DEFAULT_ROWS = 10_000_000
PLATFORMS = ("meta", "dv360", "ttd")
CURRENCIES = ("USD", "EUR", "GBP")
FIRST_DAY = dt.date(2025, 11, 1)
CAMPAIGNS = 300
AD_GROUPS_PER_CAMPAIGN = 8
ADS_PER_AD_GROUP = 4

METRICS = ["spend", "impressions", "clicks", "ctr", "cpc", "cpm", "cvr", "cpa", "roas", "vtr"]
BY = ["platform", "campaign_name"]
FILTERED_METRICS = {"spend": "spend", "meta_spend": "SUM(IF(platform = 'meta', spend, 0))",
                    "clicks": "clicks", "ctr": "ctr", "cpa": "cpa", "aov": "aov"}
FILTERED_BY = ["month", "campaign_name"]
FILTERED_WHERE = "platform IN ('meta', 'ttd') AND impressions > 0"


# -- data ----------------------------------------------------------------------------------

def gold_frame(rows: int, seed: int = 7) -> pl.DataFrame:
    """``rows`` rows shaped like gold.performance_daily for one organisation, in random order."""
    rng = np.random.default_rng(seed)
    ads_per_campaign = AD_GROUPS_PER_CAMPAIGN * ADS_PER_AD_GROUP
    ad = rng.integers(0, CAMPAIGNS * ads_per_campaign, rows)
    campaign = ad // ads_per_campaign
    ad_group = ad // ADS_PER_AD_GROUP
    day = rng.integers(0, 365, rows)
    # whole campaigns that meet zero denominators (paused, not converting, free, no video)
    no_delivery = campaign % 37 == 3   # impressions = clicks = 0 (and spend 0)
    no_clicks = campaign % 41 == 5     # impressions but no clicks
    no_conversions = campaign % 11 == 0
    no_spend = campaign % 53 == 9      # bonus inventory: impressions, no cost
    no_video = campaign % 13 == 5      # video views never reported
    spend = np.round(rng.lognormal(2.0, 1.2, rows), 2)
    spend[no_delivery | no_spend] = 0.0
    cpm = rng.uniform(2.0, 15.0, rows)
    impressions = np.where(no_spend, rng.integers(0, 5000, rows), spend / cpm * 1000).astype(np.int64)
    impressions[no_delivery] = 0
    ctr = 0.002 + (campaign % 7) * 0.003
    clicks = rng.binomial(impressions, ctr)
    clicks[no_clicks] = 0
    conversions = rng.binomial(clicks, 0.03).astype(np.float64)
    conversions[no_conversions] = 0.0
    conversion_value = np.round(conversions * rng.uniform(20.0, 150.0, rows), 2)
    video_views = rng.binomial(impressions, 0.25)
    video_null = no_video | (rng.random(rows) < 0.3)
    fx = np.array([1.0, 1.08, 1.27])[campaign % 3]
    platform_ = campaign % 3
    account = campaign % 12
    brands = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka",
              "Tyrell", "Cyberdyne")
    objectives = ("Always-On", "Prospecting", "Retargeting", "Brand Awareness", "Lead Gen",
                  "Product Launch")
    campaign_names = pl.Series([f"{brands[c % 10]} | {objectives[c % 6]} | #{c}"
                                for c in range(CAMPAIGNS)])
    idx = pl.DataFrame({"campaign": campaign, "ad_group": ad_group, "ad": ad, "day": day,
                        "platform": platform_, "account": account})
    labels = {
        "platform": pl.Series(PLATFORMS),
        "account_id": pl.Series([f"act_{1000 + a}" for a in range(12)]),
        "account_name": pl.Series([f"Account {a}" for a in range(12)]),
        "campaign_id": pl.Series([f"cmp_{200000 + c}" for c in range(CAMPAIGNS)]),
        "campaign_name": campaign_names,
        "ad_group_id": pl.Series([f"adg_{300000 + g}" for g in range(CAMPAIGNS * AD_GROUPS_PER_CAMPAIGN)]),
        "ad_id": pl.Series([f"ad_{400000 + a}" for a in range(CAMPAIGNS * ads_per_campaign)]),
        "currency": pl.Series(CURRENCIES),
    }
    key = {"platform": "platform", "account_id": "account", "account_name": "account",
           "campaign_id": "campaign", "campaign_name": "campaign", "ad_group_id": "ad_group",
           "ad_id": "ad", "currency": "platform"}
    strings = {name: labels[name].gather(idx[key[name]]) for name in labels}
    epoch_day = (FIRST_DAY - dt.date(1970, 1, 1)).days
    return pl.DataFrame({
        "org_id": pl.Series(["acme"]).gather(np.zeros(rows, dtype=np.int64)),
        "date": pl.Series(day + epoch_day, dtype=pl.Int32).cast(pl.Date),
        "platform": strings["platform"],
        "account_id": strings["account_id"],
        "account_name": strings["account_name"],
        "campaign_id": strings["campaign_id"],
        "campaign_name": strings["campaign_name"],
        "ad_group_id": strings["ad_group_id"],
        "ad_id": strings["ad_id"],
        "currency": strings["currency"],
        "spend": spend,
        "spend_org": spend * fx,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
        "conversion_value": conversion_value,
        "conversion_value_org": conversion_value * fx,
        "video_views": video_views,
        "reach": impressions // 2,
        "settled": day < 358,
        "_no_video": video_null,
    }).with_columns(
        pl.when(pl.col("_no_video")).then(None).otherwise(pl.col("video_views")).alias("video_views"),
    ).drop("_no_video")


# -- the three ways of computing the metrics -------------------------------------------------

def compiled(frame: pl.DataFrame, metrics: Any, by: list[str], where: str | None = None,
             start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
    """Bind, plan and run on Polars: what ``ws.metrics(..., engine="polars")`` does."""
    plan = planner.build(Catalog(metric_packs.definitions()), metrics, by, where, start, end)
    lf = frame.lazy()
    return planner.run_polars(plan, lambda table: lf)


def _div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den == 0).then(None).otherwise(num / den)


def hand(frame: pl.DataFrame) -> pl.DataFrame:
    """The 10 metrics by platform and campaign name, written directly in Polars."""
    views = pl.col("video_views")
    sums = frame.lazy().group_by("platform", "campaign_name").agg(
        pl.col("spend_org").sum().alias("spend"),
        pl.col("impressions").sum(),
        pl.col("clicks").sum(),
        pl.col("conversions").sum(),
        pl.col("conversion_value_org").sum().alias("conversion_value"),
        # SUM of only nulls is null (nobody reported video views), as in SQL
        pl.when(views.count() > 0).then(views.sum()).alias("video_views"),
    )
    spend, impressions, clicks = pl.col("spend"), pl.col("impressions"), pl.col("clicks")
    conversions = pl.col("conversions")
    return sums.select(
        "platform", "campaign_name", "spend", "impressions", "clicks",
        _div(clicks, impressions).alias("ctr"),
        _div(spend, clicks).alias("cpc"),
        (_div(spend, impressions) * 1000).alias("cpm"),
        _div(conversions, clicks).alias("cvr"),
        _div(spend, conversions).alias("cpa"),
        _div(pl.col("conversion_value"), spend).alias("roas"),
        _div(pl.col("video_views"), impressions).alias("vtr"),
    ).sort("platform", "campaign_name").collect()


def hand_filtered(frame: pl.DataFrame) -> pl.DataFrame:
    """The filtered query (``FILTERED_*``), written directly in Polars."""
    sums = (frame.lazy()
            .filter(pl.col("platform").is_in(["meta", "ttd"]) & (pl.col("impressions") > 0))
            .group_by(pl.col("date").dt.month_start().alias("month"), "campaign_name")
            .agg(pl.col("spend_org").sum().alias("spend"),
                 pl.when(pl.col("platform") == "meta").then(pl.col("spend_org")).otherwise(0.0)
                 .sum().alias("meta_spend"),
                 pl.col("clicks").sum(), pl.col("impressions").sum(), pl.col("conversions").sum(),
                 pl.col("conversion_value_org").sum().alias("conversion_value")))
    return sums.select(
        "month", "campaign_name", "spend", "meta_spend", "clicks",
        _div(pl.col("clicks"), pl.col("impressions")).alias("ctr"),
        _div(pl.col("spend"), pl.col("conversions")).alias("cpa"),
        _div(pl.col("conversion_value"), pl.col("conversions")).alias("aov"),
    ).sort("month", "campaign_name").collect()


# -- row by row: a naive interpreter over the bound tree -----------------------------------

def _kleene_and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _kleene_or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _round(x: float, digits: int) -> float:
    scale = 10.0 ** digits
    return math.copysign(math.floor(abs(x) * scale + 0.5) / scale, x)


def _log(x: Any, base: float | None) -> Any:
    if x is None or x <= 0:
        return None
    return math.log(x) if base is None else math.log(x, base)


_STRICT: dict[str, Callable[..., Any]] = {  # null if any argument is null
    "neg": lambda a: -a, "add": lambda a, b: a + b, "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b, "div": lambda a, b: None if b == 0 else a / b,
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "not": lambda a: not a, "abs": abs,
}


def evaluate(node: Any, row: dict[str, Any]) -> Any:
    """One value of ``node`` for one row (row level) or one group's slots (aggregate level)."""
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Col):
        value = row[node.column]
        if value is not None and node.truncate == "week":
            return value - dt.timedelta(days=value.weekday())
        if value is not None and node.truncate == "month":
            return value.replace(day=1)
        return value
    if isinstance(node, Slot):
        return row[node.name]
    assert isinstance(node, Op), node
    op, args = node.op, node.args
    if op == "if":
        return evaluate(args[1], row) if evaluate(args[0], row) is True else evaluate(args[2], row)
    values = [evaluate(a, row) for a in args]
    if op in _STRICT:
        return None if any(v is None for v in values) else _STRICT[op](*values)
    if op == "and":
        return _kleene_and(*values)
    if op == "or":
        return _kleene_or(*values)
    if op == "is_null":
        return values[0] is None
    if op == "is_not_null":
        return values[0] is not None
    if op == "coalesce":
        return next((v for v in values if v is not None), None)
    if op == "divide":
        num, den, alt = values
        if den is None or den == 0:
            return alt
        return None if num is None else num / den
    if op in ("least", "greatest"):
        present = [v for v in values if v is not None]
        return (min if op == "least" else max)(present) if present else None
    if op in ("in", "not_in"):
        if values[0] is None:
            return None
        return (values[0] in values[1:]) == (op == "in")
    if op == "round":
        return None if values[0] is None else _round(values[0], values[1])
    if op == "ln":
        return _log(values[0], None)
    if op == "log":
        return _log(values[0], float(values[1]))
    raise ValueError(f"no row-by-row rule for {op}")


class _Accumulator:
    """The running state of one aggregate in one group."""

    __slots__ = ("count", "func", "high", "low", "nullable", "rows", "seen", "total")

    def __init__(self, func: str, nullable: bool) -> None:
        self.func, self.nullable = func, nullable
        self.total: Any = 0
        self.count = self.rows = 0
        self.low = self.high = None
        self.seen: set[Any] = set()

    def add(self, value: Any) -> None:
        self.rows += 1
        if value is None:
            return
        self.count += 1
        if self.func in ("SUM", "AVG"):
            self.total += value
        elif self.func == "MIN":
            self.low = value if self.low is None or value < self.low else self.low
        elif self.func == "MAX":
            self.high = value if self.high is None or value > self.high else self.high
        elif self.func == "COUNT_DISTINCT":
            self.seen.add(value)

    def result(self) -> Any:
        if self.func == "SUM":
            return None if self.nullable and self.count == 0 else self.total
        if self.func == "AVG":
            return self.total / self.count if self.count else None
        if self.func == "MIN":
            return self.low
        if self.func == "MAX":
            return self.high
        if self.func == "COUNT":
            return self.count
        return len(self.seen)


def row_by_row(frame: pl.DataFrame, metrics: Any, by: list[str], where: str | None = None,
               start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
    """The same plan evaluated one row at a time in plain Python."""
    plan = planner.build(Catalog(metric_packs.definitions()), metrics, by, where, start, end)
    dim_names = plan.dim_names
    merged_slots: dict[tuple[Any, ...], dict[str, Any]] = {}
    for group in plan.groups:
        nodes = [*plan.dims, *group.slots.values(), *([plan.where] if plan.where is not None else [])]
        needed = sorted({c.column for n in nodes for c in columns(n)} | {"date"})
        acc: dict[tuple[Any, ...], list[_Accumulator]] = {}
        slots = list(group.slots.items())
        for row in frame.select(needed).iter_rows(named=True):
            if plan.start is not None and plan.end is not None and not plan.start <= row["date"] <= plan.end:
                continue
            if plan.where is not None and evaluate(plan.where, row) is not True:
                continue
            key = tuple(evaluate(d, row) for d in plan.dims)
            states = acc.get(key)
            if states is None:
                states = acc[key] = [_Accumulator(agg.func, agg.arg is not None and can_be_null(agg.arg))
                                     for _, agg in slots]
            for state, (_, agg) in zip(states, slots, strict=True):
                state.add(1 if agg.arg is None else evaluate(agg.arg, row))
        for key, states in acc.items():
            merged_slots.setdefault(key, {}).update(
                {name: state.result() for (name, _), state in zip(slots, states, strict=True)})
    all_slots = [name for g in plan.groups for name in g.slots]
    zero = Lit(0, unit=Unit.NUMBER, vtype="int", level="const")

    def fill(node: Any) -> Any:  # after a merge, a missing sum or count is 0 (plan._fill)
        if isinstance(node, Slot) and node.zero_when_missing:
            return Op("coalesce", (node, zero), unit=node.unit, vtype=node.vtype, level="agg")
        if isinstance(node, Op):
            return Op(node.op, tuple(fill(a) for a in node.args), unit=node.unit, vtype=node.vtype,
                      level=node.level)
        return node

    outputs = [(o.label, fill(o.node) if len(plan.groups) > 1 else o.node, o.vtype) for o in plan.outputs]
    rows = []
    for key, values in merged_slots.items():
        slot_row = {name: values.get(name) for name in all_slots}
        out: dict[str, Any] = dict(zip(dim_names, key, strict=True))
        for label, node, vtype in outputs:
            value = evaluate(node, slot_row)
            if value is not None and vtype == "float":
                value = float(value)
            elif value is not None and vtype == "int":
                value = int(value)
            out[label] = value
        rows.append(out)
    schema = {d.name: DTYPES[d.vtype] for d in plan.dims}
    schema.update({o.label: DTYPES[o.vtype] for o in plan.outputs})
    result = pl.DataFrame(rows, schema=schema, orient="row")  # type: ignore[arg-type]
    return result.sort(dim_names, nulls_last=True) if dim_names else result


# -- timing ----------------------------------------------------------------------------------

def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of the process, result)."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def same(a: pl.DataFrame, b: pl.DataFrame, what: str) -> None:
    a, b = a.sort(a.columns[:2], nulls_last=True), b.sort(b.columns[:2], nulls_last=True)
    try:
        assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    except AssertionError as exc:
        raise SystemExit(f"{what}: the answers differ: {exc}") from None


def interleaved(contenders: dict[str, Callable[[], Any]], runs: int, warmup: int = 1) -> dict[str, Any]:
    """Each contender ``warmup`` + ``runs`` times, alternating which goes first."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            w, c, _ = timed(contenders[name])
            wall[name].append(w)
            cpu[name].append(c)
    return {n: {"median_s": statistics.median(wall[n]), "min_s": min(wall[n]), "all_s": wall[n],
                "cpu_median_s": statistics.median(cpu[n])} for n in names}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_in_memory(args: argparse.Namespace, results: dict[str, Any]) -> list[str]:
    t = time.perf_counter()
    frame = gold_frame(args.rows)
    print(f"frame: {frame.height:,} rows x {frame.width} columns, "
          f"{frame.estimated_size() / 2**30:.2f} GiB, built in {time.perf_counter() - t:.1f} s", flush=True)
    results["frame"] = {"rows": frame.height, "columns": frame.columns,
                        "gib": frame.estimated_size() / 2**30,
                        "groups": frame.select(pl.struct(BY).n_unique()).item()}

    # bind + plan + compile alone (what the compiled timings include on top of the Polars work)
    catalog = Catalog(metric_packs.definitions())
    build_ms = []
    for _ in range(20):
        t = time.perf_counter()
        plan = planner.build(catalog, METRICS, BY)
        build_ms.append((time.perf_counter() - t) * 1000)
    results["build_ms_median"] = statistics.median(build_ms)
    results["plan_tables"] = [g.table for g in plan.groups]

    lines = []
    queries = [
        ("10 metrics by platform, campaign_name", METRICS, BY, None, hand),
        ("filtered, SUM(IF(...)) by month, campaign_name", FILTERED_METRICS, FILTERED_BY, FILTERED_WHERE,
         hand_filtered),
    ]
    sample = frame.sample(min(args.python_rows, frame.height), seed=5)
    lf = frame.lazy()
    results["queries"] = {}
    for title, metrics, by, where, by_hand in queries:
        print(f"{title}: checking, then {args.runs} interleaved runs each...", flush=True)
        prebuilt = planner.build(catalog, metrics, by, where)
        contenders = {
            "compiled": lambda m=metrics, b=by, w=where: compiled(frame, m, b, w),
            "hand": lambda f=by_hand: f(frame),
            # the Polars part alone: the plan built once, outside the timing
            "compiled-prebuilt": lambda p=prebuilt: planner.run_polars(p, lambda table: lf),
        }
        answer = contenders["compiled"]()
        same(answer, contenders["hand"](), f"{title}: compiled vs hand")
        timing = interleaved(contenders, args.runs)
        ratio = timing["compiled"]["median_s"] / timing["hand"]["median_s"]
        cpu_ratio = timing["compiled"]["cpu_median_s"] / timing["hand"]["cpu_median_s"]
        prebuilt_ratio = timing["compiled-prebuilt"]["median_s"] / timing["hand"]["median_s"]
        best_ratio = timing["compiled"]["min_s"] / timing["hand"]["min_s"]
        # row by row, on a sample, checked against the compiled answer on the same sample
        w, _, slow = timed(lambda m=metrics, b=by, wh=where: row_by_row(sample, m, b, wh))
        same(compiled(sample, metrics, by, where), slow, f"{title}: compiled vs row-by-row")
        per_row = w / sample.height
        extrapolated = per_row * frame.height
        speedup = extrapolated / timing["compiled"]["median_s"]
        results["queries"][title] = {
            "metrics": metrics, "by": by, "where": where, "groups": answer.height,
            "tables": [g.table for g in prebuilt.groups], "timing": timing,
            "ratio_compiled_hand": ratio, "cpu_ratio_compiled_hand": cpu_ratio, "best_ratio_compiled_hand": best_ratio,
            "ratio_prebuilt_hand": prebuilt_ratio,
            "row_by_row": {"rows": sample.height, "seconds": w, "us_per_row": per_row * 1e6,
                           "extrapolated_s": extrapolated},
            "speedup_compiled_vs_row_by_row": speedup,
        }
        c, h = timing["compiled"], timing["hand"]
        print(f"    compiled {c['median_s'] * 1000:.1f} ms, hand {h['median_s'] * 1000:.1f} ms, "
              f"prebuilt plan {timing['compiled-prebuilt']['median_s'] * 1000:.1f} ms, "
              f"row-by-row {w:.2f} s on {sample.height:,} rows", flush=True)
        lines.append(f"ratio {title}: compiled/hand = {ratio:.3f} (target <= {TARGET_VS_HAND}) "
                     f"{'PASS' if ratio <= TARGET_VS_HAND else 'MISS'} (medians of {args.runs}); best runs "
                     f"{best_ratio:.3f}; CPU seconds {cpu_ratio:.3f}; plan prebuilt {prebuilt_ratio:.3f}")
        lines.append(f"speed-up {title}: row-by-row/compiled = {speedup:,.0f}x (row-by-row "
                     f"{per_row * 1e6:.2f} us/row on {sample.height:,} rows, extrapolated to "
                     f"{frame.height:,} rows: {extrapolated:,.0f} s)")
    return lines


def bench_sql(args: argparse.Namespace, results: dict[str, Any]) -> list[str]:
    from workbench.demo import run_demo
    from workbench.settings import load_settings
    from workbench.stores import get_stores
    from workbench.workspace import Workspace

    home = Path(tempfile.mkdtemp(prefix="wb-bench-formulas-"))
    try:
        settings = load_settings(home=home, progress=False)
        t = time.perf_counter()
        run_demo(settings, orgs=["acme"], days=args.days, progress=False)
        demo_s = time.perf_counter() - t
        ws = Workspace(get_stores(settings), "acme")
        counts = ws.query("SELECT (SELECT count() FROM gold.performance_daily) AS perf, "
                          "(SELECT count() FROM gold.campaign_daily) AS campaign, "
                          "(SELECT min(date) FROM gold.performance_daily) AS first, "
                          "(SELECT max(date) FROM gold.performance_daily) AS last").row(0, named=True)
        print(f"demo: {args.days} days for acme in {demo_s:.1f} s; gold.performance_daily "
              f"{counts['perf']:,} rows, gold.campaign_daily {counts['campaign']:,} rows "
              f"({counts['first']} .. {counts['last']})", flush=True)
        start, end = counts["first"], counts["last"]

        def run(engine: str) -> pl.DataFrame:
            return ws.metrics(METRICS, by=BY, start=start, end=end, engine=engine)

        t = time.perf_counter()
        first = run("sql")
        cold_ms = (time.perf_counter() - t) * 1000
        same(first, run("polars"), "sql vs polars engine")
        for _ in range(args.warmup):
            run("sql")
            run("polars")
        times: dict[str, list[float]] = {"sql": [], "polars": []}
        for i in range(args.sql_runs):
            for engine in ("sql", "polars") if i % 2 == 0 else ("polars", "sql"):
                t = time.perf_counter()
                run(engine)
                times[engine].append((time.perf_counter() - t) * 1000)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    stats = {e: {"p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95), "n": len(v)}
             for e, v in times.items()}
    results["sql"] = {"days": args.days, "demo_seconds": demo_s, "gold_rows": counts["perf"],
                      "campaign_daily_rows": counts["campaign"], "start": str(start), "end": str(end),
                      "groups": first.height, "cold_ms": cold_ms, "stats": stats, "times_ms": times}
    s, p = stats["sql"], stats["polars"]
    return [f"sql latency ({len(METRICS)} metrics by {', '.join(BY)}, {args.days} days, "
            f"{counts['perf']:,} gold rows, {first.height} groups): p50 {s['p50_ms']:.1f} ms, "
            f"p95 {s['p95_ms']:.1f} ms (first call {cold_ms:.0f} ms)",
            f"polars engine latency: p50 {p['p50_ms']:.1f} ms, p95 {p['p95_ms']:.1f} ms",
            f"ratio sql/polars engine: p50 {s['p50_ms'] / p['p50_ms']:.2f}, "
            f"p95 {s['p95_ms'] / p['p95_ms']:.2f}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=None, help=f"in-memory gold rows (default {DEFAULT_ROWS:,})")
    ap.add_argument("--python-rows", type=int, default=None,
                    help="rows the row-by-row interpreter runs on (default 200,000)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs of compiled and hand (default 9)")
    ap.add_argument("--days", type=int, default=None, help="days of demo data for the SQL latency (default 365)")
    ap.add_argument("--sql-runs", type=int, default=None, help="timed metrics queries per engine (default 30)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed metrics queries per engine first")
    ap.add_argument("--quick", action="store_true",
                    help="200k rows, 20k row-by-row rows, 30 demo days, 3 runs, 5 SQL runs")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default bench/results/formulas.json for 10M rows, "
                         "else formulas-<rows>.json)")
    args = ap.parse_args(argv)
    defaults = ((200_000, 20_000, 3, 30, 5) if args.quick else (DEFAULT_ROWS, 200_000, 9, 365, 30))
    for name, value in zip(("rows", "python_rows", "runs", "days", "sql_runs"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.out is None:
        suffix = "" if args.rows == DEFAULT_ROWS else f"-{args.rows}"
        args.out = HERE / "results" / f"formulas{suffix}.json"
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "polars": pl.__version__,
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "load_before": os.getloadavg()[0]},
        "rows": args.rows, "python_rows": args.python_rows, "runs": args.runs,
    }
    lines = bench_in_memory(args, results)
    lines += bench_sql(args, results)
    lines.append(f"bind + plan of the 10-metric query: {results['build_ms_median']:.2f} ms "
                 f"(reads {', '.join(results['plan_tables'])})")
    table = [f"{'query':<48} {'compiled ms':>12} {'hand ms':>9} {'ratio':>6} {'prebuilt ms':>12} "
             f"{'row-by-row s':>13} {'speed-up':>9}"]
    for title, q in results["queries"].items():
        table.append(f"{title:<48} {q['timing']['compiled']['median_s'] * 1000:>12.1f} "
                     f"{q['timing']['hand']['median_s'] * 1000:>9.1f} {q['ratio_compiled_hand']:>6.3f} "
                     f"{q['timing']['compiled-prebuilt']['median_s'] * 1000:>12.1f} "
                     f"{q['row_by_row']['extrapolated_s']:>13,.0f} "
                     f"{q['speedup_compiled_vs_row_by_row']:>8,.0f}x")
    results["summary"] = table + lines
    print()
    print(f"{args.rows:,} rows in memory; row-by-row measured on {args.python_rows:,} rows and "
          "extrapolated linearly")
    print("\n".join(table))
    print()
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
