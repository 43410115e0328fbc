"""Dashboard query latency on gold: the workbench's query engine beside DuckDB and Polars.

Builds ``gold.performance_daily`` with ``--rows`` rows through the workbench's own write path
(``Lake.to_arrow`` + ``Lake.append``: the lake's schema, partitioned by org and month, rows
sorted by (org_id, date)): several organisations, about two years of dates, three platforms,
dozens of campaigns each. Then times one dashboard query, an organisation's last 30 days
grouped by platform and campaign (sums of spend_org, impressions, clicks, conversions):

- ``workbench``: ``ChdbWarehouse(lake).query(sql, params, org=...)``, the path notebooks and
  dashboards use (SQL checked and scoped to the organisation, one chDB connection per process,
  ``icebergLocal`` over the table's current snapshot);
- ``workbench-trusted``: the same with ``trusted=True`` (no SQL checks), to show their cost;
- ``duckdb``: ``read_parquet`` over the table's current data files, one connection kept open;
- ``polars``: ``scan_parquet`` over the same files.

Each repetition draws an (organisation, 30-day window) pair; every engine runs the same pairs,
interleaved, after ``--warmup`` untimed runs. Prints p50/p95 per engine and the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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
from urllib.parse import unquote, urlparse

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
PLATFORMS = ("meta", "dv360", "ttd")
CURRENCIES = ("USD", "EUR", "GBP")
LAST_DAY = dt.date(2026, 10, 31)
SQL = """
SELECT platform, campaign_id, sum(spend_org) AS spend_org, sum(impressions) AS impressions,
       sum(clicks) AS clicks, sum(conversions) AS conversions
