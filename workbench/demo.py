"""The demo: two organisations with synthetic data from every platform, through the whole pipeline."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from workbench.oltp import repo
from workbench.settings import Settings
from workbench.stores import get_stores
from workbench.workspace import Workspace

DEMO_ORGS = {
    "acme": ("Acme Outdoor Co.", "USD", "America/New_York"),
    "globex": ("Globex Retail GmbH", "EUR", "Europe/Berlin"),
}


@dataclass
class DemoSummary:
    org: str
    currency: str
    layers: pl.DataFrame
    spend_by_platform: pl.DataFrame
    quarantine: pl.DataFrame
    seconds: float


def run_demo(settings: Settings | None = None, orgs: list[str] | None = None, days: int = 90,
             progress: bool = True) -> list[DemoSummary]:
    """Create the demo organisations, ingest ``days`` of synthetic data, run the pipeline.

    Safe to rerun: the same window is re-extracted and replaces what was there.
    """
    import time

    stores = get_stores(settings)
    summaries = []
    for slug in orgs or list(DEMO_ORGS):
        started = time.perf_counter()
        name, currency, tz = DEMO_ORGS.get(slug, (slug.title(), "USD", "UTC"))
        repo.create_org(stores.db, slug, name, currency, tz, exist_ok=True)
        ws = Workspace(stores, slug)
        end = dt.date.today()
        start = end - dt.timedelta(days=days - 1)
        ws.ingest("synthetic", start, end, progress=progress)
        ws.transform(progress=progress)
        summaries.append(summarise(ws, time.perf_counter() - started))
    return summaries


def summarise(ws: Workspace, seconds: float = 0.0) -> DemoSummary:
    """Rows per layer, spend per platform in the reporting currency, quarantine by reason."""
    layers = ws.query(
        "SELECT 'bronze' AS layer, count() AS rows FROM bronze.raw_records "
        "UNION ALL SELECT 'silver', count() FROM silver.ad_performance_daily "
        "UNION ALL SELECT 'silver (campaigns)', count() FROM silver.campaigns "
        "UNION ALL SELECT 'silver (deals)', count() FROM silver.crm_deals "
        "UNION ALL SELECT 'quarantine', count() FROM silver.quarantine "
        "UNION ALL SELECT 'gold', count() FROM gold.performance_daily")
    order = ["bronze", "silver", "silver (campaigns)", "silver (deals)", "quarantine", "gold"]
    layers = layers.with_columns(pl.col("layer").replace_strict(
        {k: i for i, k in enumerate(order)}, return_dtype=pl.Int64).alias("__o")).sort("__o").drop("__o")
    spend = ws.query(
        "SELECT platform, round(sum(spend_org), 2) AS spend, sum(impressions) AS impressions, "
        "sum(clicks) AS clicks, round(sum(conversions), 1) AS conversions "
        "FROM gold.performance_daily GROUP BY platform ORDER BY platform")
    quarantine = ws.query(
        "SELECT stream, `check`, count() AS rows FROM silver.quarantine "
        "GROUP BY stream, `check` ORDER BY rows DESC, stream")
    return DemoSummary(ws.org.id, ws.org.currency, layers, spend, quarantine, seconds)
