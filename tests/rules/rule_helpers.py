"""A small hand-computable gold dataset for rule tests (org acme, 2026-10-01 .. 2026-10-19).

    C1 meta "Alpha"  : spend 100/day, 2 conversions/day (CPA 50), 1000 impressions, 20 clicks
    C2 ttd  "Beta"   : spend 10/day, 1 conversion/day (CPA 10), 1000 impressions, 20 clicks;
                       clicks 5/day on 10-19 (CTR drop yesterday)
    C3 meta "Gamma"  : spend 50/day, 1 conversion/day (CPA 50), 1000 impressions/day until 10-18,
                       no row on 10-19 (zero delivery yesterday... as a 0-impression row)
Days from 10-17 on are not settled. Daily budgets: C1 80, C2 20, C3 60. globex has a copy of C1
with 100x the spend (it must never show up).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

AS_OF = dt.date(2026, 10, 20)
FIRST = dt.date(2026, 10, 1)
LAST = dt.date(2026, 10, 19)


def _rows() -> list[dict]:
    rows = []
    day = FIRST
    while day <= LAST:
        for org, cid, platform, name, spend, conv, budget in (
                ("acme", "C1", "meta", "Alpha", 100.0, 2.0, 80.0),
                ("acme", "C2", "ttd", "Beta", 10.0, 1.0, 20.0),
                ("acme", "C3", "meta", "Gamma", 50.0, 1.0, 60.0),
                ("globex", "C1", "meta", "Alpha", 10000.0, 2.0, 80.0)):
            impressions, clicks = 1000, 20
            if cid == "C2" and day == LAST:
                clicks = 5
            if cid == "C3" and day == LAST:
                spend, conv, impressions, clicks = 0.0, 0.0, 0, 0
            rows.append({"org_id": org, "date": day, "platform": platform, "account_id": f"A-{platform}",
                         "account_name": f"{platform} account", "campaign_id": cid, "campaign_name": name,
                         "currency": "USD", "org_currency": "USD", "spend": spend, "spend_org": spend,
                         "impressions": impressions, "clicks": clicks, "conversions": conv,
                         "conversion_value": conv * 40, "conversion_value_org": conv * 40, "video_views": None,
                         "campaign_status": "active", "objective": "conversions", "budget_type": "daily",
                         "budget_amount": budget, "budget_amount_org": budget,
                         "start_date": dt.date(2026, 9, 1), "end_date": dt.date(2026, 12, 31),
                         "settled": day < dt.date(2026, 10, 17)})
        day += dt.timedelta(days=1)
    return rows


def load(stores) -> None:
    """Write the dataset into gold.campaign_daily and gold.performance_daily (one ad per campaign)."""
    from workbench.lake.schemas import TABLES

    camp = pl.DataFrame(_rows(), infer_schema_length=None)
    stores.lake.append("gold.campaign_daily", camp.select(TABLES["gold.campaign_daily"].column_names))
    perf = camp.with_columns(ad_group_id=pl.col("campaign_id") + "-G", ad_group_name=pl.col("campaign_name") + " group",
                             ad_id=pl.col("campaign_id") + "-AD", ad_name=pl.col("campaign_name") + " ad",
                             reach=pl.lit(None, pl.Int64), campaign_labels=pl.lit(None, pl.List(pl.String)))
    stores.lake.append("gold.performance_daily", perf.select(TABLES["gold.performance_daily"].column_names))
