"""Meta Marketing API payloads: Insights rows (level=ad, time_increment=1) and campaign objects.

Insights values arrive as strings; conversions are lists of ``{action_type, value}``. The
conversion action types counted are the connection setting ``conversion_action_types``
(default: the pixel purchase). Rows with no ``actions`` / ``action_values`` (Meta omits empty
lists) have zero conversions; rows without ``video_thruplay_watched_actions`` have null
video views.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from workbench.medallion.parsers.base import (
    CAMPAIGN_SCHEMA,
    LINEAGE,
    PERFORMANCE_SCHEMA,
    ParseContext,
    ParseResult,
    conform,
    decode_objects,
    parse_date,
    parse_timestamp,
    quarantine,
    split_numbers,
)

DEFAULT_CONVERSION_TYPES = ("offsite_conversion.fb_pixel_purchase",)
#: currencies whose Meta offset is 1 (Marketing API currency table): budgets are not in cents
ZERO_DECIMAL_CURRENCIES = ("CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG",
                           "TWD", "VND")

_ACTIONS = pl.List(pl.Struct({"action_type": pl.String(), "value": pl.String()}))
_TEXT = ("account_id", "account_name", "account_currency", "campaign_id", "campaign_name",
         "adset_id", "adset_name", "ad_id", "ad_name", "date_start", "spend", "impressions",
         "clicks", "reach")
#: Insights breakdowns a connection may ask for (``breakdowns`` setting); each row's values of
#: them form its ``breakdown`` (part of silver's key), e.g. "publisher_platform=instagram|age=25-34"
BREAKDOWNS = ("publisher_platform", "platform_position", "impression_device", "device_platform",
              "age", "gender", "country", "region")
INSIGHTS_DTYPE = pl.Struct({
    **{name: pl.String() for name in (*_TEXT, *BREAKDOWNS)},
    "actions": _ACTIONS, "action_values": _ACTIONS, "video_thruplay_watched_actions": _ACTIONS,
})
CAMPAIGN_DTYPE = pl.Struct({
    **{name: pl.String() for name in (
        "id", "account_id", "name", "status", "effective_status", "objective", "daily_budget",
        "lifetime_budget", "start_time", "stop_time", "updated_time", "account_currency")},
    "adlabels": pl.List(pl.Struct({"id": pl.String(), "name": pl.String()})),
})
_BRONZE = ("org_id", "source", "stream", "connection_id", "batch_id", "extracted_at",
           "record_index", "payload")
_NUMBERS = {"spend": "spend", "impressions": "impressions", "clicks": "clicks", "reach": "reach"}
_LISTS = {"conversions": "actions", "conversion_value": "action_values",
          "video_views": "video_thruplay_watched_actions"}
_STATUS = {"ACTIVE": "active", "PAUSED": "paused", "ARCHIVED": "archived", "DELETED": "archived"}


def _sum_values(actions: pl.Expr, types: Sequence[str] | None) -> pl.Expr:
    """Sum of the list's values (of ``types`` only, when given); NaN when a value is not a
    number, so one pass both sums and flags the row."""
    value = pl.element().struct.field("value")
    number: pl.Expr = pl.when(value.is_not_null()).then(
        value.cast(pl.Float64, strict=False).fill_null(float("nan")))
    if types is not None:
        number = number.filter(pl.element().struct.field("action_type").is_in(list(types)))
    return actions.list.eval(number).list.sum()


def _breakdown(row: pl.Expr) -> pl.Expr:
    """``name=value`` of the row's breakdown fields joined by ``|``; null without breakdowns."""
    parts = [pl.when(row.struct.field(b).is_not_null()).then(pl.format("{}={}", pl.lit(b), row.struct.field(b)))
             for b in BREAKDOWNS]
    joined = pl.concat_str(parts, separator="|", ignore_nulls=True)
    return pl.when(joined != "").then(joined)


def _first_bad_value(column: str) -> pl.Expr:
    value = pl.element().struct.field("value")
    return pl.col(column).list.eval(
        value.filter(value.is_not_null() & value.cast(pl.Float64, strict=False).is_null())
    ).list.first()


