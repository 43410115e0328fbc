"""The Trade Desk payloads: MyReports rows and campaign objects.

Report rows are keyed by the report's column names; values are text. Conversions are the first
tracking tag's ``01 - Total Click + View Conversions`` and their value the tag's click plus
view-through conversion revenue; video views are ``Player Completed Views``; reach is not
reported (null). Campaign objects carry either a lifetime ``Budget`` or a ``DailyBudget``
(``{Amount, CurrencyCode}``, major units); they have no objective or labels in this API shape.
"""

from __future__ import annotations

import polars as pl

from workbench.medallion.parsers.base import (
    BRONZE_KEEP,
    CAMPAIGN_SCHEMA,
    LINEAGE,
    PERFORMANCE_SCHEMA,
    ParseContext,
    ParseResult,
    conform,
    decode_objects,
    parse_date,
    parse_number,
    parse_timestamp,
    split_numbers,
)

_TEXT = {
    "account_id": "Advertiser ID", "account_name": "Advertiser",
    "currency": "Advertiser Currency Code", "campaign_id": "Campaign ID",
    "campaign_name": "Campaign", "ad_group_id": "Ad Group ID", "ad_group_name": "Ad Group",
    "ad_id": "Creative ID", "ad_name": "Creative",
}
_NUMBERS = {
    "spend": "Advertiser Cost (Adv Currency)", "impressions": "Impressions",
    "clicks": "Clicks", "conversions": "01 - Total Click + View Conversions",
    "click_revenue": "01 - Click Conversion Revenue",
    "view_revenue": "01 - View Through Conversion Revenue",
    "video_views": "Player Completed Views",
}
REPORT_DTYPE = pl.Struct({name: pl.String() for name in ("Date", *_TEXT.values(),
                                                         *_NUMBERS.values())})
_MONEY = pl.Struct({"Amount": pl.String(), "CurrencyCode": pl.String()})
CAMPAIGN_DTYPE = pl.Struct({
    **{name: pl.String() for name in ("CampaignId", "AdvertiserId", "CampaignName",
                                      "Availability", "StartDate", "EndDate",
                                      "LastUpdatedAtUTC")},
    "Budget": _MONEY, "DailyBudget": _MONEY,
})
STATUS = {"available": "active", "paused": "paused", "archived": "archived"}
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d")


def parse_report(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """MyReports rows -> ``PERFORMANCE_SCHEMA`` (platform ``ttd``)."""
    r = pl.col("r")

    def transform(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.select(
            *BRONZE_KEEP,
            *(r.struct.field(column).alias(name) for name, column in _TEXT.items()),
            parse_date(r.struct.field("Date"), DATE_FORMATS).alias("date"),
            *(parse_number(r.struct.field(column)).alias(name)
              for name, column in _NUMBERS.items()),
            *(r.struct.field(column).alias(f"__raw_{name}") for name, column in _NUMBERS.items()),
        )

    decoded, bad_json = decode_objects(raw, REPORT_DTYPE, transform)
    good, bad_numbers = split_numbers(decoded, _NUMBERS)
    good = good.with_columns(
        pl.lit("ttd").alias("platform"), pl.col("conversions").fill_null(0.0),
        (pl.col("click_revenue").fill_null(0.0) + pl.col("view_revenue").fill_null(0.0))
        .alias("conversion_value"), **LINEAGE,
    )
    return ParseResult(conform(good, PERFORMANCE_SCHEMA), pl.concat([bad_json, bad_numbers]))


def parse_campaigns(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """TTD campaign objects -> ``CAMPAIGN_SCHEMA``."""
    decoded, bad_json = decode_objects(raw, CAMPAIGN_DTYPE, lambda lf: lf.select(
        *BRONZE_KEEP, pl.col("r").struct.unnest()))
    lifetime, daily = (pl.col(n).struct.field("Amount") for n in ("Budget", "DailyBudget"))
    parsed = decoded.with_columns(
        parse_number(lifetime).alias("__lifetime"), lifetime.alias("__raw___lifetime"),
        parse_number(daily).alias("__daily"), daily.alias("__raw___daily"),
    )
    good, bad_numbers = split_numbers(parsed, {"__lifetime": "Budget.Amount",
                                               "__daily": "DailyBudget.Amount"})
    good = good.with_columns(
        pl.lit("ttd").alias("platform"), pl.col("AdvertiserId").alias("account_id"),
        pl.col("CampaignId").alias("campaign_id"), pl.col("CampaignName").alias("name"),
        pl.col("Availability").str.to_lowercase().replace_strict(STATUS, default=None)
        .alias("status"),
        pl.when(pl.col("__lifetime").is_not_null()).then(pl.lit("lifetime"))
        .when(pl.col("__daily").is_not_null()).then(pl.lit("daily")).alias("budget_type"),
        pl.coalesce("__lifetime", "__daily").alias("budget_amount"),
        pl.coalesce(pl.col("Budget").struct.field("CurrencyCode"),
                    pl.col("DailyBudget").struct.field("CurrencyCode")).alias("currency"),
        parse_date(pl.col("StartDate")).alias("start_date"),
        parse_date(pl.col("EndDate")).alias("end_date"),
        pl.lit([], pl.List(pl.String())).alias("labels"),
        parse_timestamp(pl.col("LastUpdatedAtUTC")).alias("updated_at"), **LINEAGE,
    )
    return ParseResult(conform(good, CAMPAIGN_SCHEMA), pl.concat([bad_json, bad_numbers]))
