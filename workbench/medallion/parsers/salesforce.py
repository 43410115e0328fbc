"""Salesforce Opportunity records from SOQL queries (``attributes``, ``Id``, ``Amount``...).

``Amount`` is a JSON number and ``IsClosed`` / ``IsWon`` booleans; they are decoded as text so
that a record with an unexpected type is quarantined rather than failing the batch.
``closed_at`` is ``CloseDate`` (midnight UTC) only for closed opportunities; UTM values come
from the custom fields ``UTM_Source__c``, ``UTM_Medium__c`` and ``UTM_Campaign__c``.
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

FIELDS = ("Id", "Name", "Amount", "CurrencyIsoCode", "StageName", "IsClosed", "IsWon",
          "CreatedDate", "CloseDate", "LeadSource", "UTM_Source__c", "UTM_Medium__c",
          "UTM_Campaign__c", "LastModifiedDate")
OPPORTUNITY_DTYPE = pl.Struct({name: pl.String() for name in FIELDS})


def parse_opportunities(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """Salesforce opportunities -> ``DEAL_SCHEMA`` (crm ``salesforce``)."""
    decoded, bad_json = decode_objects(raw, OPPORTUNITY_DTYPE, lambda lf: lf.select(
        *BRONZE_KEEP, pl.col("r").struct.unnest()))
    parsed = decoded.with_columns(
        parse_number(pl.col("Amount")).alias("__amount"), pl.col("Amount").alias("__raw___amount"))
    good, bad_numbers = split_numbers(parsed, {"__amount": "Amount"})
    is_closed = pl.col("IsClosed").str.to_lowercase() == "true"
    good = good.with_columns(
        pl.lit("salesforce").alias("crm"), pl.col("Id").alias("deal_id"),
        pl.col("Name").alias("name"), pl.col("__amount").alias("amount"),
        pl.col("CurrencyIsoCode").alias("currency"), pl.col("StageName").alias("stage"),
        is_closed.alias("is_closed"), (pl.col("IsWon").str.to_lowercase() == "true").alias("is_won"),
        parse_timestamp(pl.col("CreatedDate")).alias("created_at"),
        pl.when(is_closed).then(parse_timestamp(pl.col("CloseDate"))).alias("closed_at"),
        pl.col("LeadSource").alias("source"), pl.col("UTM_Source__c").alias("utm_source"),
        pl.col("UTM_Medium__c").alias("utm_medium"),
        pl.col("UTM_Campaign__c").alias("utm_campaign"), **LINEAGE,
    )
    return ParseResult(conform(good, DEAL_SCHEMA), pl.concat([bad_json, bad_numbers]))
