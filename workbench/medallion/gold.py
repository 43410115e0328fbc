"""Gold: business aggregates rebuilt from silver for the affected dates only.

An incremental run reads silver for the dates its batches touched and replaces exactly those
dates in gold (one filtered overwrite per table), so its cost follows the new data, not the
history. Rows are written sorted by (org_id, date) so the query engine skips most files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl
from pyiceberg.expressions import BooleanExpression

from workbench.lake.catalog import Lake
from workbench.lake.filters import all_of, eq, isin
from workbench.lake.spill import Spill
from workbench.medallion import fx
from workbench.lake.schemas import (
    GOLD_CAMPAIGN, GOLD_CRM, GOLD_PERFORMANCE, SILVER_CAMPAIGNS, SILVER_DEALS, SILVER_PERFORMANCE,
)

GOLD_PERF_GRAIN = ["org_id", "date", "platform", "account_id", "campaign_id", "ad_group_id", "ad_id"]
SUMS = ["spend", "spend_org", "impressions", "clicks", "conversions", "conversion_value",
        "conversion_value_org", "video_views"]


def _campaign_state(lake: Lake, org_id: str) -> pl.DataFrame:
    return (lake.scan(SILVER_CAMPAIGNS.name).filter(pl.col("org_id") == org_id)
            .select("platform", "account_id", "campaign_id",
                    pl.col("status").alias("campaign_status"),
                    pl.col("labels").alias("campaign_labels"), "objective", "budget_type",
                    pl.col("budget_amount").cast(pl.Float64), "start_date", "end_date")
            .unique(["platform", "account_id", "campaign_id"], keep="last").collect())


_MONEY = ("spend", "spend_org", "conversion_value", "conversion_value_org")
_as_float = [pl.col(c).cast(pl.Float64) for c in _MONEY]


def _date_filter(org_id: str, dates: list[dt.date]) -> BooleanExpression:
    return all_of(eq("org_id", org_id), isin("date", dates))


def build_performance(lake: Lake, org_id: str, org_currency: str, dates: Iterable[dt.date],
                      rates: pl.DataFrame) -> dict[str, int]:
    """Rebuild ``gold.performance_daily`` and ``gold.campaign_daily`` for ``dates``.

    Dates are aggregated a calendar month at a time (silver is partitioned by month, so each
    file is read once) and spilled, then each table's dates are replaced in one commit, so
    memory follows a month of data whatever the range. Budgets are converted to
    the organisation's currency with the rate of each day (``rates``: ``silver.fx_rates``).
    """
    days = sorted(set(dates))
    if not days:
        return {}
    campaigns = _campaign_state(lake, org_id)
    tmp = lake.settings.home / "tmp"
    with Spill(tmp, "gold-perf") as perf_spill, Spill(tmp, "gold-campaign") as camp_spill:
        for month_days in _by_month(days):
            perf, camp = _aggregate(lake, org_id, org_currency, month_days, campaigns, rates)
            perf_spill.add(lake.to_arrow(GOLD_PERFORMANCE.name, perf))
            camp_spill.add(lake.to_arrow(GOLD_CAMPAIGN.name, camp))
        return {
            GOLD_PERFORMANCE.name: lake.replace(GOLD_PERFORMANCE.name, _date_filter(org_id, days),
                                                perf_spill.parts),
            GOLD_CAMPAIGN.name: lake.replace(GOLD_CAMPAIGN.name, _date_filter(org_id, days),
                                             camp_spill.parts),
        }


def _by_month(days: list[dt.date]) -> list[list[dt.date]]:
    months: dict[tuple[int, int], list[dt.date]] = {}
    for d in days:
        months.setdefault((d.year, d.month), []).append(d)
    return list(months.values())


def _aggregate(lake: Lake, org_id: str, org_currency: str, days: list[dt.date],
               campaigns: pl.DataFrame, rates: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    # Money stays decimal until the sums are done: exact sums make a rebuild bit-for-bit
    # identical whatever order the rows arrive in (float sums are not).
    silver = (lake.scan(SILVER_PERFORMANCE.name)
              .filter((pl.col("org_id") == org_id) & pl.col("date").is_in(days)))
    perf = (silver.group_by(GOLD_PERF_GRAIN)
            .agg(*[pl.col(c).min() for c in ("account_name", "campaign_name", "ad_group_name",
                                              "ad_name", "currency", "org_currency")],
                 *[pl.col(c).sum() for c in SUMS], pl.col("reach").max(), pl.col("settled").all())
            .collect())
    perf = (perf.join(campaigns.select("platform", "account_id", "campaign_id", "campaign_status",
                                       "campaign_labels"),
                      on=["platform", "account_id", "campaign_id"], how="left")
            .sort("org_id", "date", "platform", "campaign_id"))
    rollup = (perf.group_by(["org_id", "date", "platform", "account_id", "campaign_id"])
              .agg(*[pl.col(c).min() for c in ("account_name", "campaign_name", "currency", "org_currency")],
                   *[pl.col(c).sum() for c in SUMS], pl.col("settled").all()))
    camp = rollup.join(campaigns, on=["platform", "account_id", "campaign_id"], how="left")
    camp = (fx.convert(camp, rates, org_currency, {"budget_amount": "budget_amount_org"})
            .drop("fx_rate", "fx_rate_date")
            .with_columns(_as_float).sort("org_id", "date", "platform", "campaign_id"))
    return perf.with_columns(_as_float), camp


def build_crm(lake: Lake, org_id: str, org_currency: str, dates: Iterable[dt.date]) -> dict[str, int]:
    """Rebuild ``gold.crm_attribution_daily`` for ``dates``: leads by creation date, wins by close date."""
    days = sorted(set(dates))
    if not days:
        return {}
    deals = (lake.scan(SILVER_DEALS.name).filter(pl.col("org_id") == org_id)
             .with_columns(pl.col("amount_org").cast(pl.Float64)).collect())
    names = (lake.scan(SILVER_CAMPAIGNS.name).filter(pl.col("org_id") == org_id)
             .select("platform", "campaign_id", pl.col("name").alias("campaign_name"))
             .unique(["platform", "campaign_id"], keep="last").collect())
    created = deals.select("org_id", pl.col("created_at").dt.date().alias("date"), "platform",
                           "campaign_id", pl.lit(1).alias("leads"), pl.lit(0).alias("deals_won"),
                           pl.col("amount_org").alias("pipeline_value"), pl.lit(0.0).alias("won_value"))
    won = deals.filter(pl.col("is_won") & pl.col("closed_at").is_not_null()).select(
        "org_id", pl.col("closed_at").dt.date().alias("date"), "platform", "campaign_id",
        pl.lit(0).alias("leads"), pl.lit(1).alias("deals_won"), pl.lit(0.0).alias("pipeline_value"),
        pl.col("amount_org").alias("won_value"))
    daily = (pl.concat([created, won]).filter(pl.col("date").is_in(days))
             .group_by(["org_id", "date", "platform", "campaign_id"], maintain_order=True)
             .agg(pl.col("leads").sum(), pl.col("deals_won").sum(),
                  pl.col("pipeline_value").fill_null(0).sum(), pl.col("won_value").fill_null(0).sum())
             .join(names, on=["platform", "campaign_id"], how="left")
             .with_columns(pl.lit(org_currency).alias("org_currency"))
             .sort("org_id", "date", "platform", "campaign_id", nulls_last=True))
    lake.overwrite(GOLD_CRM.name, daily, _date_filter(org_id, days))
    return {GOLD_CRM.name: daily.height}
