"""Rules: many ad-level rules evaluated in one scan, beside a straightforward per-entity Python loop.

1. An in-memory frame shaped like ``gold.performance_daily`` at the ad grain: ``--entities``
   ads x ``--days`` days, one row per ad and day, numpy-generated (3 platforms, 12 accounts,
   32 ads per campaign; non-active campaigns and some ads stop delivering, some ads start late,
   some ads' CTR halves over the last week, some convert nothing, some campaigns never report
   video views). It is written once to a Parquet file (one row group) that each contender's
   process reads.
2. ``--rules`` rules at level ``ad`` generated from 9 templates (CPA guardrail, ROAS floor, CTR
   drop period over period, zero delivery, spend cap, CVR floor, nested AND/OR/NOT, CPM spike,
   VTR floor) with random parameters, 4 scopes and the windows yesterday, last_7d, previous_7d,
   last_30d and lifetime, evaluated as of the day after the last day of data.
3. Contenders, each in a process of its own (peak memory = that process's maximum RSS from
   ``os.wait4``, plus the RSS increase over the loaded frame sampled every 10 ms):

   - ``engine``: ``compile_many`` (all rules) + ``plan.run_polars`` over the frame: one plan,
     one scan, one boolean column ``<rule>:matched`` per rule; ``--runs`` runs, each compiling
     cold (the parse cache cleared), the median reported;
   - ``per-rule``: ``compile_rule`` + ``plan.run_polars`` for each of ``--single-rules`` rules
     (what ``engine.matches`` does, one query per rule), extrapolated linearly to ``--rules``;
   - ``python``: per-entity daily lists (dict ad_id -> dates and one list per measure), then for
     each rule and entity the window sums (bisect + sum) and the condition evaluated by a Python
     function generated from the same template and parameters (not by the formula engine), on
     ``--python-rules`` rules spread over the set, extrapolated linearly to ``--rules``.

Checks (the script exits non-zero on a difference): the Python loop's matched entities equal
the engine's for each rule it ran, and so do the per-rule plans'.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.formulas import plan as planner
from workbench.formulas.catalog import Catalog
from workbench.formulas.packs import metric_packs
from workbench.formulas import parser as formula_parser
from workbench.rules.compile import MATCH, compile_many, compile_rule
from workbench.rules.definitions import parse_rule
from workbench.rules.model import Rule

HERE = Path(__file__).resolve().parent

GiB = 2**30
DEFAULTS = {"entities": 100_000, "days": 90, "rules": 1_000, "python_rules": 20, "single_rules": 10, "runs": 3}
QUICK = {"entities": 2_000, "days": 30, "rules": 100, "python_rules": 5, "single_rules": 3, "runs": 1}
AS_OF = dt.date(2026, 11, 25)  # the evaluation date: the data ends the day before
PLATFORMS = ("meta", "dv360", "ttd")
CURRENCIES = ("USD", "EUR", "GBP")
FX = np.array([1.0, 1.08, 1.27])
STATUSES = ("active", "paused", "archived")
ACCOUNTS = 12
AD_GROUPS_PER_CAMPAIGN = 8
ADS_PER_AD_GROUP = 4


# -- data ----------------------------------------------------------------------------------

def gold_frame(entities: int, days: int, seed: int = 11) -> pl.DataFrame:
    """``entities`` ads x ``days`` days shaped like gold.performance_daily, in date order."""
    rng = np.random.default_rng(seed)
    rows = entities * days
    ad = np.tile(np.arange(entities), days)  # sorted by date, like gold (org_id, date)
    day = np.repeat(np.arange(days), entities)
    ads_per_campaign = AD_GROUPS_PER_CAMPAIGN * ADS_PER_AD_GROUP
    a_campaign = np.arange(entities) // ads_per_campaign
    campaigns = int(a_campaign[-1]) + 1
    # campaigns: platform, account, status; paused and archived ones stopped in the last 30 days
    u = rng.random(campaigns)
    c_status = np.where(u < 0.75, 0, np.where(u < 0.9, 1, 2))
    c_stop = np.where(c_status == 0, days, rng.integers(max(days - 30, 1), days + 1, campaigns))
    c_no_video = np.arange(campaigns) % 5 == 0
    # ads: size, prices, rates, a late start or an early stop for some
    a_spend = rng.lognormal(3.0, 1.0, entities)
    a_cpm = rng.uniform(2.0, 15.0, entities)
    a_ctr = rng.uniform(0.002, 0.02, entities)
    a_cvr = rng.uniform(0.005, 0.08, entities)
    a_cvr[rng.random(entities) < 0.1] = 0.0
    a_start = np.where(rng.random(entities) < 0.1, rng.integers(0, days, entities), 0)
    a_stop = np.where(rng.random(entities) < 0.05, days - rng.integers(1, 6, entities), days)
    a_stop = np.minimum(a_stop, c_stop[a_campaign])
    a_drop = rng.random(entities) < 0.1  # CTR halves over the last 7 days
    a_spike = rng.random(entities) < 0.05  # CPM 2.5 times as high yesterday
    live = (day >= a_start[ad]) & (day < a_stop[ad])
    # not rounded to cents: sums of cents can equal a threshold in cents exactly, and which side
    # of it a float sum lands on depends on the order of the additions (engine vs Python loop)
    spend = a_spend[ad] * rng.lognormal(0.0, 0.3, rows)
    spend[~live] = 0.0
    cpm = a_cpm[ad] * rng.lognormal(0.0, 0.15, rows) * np.where(a_spike[ad] & (day == days - 1), 2.5, 1.0)
    impressions = (spend / cpm * 1000).astype(np.int64)
    del cpm
    ctr = a_ctr[ad] * np.where(a_drop[ad] & (day >= days - 7), 0.5, 1.0)
    clicks = rng.binomial(impressions, ctr)
    del ctr
    conversions = rng.binomial(clicks, a_cvr[ad]).astype(np.float64)
    conversion_value = np.round(conversions * rng.uniform(20.0, 150.0, rows), 2)
    video_views = rng.binomial(impressions, 0.25)
    no_video = c_no_video[a_campaign[ad]] | (rng.random(rows) < 0.2)
    a_platform = a_campaign % 3
    fx = FX[a_platform[ad]]
    del live

    def label(values: list[str], index: np.ndarray) -> pl.Series:
        return pl.Series(values).gather(pl.Series(index[ad]))

    ad_groups = (entities + ADS_PER_AD_GROUP - 1) // ADS_PER_AD_GROUP
    ads = np.arange(entities)
    epoch_day = (AS_OF - dt.timedelta(days=days) - dt.date(1970, 1, 1)).days
    frame = pl.DataFrame({
        "org_id": pl.Series(["acme"]).gather(np.zeros(rows, dtype=np.int64)),
        "date": pl.Series(day + epoch_day, dtype=pl.Int32).cast(pl.Date),
        "platform": label(list(PLATFORMS), a_platform),
        "account_id": label([f"act_{1000 + a}" for a in range(ACCOUNTS)], a_campaign % ACCOUNTS),
        "account_name": label([f"Account {a}" for a in range(ACCOUNTS)], a_campaign % ACCOUNTS),
        "campaign_id": label([f"cmp_{200000 + c}" for c in range(campaigns)], a_campaign),
        "campaign_name": label([f"Campaign {c} | Prospecting" for c in range(campaigns)], a_campaign),
        "ad_group_id": label([f"adg_{300000 + g}" for g in range(ad_groups)], ads // ADS_PER_AD_GROUP),
        "ad_group_name": label([f"Ad group {g}" for g in range(ad_groups)], ads // ADS_PER_AD_GROUP),
        "ad_id": label([f"ad_{1000000 + a}" for a in range(entities)], ads),
        "ad_name": label([f"Ad {a}" for a in range(entities)], ads),
        "currency": label(list(CURRENCIES), a_platform),
        "org_currency": pl.Series(["USD"]).gather(np.zeros(rows, dtype=np.int64)),
        "spend": spend,
        "spend_org": spend * fx,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
        "conversion_value": conversion_value,
        "conversion_value_org": conversion_value * fx,
        "video_views": video_views,
        "reach": impressions // 2,
        "campaign_status": label(list(STATUSES), c_status[a_campaign]),
        "settled": day < days - 3,
        "_no_video": no_video,
    })
    return frame.with_columns(
        pl.when(pl.col("_no_video")).then(None).otherwise(pl.col("video_views")).alias("video_views"),
    ).drop("_no_video")


# -- rules: templates with a formula condition and the same condition in plain Python ------
#
# A Python condition takes m(metric, window) -> the entity's value (None when undefined) and
# the rule's params, and follows the formulas' null rules: a division by zero is null, a
# comparison with null is null, AND / OR / NOT are three-valued; an entity matches when the
# condition is true.

def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    return lambda a, b: None if a is None or b is None else op(a, b)


GT, LT, GE, EQ = _cmp(lambda a, b: a > b), _cmp(lambda a, b: a < b), _cmp(lambda a, b: a >= b), \
    _cmp(lambda a, b: a == b)
MUL = _cmp(lambda a, b: a * b)


def AND(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def OR(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def NOT(a: Any) -> Any:
    return None if a is None else not a


Condition = Callable[[Callable[[str, str], Any], dict[str, float]], Any]
SHORT = ("last_7d", "last_30d")


def _money(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), 2)


def cpa_guardrail(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w, k = str(rng.choice(SHORT)), float(rng.choice([1.2, 1.3, 1.5]))
    params = {"target_cpa": _money(rng, 5, 60), "min_spend": _money(rng, 20, 400)}
    return (f"cpa[{w}] > {k} * target_cpa AND spend[{w}] > min_spend", params,
            lambda m, p: AND(GT(m("cpa", w), MUL(k, p["target_cpa"])), GT(m("spend", w), p["min_spend"])))


def roas_floor(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w = str(rng.choice(SHORT))
    params = {"min_roas": _money(rng, 0.5, 4), "min_spend": _money(rng, 20, 400)}
    return (f"roas[{w}] < min_roas AND spend[{w}] > min_spend", params,
            lambda m, p: AND(LT(m("roas", w), p["min_roas"]), GT(m("spend", w), p["min_spend"])))


def ctr_drop(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w = str(rng.choice(["yesterday", "last_7d"]))
    params = {"drop": _money(rng, 0.5, 0.9), "min_impressions": float(rng.integers(100, 5000))}
    return (f"ctr[{w}] < drop * ctr[previous_7d] AND impressions[{w}] > min_impressions", params,
            lambda m, p: AND(LT(m("ctr", w), MUL(p["drop"], m("ctr", "previous_7d"))),
                             GT(m("impressions", w), p["min_impressions"])))


def zero_delivery(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w = str(rng.choice(SHORT))
    params = {"min_impressions": float(rng.integers(0, 2000))}
    return (f"impressions[yesterday] = 0 AND impressions[{w}] > min_impressions", params,
            lambda m, p: AND(EQ(m("impressions", "yesterday"), 0), GT(m("impressions", w), p["min_impressions"])))


def spend_cap(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w = str(rng.choice(["lifetime", "last_30d"]))
    params = {"cap": _money(rng, 200, 4000)}
    return f"spend[{w}] > cap", params, lambda m, p: GT(m("spend", w), p["cap"])


def cvr_floor(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w = str(rng.choice(SHORT))
    params = {"min_cvr": round(float(rng.uniform(0.005, 0.05)), 4), "min_clicks": float(rng.integers(10, 200))}
    return (f"cvr[{w}] < min_cvr AND clicks[{w}] >= min_clicks", params,
            lambda m, p: AND(LT(m("cvr", w), p["min_cvr"]), GE(m("clicks", w), p["min_clicks"])))


def nested(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w = str(rng.choice(SHORT))
    params = {"target_cpa": _money(rng, 5, 60), "min_roas": _money(rng, 0.5, 4), "min_spend": _money(rng, 1, 40)}
    return (f"(cpa[{w}] > target_cpa OR roas[{w}] < min_roas) AND NOT (spend[yesterday] < min_spend)", params,
            lambda m, p: AND(OR(GT(m("cpa", w), p["target_cpa"]), LT(m("roas", w), p["min_roas"])),
                             NOT(LT(m("spend", "yesterday"), p["min_spend"]))))


def cpm_spike(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w, k = str(rng.choice(SHORT)), float(rng.choice([1.2, 1.5, 2.0]))
    params = {"min_impressions": float(rng.integers(100, 5000))}
    return (f"cpm[yesterday] > {k} * cpm[{w}] AND impressions[yesterday] > min_impressions", params,
            lambda m, p: AND(GT(m("cpm", "yesterday"), MUL(k, m("cpm", w))),
                             GT(m("impressions", "yesterday"), p["min_impressions"])))


def vtr_floor(rng: np.random.Generator) -> tuple[str, dict[str, float], Condition]:
    w = str(rng.choice(SHORT))
    params = {"min_vtr": round(float(rng.uniform(0.2, 0.3)), 4), "min_impressions": float(rng.integers(100, 5000))}
    return (f"vtr[{w}] < min_vtr AND impressions[{w}] > min_impressions", params,
            lambda m, p: AND(LT(m("vtr", w), p["min_vtr"]), GT(m("impressions", w), p["min_impressions"])))


TEMPLATES = (cpa_guardrail, roas_floor, ctr_drop, zero_delivery, spend_cap, cvr_floor, nested, cpm_spike,
             vtr_floor)
# scope text -> the same test on an ad's attributes (constant per ad in this data)
SCOPES: dict[str | None, Callable[[dict[str, str]], bool]] = {
    None: lambda e: True,
    "platform = 'meta'": lambda e: e["platform"] == "meta",
    "campaign_status = 'active'": lambda e: e["campaign_status"] == "active",
    "platform IN ('meta', 'ttd') AND campaign_status = 'active'":
        lambda e: e["platform"] in ("meta", "ttd") and e["campaign_status"] == "active",
}


@dataclass
class BenchRule:
    rule: Rule
    template: str
    condition: Condition
    scope: Callable[[dict[str, str]], bool]


def make_rules(n: int, seed: int = 3) -> list[BenchRule]:
    """``n`` ad-level rules, cycling through the templates, with random params and scopes."""
    rng = np.random.default_rng(seed)
    scopes = list(SCOPES)
    out = []
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        condition, params, fn = template(rng)
        scope = scopes[int(rng.integers(0, len(scopes)))]
        rule = parse_rule({"name": f"r{i:04d}_{template.__name__}", "level": "ad", "scope": scope,
                           "params": params, "condition": condition, "trigger": "every"})
        out.append(BenchRule(rule, template.__name__, fn, SCOPES[scope]))
    return out


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (20 of 1,000 rules cover all 9 templates)."""
    k = min(k, n)
    return sorted({i * n // k for i in range(k)})


# -- measuring -----------------------------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssPeak:
    """The largest RSS of this process while the block runs, sampled every 10 ms."""

    def __init__(self) -> None:
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssPeak:
        self.before = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    def report(self) -> dict[str, float]:
        return {"rss_before_gib": self.before / GiB, "rss_peak_gib": self.peak / GiB,
                "increase_gib": (self.peak - self.before) / GiB}


def clear_parse_cache() -> None:
    """Forget memoised formula parses (``parser._parse`` is an ``lru_cache``), if there are any."""
    cache_clear = getattr(getattr(formula_parser, "_parse", None), "cache_clear", None)
    if cache_clear is not None:
        cache_clear()


def _matched(frame: pl.DataFrame, column: str) -> list[str]:
    return frame.filter(pl.col(column).fill_null(False))["ad_id"].to_list()


# -- the contenders (each runs in a child process) ----------------------------------------

def child_engine(args: argparse.Namespace, frame: pl.DataFrame, rules: list[BenchRule]) -> dict[str, Any]:
    catalog = Catalog(metric_packs.definitions())
    lf = frame.lazy()
    runs = []
    with RssPeak() as mem:
        for _ in range(args.runs):
            clear_parse_cache()  # every run compiles cold, as a fresh process does
            t = time.perf_counter()
            compiled = compile_many(catalog, [r.rule for r in rules], AS_OF)
            t1 = time.perf_counter()
            out = planner.run_polars(compiled.plan, lambda table: lf)
            t2 = time.perf_counter()
            runs.append({"compile_s": t1 - t, "evaluate_s": t2 - t1, "total_s": t2 - t})
    labels = [compiled.label(r.rule) for r in rules]
    counts = out.select(pl.col(c).fill_null(False).sum() for c in labels).row(0)
    checked = sorted(set(spread(len(rules), args.python_rules)) | set(spread(len(rules), args.single_rules)))
    slots = sum(len(g.slots) for g in compiled.plan.groups)
    median = sorted(runs, key=lambda r: r["total_s"])[(len(runs) - 1) // 2]
    return {**median, "runs": runs, "min_total_s": min(r["total_s"] for r in runs),
            "slots": slots, "tables": [g.table for g in compiled.plan.groups], "entities_out": out.height,
            "columns_out": out.width, "scan": [str(compiled.plan.start), str(compiled.plan.end)],
            "matched": dict(zip([r.rule.name for r in rules], counts, strict=True)), "memory": mem.report(),
            "sets": {rules[i].rule.name: _matched(out, labels[i]) for i in checked}}


def child_per_rule(args: argparse.Namespace, frame: pl.DataFrame, rules: list[BenchRule]) -> dict[str, Any]:
    catalog = Catalog(metric_packs.definitions())
    lf = frame.lazy()
    sets, compile_s, evaluate_s = {}, 0.0, 0.0
    with RssPeak() as mem:
        for i in spread(len(rules), args.single_rules):
            t = time.perf_counter()
            compiled = compile_rule(catalog, rules[i].rule, AS_OF)
            t1 = time.perf_counter()
            out = planner.run_polars(compiled.plan, lambda table: lf)
            t2 = time.perf_counter()
            compile_s, evaluate_s = compile_s + t1 - t, evaluate_s + t2 - t1
            sets[rules[i].rule.name] = _matched(out, MATCH)
    n = len(sets)
    return {"rules_run": n, "compile_s": compile_s, "evaluate_s": evaluate_s,
            "per_rule_s": (compile_s + evaluate_s) / n, "extrapolated_s": (compile_s + evaluate_s) / n * len(rules),
            "memory": mem.report(), "sets": sets}


COLUMNS = {"spend": "spend_org", "impressions": "impressions", "clicks": "clicks", "conversions": "conversions",
           "conversion_value": "conversion_value_org", "video_views": "video_views"}
RATIOS = {"ctr": ("clicks", "impressions", 1), "cpa": ("spend", "conversions", 1),
          "roas": ("conversion_value", "spend", 1), "cvr": ("conversions", "clicks", 1),
          "cpm": ("spend", "impressions", 1000), "vtr": ("video_views", "impressions", 1)}
WINDOWS: dict[str, tuple[dt.date | None, dt.date]] = {
    "yesterday": (AS_OF - dt.timedelta(days=1), AS_OF - dt.timedelta(days=1)),
    "last_7d": (AS_OF - dt.timedelta(days=7), AS_OF - dt.timedelta(days=1)),
    "previous_7d": (AS_OF - dt.timedelta(days=14), AS_OF - dt.timedelta(days=8)),
    "last_30d": (AS_OF - dt.timedelta(days=30), AS_OF - dt.timedelta(days=1)),
    "lifetime": (None, AS_OF),
}


def build_entities(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """ad_id -> its attributes and, per day in date order, the date and each measure (lists)."""
    entities: dict[str, dict[str, Any]] = {}
    names = ["date", *COLUMNS.values()]
    columns = [frame[c].to_list() for c in ["ad_id", "platform", "campaign_status", *names]]
    for ad_id, platform_, status, *values in zip(*columns, strict=True):
        e = entities.get(ad_id)
        if e is None:
            e = entities[ad_id] = {"attrs": {"platform": platform_, "campaign_status": status},
                                   **{n: [] for n in names}}
        for name, value in zip(names, values, strict=True):
            e[name].append(value)
    return entities


def window_sum(e: dict[str, Any], column: str, window: str) -> Any:
    start, end = WINDOWS[window]
    dates = e["date"]
    i = 0 if start is None else bisect.bisect_left(dates, start)
    j = bisect.bisect_right(dates, end)
    values = e[column][i:j]
    if column == "video_views":  # may be unreported: a sum of only nulls is null
        present = [v for v in values if v is not None]
        return sum(present) if present else None
    return sum(values)


def metric(e: dict[str, Any], name: str, window: str) -> Any:
    if name in COLUMNS:
        return window_sum(e, COLUMNS[name], window)
    num, den, scale = RATIOS[name]
    a, b = metric(e, num, window), metric(e, den, window)
    if a is None or b is None or b == 0:
        return None
    return a / b * scale if scale != 1 else a / b


def child_python(args: argparse.Namespace, frame: pl.DataFrame, rules: list[BenchRule]) -> dict[str, Any]:
    with RssPeak() as mem:
        t = time.perf_counter()
        entities = build_entities(frame)
        build_s = time.perf_counter() - t
        sets: dict[str, list[str]] = {}
        per_rule: list[float] = []
        for i in spread(len(rules), args.python_rules):
            rule = rules[i]
            params = rule.rule.params
            t = time.perf_counter()
            hits = []
            for ad_id, e in entities.items():
                if not rule.scope(e["attrs"]):
                    continue
                if rule.condition(functools.partial(metric, e), params) is True:
                    hits.append(ad_id)
            per_rule.append(time.perf_counter() - t)
            sets[rule.rule.name] = hits
    loop_s = sum(per_rule)
    n = len(per_rule)
    return {"rules_run": n, "build_s": build_s, "loop_s": loop_s, "per_rule_s": loop_s / n,
            "per_rule_all_s": per_rule, "extrapolated_s": build_s + loop_s / n * len(rules),
            "memory": mem.report(), "sets": sets}


CHILDREN = {"engine": child_engine, "per-rule": child_per_rule, "python": child_python}


def run_child(args: argparse.Namespace, name: str, frame_path: Path, workdir: Path) -> dict[str, Any]:
    """Run one contender in its own process; its result plus its peak RSS and CPU seconds."""
    result_path = workdir / f"result-{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--frame", str(frame_path),
           "--result", str(result_path), "--entities", str(args.entities), "--days", str(args.days),
           "--rules", str(args.rules), "--python-rules", str(args.python_rules),
           "--single-rules", str(args.single_rules), "--runs", str(args.runs), "--seed", str(args.seed)]
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "WORKBENCH_PROGRESS": "false"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    log = proc.stdout.read() if proc.stdout else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not result_path.exists():
        raise SystemExit(f"contender {name} failed (exit {code}):\n{log[-4000:]}")
    result = json.loads(result_path.read_text())
    result.update(peak_gib=usage.ru_maxrss * 1024 / GiB, cpu_s=usage.ru_utime + usage.ru_stime,
                  process_wall_s=wall, load_before=load_before)
    return result


def child_main(args: argparse.Namespace) -> int:
    frame = pl.read_parquet(args.frame)  # one row group: one chunk per column, like the generated frame
    rules = make_rules(args.rules, args.seed)
    result = CHILDREN[args.child](args, frame, rules)
    result["frame_rss_gib"] = result["memory"]["rss_before_gib"]
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


# -- the report ----------------------------------------------------------------------------

def compare(name: str, a: dict[str, list[str]], b: dict[str, list[str]]) -> dict[str, Any]:
    """Per rule of ``a``: the same matched entities in ``b``?"""
    differ = {rule: {"only_engine": len(set(b[rule]) - set(a[rule])),
                     "only_other": len(set(a[rule]) - set(b[rule]))}
              for rule in a if set(a[rule]) != set(b[rule])}
    if differ:
        raise SystemExit(f"{name}: matched entities differ from the engine's: {differ}")
    return {"rules": len(a), "matched": {rule: len(v) for rule, v in a.items()}, "same": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entities", type=int, default=None, help=f"ads (default {DEFAULTS['entities']:,})")
    ap.add_argument("--days", type=int, default=None, help=f"days of history (default {DEFAULTS['days']})")
    ap.add_argument("--rules", type=int, default=None, help=f"rules at level ad (default {DEFAULTS['rules']:,})")
    ap.add_argument("--python-rules", type=int, default=None,
                    help=f"rules the Python loop runs, then extrapolated (default {DEFAULTS['python_rules']})")
    ap.add_argument("--single-rules", type=int, default=None,
                    help=f"rules run one plan each, then extrapolated (default {DEFAULTS['single_rules']})")
    ap.add_argument("--runs", type=int, default=None,
                    help=f"engine runs (compile + evaluate), the median is reported (default {DEFAULTS['runs']})")
    ap.add_argument("--seed", type=int, default=3, help="seed of the rule generator")
    ap.add_argument("--quick", action="store_true",
                    help="2,000 ads, 30 days, 100 rules, 5 Python-loop rules, 3 one-plan-per-rule rules, 1 run")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default bench/results/rules.json for the default sizes, "
                         "else rules-<entities>x<days>x<rules>.json)")
    ap.add_argument("--scratch", type=Path, default=None, help="directory for the frame file (default: a temp dir)")
    ap.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--frame", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.child:
        return child_main(args)
    if args.out is None:
        default = all(getattr(args, k) == v for k, v in DEFAULTS.items() if k in ("entities", "days", "rules"))
        suffix = "" if default else f"-{args.entities}x{args.days}x{args.rules}"
        args.out = HERE / "results" / f"rules{suffix}.json"

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "polars": pl.__version__,
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB, 1),
                    "load_before": os.getloadavg()[0]},
        "entities": args.entities, "days": args.days, "rules": args.rules, "as_of": str(AS_OF),
        "python_rules": args.python_rules, "single_rules": args.single_rules, "runs": args.runs,
        "seed": args.seed,
    }
    t = time.perf_counter()
    frame = gold_frame(args.entities, args.days)
    rules = make_rules(args.rules, args.seed)
    results["frame"] = {"rows": frame.height, "columns": frame.width, "gib": frame.estimated_size() / GiB,
                        "built_s": time.perf_counter() - t}
    results["rule_set"] = {
        "templates": {tp.__name__: sum(r.template == tp.__name__ for r in rules) for tp in TEMPLATES},
        "scopes": {str(sc): sum(r.rule.scope == sc for r in rules) for sc in SCOPES},
        "windows": sorted(WINDOWS), "example": rules[0].rule.model_dump(include={"name", "scope", "params",
                                                                                 "condition"})}
    print(f"frame: {frame.height:,} rows ({args.entities:,} ads x {args.days} days) x {frame.width} columns, "
          f"{results['frame']['gib']:.2f} GiB, built in {results['frame']['built_s']:.1f} s; "
          f"{len(rules):,} rules from {len(TEMPLATES)} templates, {len(SCOPES)} scopes", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-rules-", dir=args.scratch))
    try:
        frame_path = scratch / "frame.parquet"
        frame.write_parquet(frame_path, compression="lz4", row_group_size=frame.height)
        del frame
        got: dict[str, dict[str, Any]] = {}
        for name in CHILDREN:
            print(f"{name}: running in its own process...", flush=True)
            got[name] = run_child(args, name, frame_path, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    eng, one, py = got["engine"], got["per-rule"], got["python"]
    check_python = compare("python loop", py.pop("sets"), eng["sets"])
    check_per_rule = compare("per-rule plans", one.pop("sets"), eng["sets"])
    eng.pop("sets")
    ratio = py["extrapolated_s"] / eng["total_s"]
    ratio_per_rule = one["extrapolated_s"] / eng["total_s"]
    matched = sum(eng["matched"].values())
    results.update(engine=eng, per_rule=one, python=py,
                   checks={"python_vs_engine": check_python, "per_rule_vs_engine": check_per_rule},
                   ratio_python_engine=ratio, ratio_per_rule_engine=ratio_per_rule)
    n, rows = args.rules, args.entities * args.days
    lines = [
        f"rows {rows:,}, entities {args.entities:,}, days {args.days}, rules {n:,}; distinct aggregates "
        f"(slots) {eng['slots']} for {n:,} conditions; {matched:,} (rule, ad) matches",
        f"engine (compile_many + run_polars, one scan; median of {args.runs} runs): compile "
        f"{eng['compile_s']:.2f} s + evaluate {eng['evaluate_s']:.2f} s = {eng['total_s']:.2f} s (best run "
        f"{eng['min_total_s']:.2f} s); peak RSS {eng['peak_gib']:.2f} GiB "
        f"(RSS {eng['frame_rss_gib']:.2f} GiB with the frame loaded, +{eng['memory']['increase_gib']:.2f} GiB "
        f"while compiling and evaluating); CPU {eng['cpu_s']:.1f} s for the process",
        f"per-rule plans (compile_rule + run_polars, as engine.matches): {one['per_rule_s']:.2f} s/rule "
        f"on {one['rules_run']} rules (compile {one['compile_s'] / one['rules_run']:.3f} s/rule) -> "
        f"{one['extrapolated_s']:,.0f} s extrapolated to {n:,} rules; peak RSS {one['peak_gib']:.2f} GiB",
        f"python loop: per-entity lists built in {py['build_s']:.1f} s, {py['per_rule_s']:.2f} s/rule on "
        f"{py['rules_run']} rules -> {py['extrapolated_s']:,.0f} s extrapolated to {n:,} rules; peak RSS "
        f"{py['peak_gib']:.2f} GiB (+{py['memory']['increase_gib']:.2f} GiB over the frame)",
        f"check python loop = engine on {check_python['rules']} rules: PASS; per-rule plans = engine on "
        f"{check_per_rule['rules']} rules: PASS",
        f"ratio python/engine = {ratio:,.1f}x (python extrapolated from {py['rules_run']} rules)",
        f"ratio per-rule/engine = {ratio_per_rule:,.1f}x (per-rule extrapolated from {one['rules_run']} rules)",
    ]
    results["summary"] = lines
    print()
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