def parse_insights(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """Meta Insights rows -> ``PERFORMANCE_SCHEMA`` (platform ``meta``, account currency)."""
    types = tuple(ctx.settings.get("conversion_action_types", DEFAULT_CONVERSION_TYPES))
    r = pl.col("r")
    levels = (("account", "account"), ("campaign", "campaign"), ("adset", "ad_group"),
              ("ad", "ad"))

    def transform(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.select(
            *_BRONZE,
            *(r.struct.field(f"{n}_id").alias(f"{c}_id") for n, c in levels),
            *(r.struct.field(f"{n}_name").alias(f"{c}_name") for n, c in levels),
            r.struct.field("account_currency").alias("currency"),
            r.struct.field("date_start").str.to_date("%Y-%m-%d", strict=False).alias("date"),
            r.struct.field("spend").cast(pl.Float64, strict=False).alias("spend"),
            *(r.struct.field(n).cast(pl.Int64, strict=False).alias(n)
              for n in ("impressions", "clicks", "reach")),
            *(r.struct.field(n).alias(f"__raw_{n}") for n in _NUMBERS),
            _sum_values(r.struct.field("actions"), types).alias("conversions"),
            _sum_values(r.struct.field("action_values"), types).alias("conversion_value"),
            _sum_values(r.struct.field("video_thruplay_watched_actions"), None)
            .alias("video_views"),
            _breakdown(r).alias("breakdown"),
        ).with_columns(pl.any_horizontal(
            *(pl.col(f"__raw_{n}").is_not_null() & pl.col(n).is_null() for n in _NUMBERS),
            *(pl.col(n).is_nan() for n in _LISTS),
        ).fill_null(False).alias("__bad"))

    decoded, bad_json = decode_objects(raw, INSIGHTS_DTYPE, transform)
    flags = decoded["__bad"]
    good = decoded.filter(~flags) if flags.any() else decoded
    # An empty list sums to -0.0; report a plain zero.
    good = good.with_columns(
        *(pl.when(pl.col(n) == 0).then(0.0).otherwise(pl.col(n)).fill_null(0.0).alias(n)
          for n in ("conversions", "conversion_value")),
        pl.col("video_views").cast(pl.Int64), pl.lit("meta").alias("platform"), **LINEAGE,
    )
    return ParseResult(conform(good, PERFORMANCE_SCHEMA),
                       pl.concat([bad_json, _number_quarantine(decoded.filter(flags))]))


def _number_quarantine(rows: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows with a field that is not a number, naming the field and its value."""
    lists = rows.select(pl.col("payload").str.json_decode(INSIGHTS_DTYPE).struct.field(
        *_LISTS.values()))
    reasons = [
        pl.when(pl.col(f"__raw_{n}").is_not_null() & pl.col(n).is_null()).then(pl.format(
            "field '{}' is not a number: '{}'", pl.lit(n), pl.col(f"__raw_{n}")))
        for n in _NUMBERS
    ] + [
        pl.when(pl.col(target).is_nan()).then(pl.format(
            "field '{}' has a value that is not a number: '{}'", pl.lit(source),
            _first_bad_value(source)))
        for target, source in _LISTS.items()
    ]
    explained = pl.concat([rows, lists], how="horizontal")
    return quarantine(explained, pl.concat_str(reasons, separator="; ", ignore_nulls=True),
                      "not_a_number")


def parse_campaigns(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """Meta campaign objects -> ``CAMPAIGN_SCHEMA``; budgets from minor units to major units."""
    decoded, bad_json = decode_objects(raw, CAMPAIGN_DTYPE, lambda lf: lf.select(
        *_BRONZE, pl.col("r").struct.unnest()))
    daily = pl.col("daily_budget").cast(pl.Float64, strict=False)
    lifetime = pl.col("lifetime_budget").cast(pl.Float64, strict=False)
    minor = pl.when(pl.col("account_currency").str.to_uppercase()
                    .is_in(list(ZERO_DECIMAL_CURRENCIES))).then(1.0).otherwise(100.0)
    parsed = decoded.with_columns(
        daily.alias("__daily"), lifetime.alias("__lifetime"),
        pl.col("daily_budget").alias("__raw___daily"),
        pl.col("lifetime_budget").alias("__raw___lifetime"),
    )
    good, bad_numbers = split_numbers(parsed, {"__daily": "daily_budget",
                                               "__lifetime": "lifetime_budget"})
    good = good.with_columns(
        pl.lit("meta").alias("platform"), pl.col("id").alias("campaign_id"),
        pl.col("status").str.to_uppercase().replace_strict(_STATUS, default=None).alias("status"),
        pl.when(pl.col("__daily") > 0).then(pl.lit("daily"))
        .when(pl.col("__lifetime") > 0).then(pl.lit("lifetime")).alias("budget_type"),
        (pl.when(pl.col("__daily") > 0).then(pl.col("__daily"))
         .when(pl.col("__lifetime") > 0).then(pl.col("__lifetime")) / minor)
        .alias("budget_amount"),
        pl.col("account_currency").alias("currency"),
        parse_date(pl.col("start_time")).alias("start_date"),
        parse_date(pl.col("stop_time")).alias("end_date"),
        pl.col("adlabels").list.eval(pl.element().struct.field("name"))
        .fill_null(pl.lit([], pl.List(pl.String()))).alias("labels"),
        parse_timestamp(pl.col("updated_time")).alias("updated_at"),
        **LINEAGE,
    )
    return ParseResult(conform(good, CAMPAIGN_SCHEMA), pl.concat([bad_json, bad_numbers]))
