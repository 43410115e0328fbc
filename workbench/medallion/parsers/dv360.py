"""Display & Video 360 payloads: Bid Manager report rows and DV360 API insertion orders.

Report rows are CSV data rows as JSON objects keyed by the CSV header (footer rows are stripped
by the connector before landing). Values are text with thousands separators; dates look like
``2026/11/24``. Canonical levels: advertiser = account, insertion order = campaign, line item =
ad group, creative = ad. Conversion value is the CM360 (formerly DCM) post-click + post-view
revenue; video views are ``TrueView: Views`` (else ``Complete Views (Video)``); reach is not
reported (null).
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
    quarantine,
    split_numbers,
)

_TEXT = {
    "account_id": "Advertiser ID", "account_name": "Advertiser",
    "currency": "Advertiser Currency", "campaign_id": "Insertion Order ID",
    "campaign_name": "Insertion Order", "ad_group_id": "Line Item ID",
    "ad_group_name": "Line Item", "ad_id": "Creative ID", "ad_name": "Creative",
}
#: canonical measure -> the report columns it is read from (first present wins, or summed)
_NUMBERS = {
    "spend": "Media Cost (Advertiser Currency)", "impressions": "Impressions",
    "clicks": "Clicks", "conversions": "Total Conversions",
    "post_click_revenue": "CM360 Post-Click Revenue",
    "post_view_revenue": "CM360 Post-View Revenue",
    "video_views": "TrueView: Views", "complete_views": "Complete Views (Video)",
}
_ALIASES = {"CM360 Post-Click Revenue": "DCM Post-Click Revenue",
            "CM360 Post-View Revenue": "DCM Post-View Revenue"}
REPORT_DTYPE = pl.Struct({name: pl.String() for name in (
    "Date", *_TEXT.values(), *_NUMBERS.values(), *_ALIASES.values())})

_DATE = pl.Struct({"year": pl.Int64(), "month": pl.Int64(), "day": pl.Int64()})
IO_DTYPE = pl.Struct({
    **{name: pl.String() for name in (
        "advertiserId", "campaignId", "insertionOrderId", "displayName", "entityStatus",
        "updateTime", "currencyCode")},
    "kpi": pl.Struct({"kpiType": pl.String()}),
    "budget": pl.Struct({
        "budgetUnit": pl.String(),
        "budgetSegments": pl.List(pl.Struct({
            "budgetAmountMicros": pl.String(),
            "dateRange": pl.Struct({"startDate": _DATE, "endDate": _DATE}),
        })),
    }),
})
STATUS = {"ENTITY_STATUS_ACTIVE": "active", "ENTITY_STATUS_PAUSED": "paused",
          "ENTITY_STATUS_DRAFT": "paused", "ENTITY_STATUS_ARCHIVED": "archived",
          "ENTITY_STATUS_SCHEDULED_FOR_DELETION": "archived"}


def parse_report(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """Bid Manager report rows -> ``PERFORMANCE_SCHEMA`` (platform ``dv360``)."""
    r = pl.col("r")

    def field(name: str) -> pl.Expr:
        value = r.struct.field(name)
        return pl.coalesce(value, r.struct.field(_ALIASES[name])) if name in _ALIASES else value

    def transform(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.select(
            *BRONZE_KEEP,
            *(r.struct.field(column).alias(name) for name, column in _TEXT.items()),
            parse_date(r.struct.field("Date")).alias("date"),
            *(parse_number(field(column)).alias(name) for name, column in _NUMBERS.items()),
            *(field(column).alias(f"__raw_{name}") for name, column in _NUMBERS.items()),
        )

    decoded, bad_json = decode_objects(raw, REPORT_DTYPE, transform)
    good, bad_numbers = split_numbers(decoded, _NUMBERS)
    revenue = pl.col("post_click_revenue").fill_null(0.0) + pl.col("post_view_revenue").fill_null(
        0.0)
    good = good.with_columns(
        pl.lit("dv360").alias("platform"), pl.col("conversions").fill_null(0.0),
        revenue.alias("conversion_value"),
        pl.coalesce("video_views", "complete_views").alias("video_views"), **LINEAGE,
    )
    return ParseResult(conform(good, PERFORMANCE_SCHEMA), pl.concat([bad_json, bad_numbers]))


def _segment_dates(bound: str) -> pl.Expr:
    d = pl.element().struct.field("dateRange").struct.field(bound)
    return pl.date(d.struct.field("year"), d.struct.field("month"), d.struct.field("day"))


def parse_insertion_orders(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """DV360 insertion orders -> ``CAMPAIGN_SCHEMA``.

    The budget is the sum of the budget segments (micros -> major units), a ``lifetime`` budget
    over the flight from the first segment's start to the last segment's end. Budgets counted
    in impressions (``BUDGET_UNIT_IMPRESSIONS``) are not money: amount and type are null.
    """
    decoded, bad_json = decode_objects(raw, IO_DTYPE, lambda lf: lf.select(
        *BRONZE_KEEP, pl.col("r").struct.unnest()))
    segments = pl.col("budget").struct.field("budgetSegments")
    micros = pl.element().struct.field("budgetAmountMicros")
    parsed = decoded.with_columns(
        segments.list.eval(micros.cast(pl.Float64, strict=False)).list.sum().alias("__micros"),
        segments.list.eval(micros.filter(
            micros.is_not_null() & micros.cast(pl.Float64, strict=False).is_null()))
        .list.first().alias("__bad_micros"),
    )
    bad_rows = parsed.filter(pl.col("__bad_micros").is_not_null())
    bad_numbers = quarantine(bad_rows, pl.format(
        "field 'budget.budgetSegments[].budgetAmountMicros' is not a number: '{}'",
        pl.col("__bad_micros")), "not_a_number")
    unit = pl.col("budget").struct.field("budgetUnit").fill_null("BUDGET_UNIT_CURRENCY")
    in_money = unit == "BUDGET_UNIT_CURRENCY"
    has_budget = in_money & (segments.list.len() > 0)
    good = parsed.filter(pl.col("__bad_micros").is_null()).with_columns(
        pl.lit("dv360").alias("platform"), pl.col("advertiserId").alias("account_id"),
        pl.col("insertionOrderId").alias("campaign_id"), pl.col("displayName").alias("name"),
        pl.col("entityStatus").replace_strict(STATUS, default=None).alias("status"),
        pl.col("kpi").struct.field("kpiType").alias("objective"),
        pl.when(has_budget).then(pl.lit("lifetime")).alias("budget_type"),
        pl.when(has_budget).then(pl.col("__micros") / 1_000_000).alias("budget_amount"),
        pl.col("currencyCode").alias("currency"),
        segments.list.eval(_segment_dates("startDate")).list.min().alias("start_date"),
        segments.list.eval(_segment_dates("endDate")).list.max().alias("end_date"),
        pl.lit([], pl.List(pl.String())).alias("labels"),
        parse_timestamp(pl.col("updateTime")).alias("updated_at"), **LINEAGE,
    )
    return ParseResult(conform(good, CAMPAIGN_SCHEMA), pl.concat([bad_json, bad_numbers]))