FROM gold.performance_daily
WHERE date >= {start:Date} AND date <= {end:Date}
GROUP BY platform, campaign_id
ORDER BY platform, campaign_id
"""


def gold_rows(rows: int, orgs: int, days: int, campaigns: int, seed: int = 11) -> pl.DataFrame:
    """``rows`` gold rows sorted by (org_id, date): each org and day has the same number of ad
    rows, spread over ``campaigns`` campaigns per org (a third per platform)."""
    per_org = -(-rows // orgs)
    per_day = max(1, -(-per_org // days))
    rng = np.random.default_rng(seed)
    i = np.arange(rows)
    org, within = i // per_org, i % per_org
    day, slot = within // per_day, within % per_day
    campaign = slot % campaigns
    ad_group = slot % (campaigns * 4)
    spend = np.round(rng.lognormal(3, 1, rows), 2)
    impressions = (spend / rng.uniform(2, 15, rows) * 1000).astype(np.int64)
    clicks = rng.binomial(impressions, 0.01)
    conversions = rng.binomial(clicks, 0.03).astype(np.float64)
    fx = rng.uniform(0.9, 1.3, rows)
    first = LAST_DAY - dt.timedelta(days=days - 1)
    df = pl.DataFrame({"org": org, "day": day, "campaign": campaign, "ad_group": ad_group,
                       "ad": slot, "spend": spend, "impressions": impressions, "clicks": clicks,
                       "conversions": conversions, "fx": fx})
    platform_ = pl.lit(pl.Series(PLATFORMS)).gather(pl.col("campaign") % 3)
    account = pl.col("campaign") % 6
    return df.select(
        pl.format("org-{}", pl.col("org")).alias("org_id"),
        (pl.lit(first) + pl.duration(days=pl.col("day"))).alias("date"),
        platform_.alias("platform"),
        pl.format("acct-{}-{}", pl.col("org"), account).alias("account_id"),
        pl.format("Account {}", account).alias("account_name"),
        pl.format("cmp-{}-{}", pl.col("org"), pl.col("campaign")).alias("campaign_id"),
        pl.format("Campaign {} | Always-On", pl.col("campaign")).alias("campaign_name"),
        pl.format("adg-{}-{}", pl.col("org"), pl.col("ad_group")).alias("ad_group_id"),
        pl.format("Ad group {}", pl.col("ad_group")).alias("ad_group_name"),
        pl.format("ad-{}-{}", pl.col("org"), pl.col("ad")).alias("ad_id"),
        pl.format("Ad {}", pl.col("ad")).alias("ad_name"),
        pl.lit(pl.Series(CURRENCIES)).gather(account % 3).alias("currency"),
        pl.lit("USD").alias("org_currency"),
        "spend", (pl.col("spend") * pl.col("fx")).alias("spend_org"), "impressions", "clicks",
        "conversions", (pl.col("conversions") * 80.0).alias("conversion_value"),
        (pl.col("conversions") * 80.0 * pl.col("fx")).alias("conversion_value_org"),
        pl.lit(None, pl.Int64).alias("video_views"), (pl.col("impressions") // 2).alias("reach"),
        pl.lit("active").alias("campaign_status"),
        pl.lit(["evergreen"], pl.List(pl.String)).alias("campaign_labels"),
        pl.lit(True).alias("settled"),
    )


def build(home: Path, rows: int, orgs: int, days: int, campaigns: int) -> tuple[Any, list[str]]:
    """A lake holding the gold table; returns (lake, paths of its current data files)."""
    from workbench.lake.catalog import Lake
    from workbench.lake.schemas import GOLD_PERFORMANCE
    from workbench.settings import load_settings

    lake = Lake(load_settings(home=home, progress=False))
    lake.ensure_tables()
    df = gold_rows(rows, orgs, days, campaigns)
    lake.append(GOLD_PERFORMANCE.name, lake.to_arrow(GOLD_PERFORMANCE.name, df))
    table = lake.table(GOLD_PERFORMANCE.name, refresh=True)
    files = [unquote(urlparse(t.file.file_path).path) for t in table.scan().plan_files()]
    return lake, files


def engines(lake: Any, files: list[str]) -> dict[str, Callable[[str, dt.date, dt.date], Any]]:
    import duckdb

    from workbench.warehouse.engine import ChdbWarehouse

    wh = ChdbWarehouse(lake)
    con = duckdb.connect()
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE VIEW gold AS SELECT * FROM read_parquet([{listed}])")
    duck_sql = SQL.replace("gold.performance_daily", "gold").replace(
        "{start:Date}", "$start").replace("{end:Date}", "$end").replace(
        "WHERE", "WHERE org_id = $org AND")
    scan = pl.scan_parquet(files)

    def workbench(org: str, start: dt.date, end: dt.date) -> Any:
        return wh.query(SQL, {"start": start, "end": end}, org=org)

    def trusted(org: str, start: dt.date, end: dt.date) -> Any:
        return wh.query(SQL, {"start": start, "end": end}, org=org, trusted=True)

    def duck(org: str, start: dt.date, end: dt.date) -> Any:
        return pl.from_arrow(con.sql(duck_sql, params={"org": org, "start": start, "end": end})
                             .to_arrow_table())

    def polars(org: str, start: dt.date, end: dt.date) -> Any:
        return (scan.filter((pl.col("org_id") == org) & pl.col("date").is_between(start, end))
                .group_by("platform", "campaign_id")
                .agg(pl.col("spend_org").sum(), pl.col("impressions").sum(),
                     pl.col("clicks").sum(), pl.col("conversions").sum())
                .sort("platform", "campaign_id").collect())

    return {"workbench": workbench, "workbench-trusted": trusted, "duckdb": duck,
            "polars": polars}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--orgs", type=int, default=5)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--campaigns", type=int, default=60, help="campaigns per organisation")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default bench/results/queries.json for 10M rows, "
                         "else queries-<rows>.json)")
    args = ap.parse_args(argv)
    if args.out is None:
        suffix = "" if args.rows == 10_000_000 else f"-{args.rows}"
        args.out = HERE / "results" / f"queries{suffix}.json"
    home = Path(tempfile.mkdtemp(prefix="wb-bench-queries-"))
    try:
        start = time.perf_counter()
        lake, files = build(home, args.rows, args.orgs, args.days, args.campaigns)
        built = time.perf_counter() - start
        print(f"gold.performance_daily: {args.rows:,} rows in {len(files)} data files, "
              f"built in {built:.1f} s", flush=True)
        runners = engines(lake, files)
        rng = np.random.default_rng(3)
        cases = []
        for _ in range(args.warmup + args.repeat):
            org = f"org-{int(rng.integers(args.orgs))}"
            end = LAST_DAY - dt.timedelta(days=int(rng.integers(0, max(1, args.days - 30))))
            cases.append((org, end - dt.timedelta(days=29), end))
        # the first call of each engine, cold (the workbench opens its chDB connection here)
        cold = {}
        reference = None
        for name, run in runners.items():
            t = time.perf_counter()
            out = run(*cases[0])
            cold[name] = (time.perf_counter() - t) * 1000
            total = float(out["spend_org"].sum())
            reference = total if reference is None else reference
            if out.height == 0 or abs(total - reference) > 1e-6 * abs(reference):
                raise SystemExit(f"{name} disagrees: {out.height} groups, spend_org {total} "
                                 f"(reference {reference})")
        times: dict[str, list[float]] = {name: [] for name in runners}
        for i, case in enumerate(cases[1:]):
            for name, run in runners.items():
                t = time.perf_counter()
                run(*case)
                if i >= args.warmup - 1:
                    times[name].append((time.perf_counter() - t) * 1000)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    stats = {name: {"p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95),
                    "mean_ms": statistics.mean(v), "cold_ms": cold[name], "n": len(v)}
             for name, v in times.items()}
    lines = [f"{'engine':<18} {'p50 ms':>8} {'p95 ms':>8} {'cold ms':>8}"]
    lines += [f"{name:<18} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f} {s['cold_ms']:>8.1f}"
              for name, s in stats.items()]
    wb = stats["workbench"]
    for peer in ("duckdb", "polars", "workbench-trusted"):
        lines.append(f"ratio workbench/{peer}: p50 {wb['p50_ms'] / stats[peer]['p50_ms']:.2f}, "
                     f"p95 {wb['p95_ms'] / stats[peer]['p95_ms']:.2f}")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": args.rows, "orgs": args.orgs, "days": args.days, "campaigns": args.campaigns,
        "data_files": len(files), "build_seconds": built, "repeat": args.repeat,
        "query": SQL.strip(), "stats": stats, "summary": lines,
    }, indent=1))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
