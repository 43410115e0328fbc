"""HubSpot CRM v3 deals (search results): ``{id, properties{...}, createdAt, updatedAt}``.

All property values arrive as text. ``closed_at`` is ``closedate`` only for closed deals (on an
open deal HubSpot's ``closedate`` is the expected close date). Platform and campaign are
resolved later from the UTM properties.
"""

from __future__ import annotations

import polars as pl

from workbench.medallion.parsers.base import (
    BRONZE_KEEP,
    DEAL_SCHEMA,
    LINEAGE,
    ParseContext,
    ParseResult,
    conform,
    decode_objects,
    parse_number,
    parse_timestamp,
    split_numbers,
)

PROPERTIES = ("dealname", "amount", "deal_currency_code", "dealstage", "pipeline", "createdate",
              "closedate", "hs_is_closed", "hs_is_closed_won", "hs_analytics_source",
              "utm_source", "utm_medium", "utm_campaign", "hs_lastmodifieddate")
DEAL_DTYPE = pl.Struct({
    "id": pl.String(), "createdAt": pl.String(), "updatedAt": pl.String(),
    "archived": pl.String(),
    "properties": pl.Struct({name: pl.String() for name in PROPERTIES}),
})


def parse_deals(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """HubSpot deals -> ``DEAL_SCHEMA`` (crm ``hubspot``)."""
    decoded, bad_json = decode_objects(raw, DEAL_DTYPE, lambda lf: lf.select(
        *BRONZE_KEEP, pl.col("r").struct.field("id", "createdAt"),
        pl.col("r").struct.field("properties").struct.unnest()))
    # HubSpot sends a cleared property as "": a deal without an amount, not a bad number
    parsed = decoded.with_columns(pl.col("amount").replace("", None)).with_columns(
        parse_number(pl.col("amount")).alias("__amount"), pl.col("amount").alias("__raw___amount"))
    good, bad_numbers = split_numbers(parsed, {"__amount": "properties.amount"})
    is_closed = pl.col("hs_is_closed").str.to_lowercase() == "true"
    good = good.with_columns(
        pl.lit("hubspot").alias("crm"), pl.col("id").alias("deal_id"),
        pl.col("dealname").alias("name"), pl.col("__amount").alias("amount"),
        pl.col("deal_currency_code").alias("currency"), pl.col("dealstage").alias("stage"),
        is_closed.alias("is_closed"),
        (pl.col("hs_is_closed_won").str.to_lowercase() == "true").alias("is_won"),
        parse_timestamp(pl.coalesce("createdate", "createdAt")).alias("created_at"),
        pl.when(is_closed).then(parse_timestamp(pl.col("closedate"))).alias("closed_at"),
        pl.col("hs_analytics_source").alias("source"), **LINEAGE,
    )
    return ParseResult(conform(good, DEAL_SCHEMA), pl.concat([bad_json, bad_numbers]))
