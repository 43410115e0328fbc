"""Iceberg schemas, partitioning and sort orders of every lake table (see data-contract.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform
from pyiceberg.types import (
    BooleanType, DateType, DecimalType, DoubleType, IcebergType, ListType, LongType, NestedField,
    StringType, TimestamptzType,
)

S, L, D, F, B, TS, DATE = (StringType(), LongType(), DecimalType(18, 6), DoubleType(),
                           BooleanType(), TimestamptzType(), DateType())
LIST_S = "list<string>"


@dataclass(frozen=True)
class TableDef:
    """One lake table: name, columns (in order), partition and sort columns."""

    name: str  # "namespace.table"
    columns: tuple[tuple[str, IcebergType | str], ...]
    partition: tuple[tuple[str, str], ...] = ()  # (column, identity|day|month)
    sort: tuple[str, ...] = ()
    org_scoped: bool = True
    doc: str = ""
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c for c, _ in self.columns))

    def schema(self) -> Schema:
        fields = []
        next_id = len(self.columns) + 1
        for i, (col, typ) in enumerate(self.columns, start=1):
            if typ == LIST_S:
                fields.append(NestedField(i, col, ListType(next_id, StringType(), element_required=False),
                                          required=False))
                next_id += 1
            else:
                assert not isinstance(typ, str)
                fields.append(NestedField(i, col, typ, required=False))
        return Schema(*fields)

    def partition_spec(self, schema: Schema) -> PartitionSpec:
        transforms: dict[str, Transform[Any, Any]] = {
            "identity": IdentityTransform(), "day": DayTransform(), "month": MonthTransform()}
        specs = []
        for i, (col, kind) in enumerate(self.partition):
            source = schema.find_field(col).field_id
            name = col if kind == "identity" else f"{col}_{kind}"
            specs.append(PartitionField(source, 1000 + i, transforms[kind], name))
        return PartitionSpec(*specs)

    def sort_order(self, schema: Schema) -> SortOrder:
        if not self.sort:
            return SortOrder()
        return SortOrder(*[SortField(schema.find_field(c).field_id, IdentityTransform()) for c in self.sort])

    def arrow_schema(self) -> pa.Schema:
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        return schema_to_pyarrow(self.schema(), include_field_ids=False)


LINEAGE = (("connector", S), ("connection_id", S), ("source_batch_id", S), ("extracted_at", TS),
           ("record_index", L))

BRONZE_RAW = TableDef(
    "bronze.raw_records",
    (("org_id", S), ("source", S), ("stream", S), ("connection_id", S), ("batch_id", S),
     ("extracted_at", TS), ("window_start", DATE), ("window_end", DATE), ("record_index", L),
     ("payload", S)),
    partition=(("org_id", "identity"), ("source", "identity"), ("extracted_at", "day")),
    doc="Raw records exactly as received, append-only.",
)

SILVER_PERFORMANCE = TableDef(
    "silver.ad_performance_daily",
    (("org_id", S), ("platform", S), ("date", DATE), ("account_id", S), ("account_name", S),
     ("campaign_id", S), ("campaign_name", S), ("ad_group_id", S), ("ad_group_name", S),
     ("ad_id", S), ("ad_name", S), ("currency", S), ("spend", D), ("impressions", L),
     ("clicks", L), ("conversions", F), ("conversion_value", D), ("video_views", L),
     ("reach", L), ("org_currency", S), ("fx_rate", F), ("fx_rate_date", DATE), ("spend_org", D),
     ("conversion_value_org", D), ("settled", B), *LINEAGE,
     # added after the first release: last, so evolved and new tables have one column order
     ("breakdown", S)),
    partition=(("org_id", "identity"), ("date", "month")),
    sort=("org_id", "date"),
    doc="Typed, canonical ad performance; grain (org_id, platform, account_id, campaign_id, ad_group_id, "
        "ad_id, date, breakdown); breakdown is null, or 'publisher_platform=instagram|age=25-34' when the "
        "connection asks the platform for breakdowns.",
)

SILVER_CAMPAIGNS = TableDef(
    "silver.campaigns",
    (("org_id", S), ("platform", S), ("account_id", S), ("campaign_id", S), ("name", S),
     ("status", S), ("objective", S), ("budget_type", S), ("budget_amount", D), ("currency", S),
     ("start_date", DATE), ("end_date", DATE), ("labels", LIST_S), ("updated_at", TS), *LINEAGE),
    partition=(("org_id", "identity"),),
    doc="Latest state per campaign.",
)

SILVER_DEALS = TableDef(
    "silver.crm_deals",
    (("org_id", S), ("crm", S), ("deal_id", S), ("name", S), ("amount", D), ("currency", S),
     ("amount_org", D), ("fx_rate", F), ("stage", S), ("is_closed", B), ("is_won", B),
     ("created_at", TS), ("closed_at", TS), ("source", S), ("utm_source", S), ("utm_medium", S),
     ("utm_campaign", S), ("platform", S), ("campaign_id", S), *LINEAGE),
    partition=(("org_id", "identity"),),
    doc="CRM deals with the ad platform and campaign resolved from UTM values (null when unresolved).",
)

SILVER_FX = TableDef(
    "silver.fx_rates",
    (("date", DATE), ("base", S), ("quote", S), ("rate", F), ("origin", S)),
    org_scoped=False,
    doc="Exchange rates: 1 base = rate quote.",
)

SILVER_QUARANTINE = TableDef(
    "silver.quarantine",
    (("org_id", S), ("source", S), ("stream", S), ("batch_id", S), ("record_index", L),
     ("payload", S), ("reason", S), ("check", S), ("quarantined_at", TS)),
    partition=(("org_id", "identity"), ("source", "identity")),
    doc="Records that could not be loaded, with a reason a person can act on.",
)

_MEASURES = (("spend", F), ("spend_org", F), ("impressions", L), ("clicks", L),
             ("conversions", F), ("conversion_value", F), ("conversion_value_org", F),
             ("video_views", L))

GOLD_PERFORMANCE = TableDef(
    "gold.performance_daily",
    (("org_id", S), ("date", DATE), ("platform", S), ("account_id", S), ("account_name", S),
     ("campaign_id", S), ("campaign_name", S), ("ad_group_id", S), ("ad_group_name", S),
     ("ad_id", S), ("ad_name", S), ("currency", S), ("org_currency", S), *_MEASURES,
     ("reach", L), ("campaign_status", S), ("campaign_labels", LIST_S), ("settled", B)),
    partition=(("org_id", "identity"), ("date", "month")),
    sort=("org_id", "date"),
    doc="Additive measures per ad and day in account and organisation currency.",
)

GOLD_CAMPAIGN = TableDef(
    "gold.campaign_daily",
    (("org_id", S), ("date", DATE), ("platform", S), ("account_id", S), ("account_name", S),
     ("campaign_id", S), ("campaign_name", S), ("currency", S), ("org_currency", S), *_MEASURES,
     ("campaign_status", S), ("objective", S), ("budget_type", S), ("budget_amount", F),
     ("budget_amount_org", F), ("start_date", DATE), ("end_date", DATE), ("settled", B)),
    partition=(("org_id", "identity"), ("date", "month")),
    sort=("org_id", "date"),
    doc="Measures rolled up per campaign and day, with budget and flight.",
)

GOLD_CRM = TableDef(
    "gold.crm_attribution_daily",
    (("org_id", S), ("date", DATE), ("platform", S), ("campaign_id", S), ("campaign_name", S),
     ("leads", L), ("deals_won", L), ("pipeline_value", F), ("won_value", F), ("org_currency", S)),
    partition=(("org_id", "identity"), ("date", "month")),
    sort=("org_id", "date"),
    doc="CRM outcomes per campaign and day (deals created = leads; won by close date), org currency.",
)

TABLES: dict[str, TableDef] = {t.name: t for t in (
    BRONZE_RAW, SILVER_PERFORMANCE, SILVER_CAMPAIGNS, SILVER_DEALS, SILVER_FX, SILVER_QUARANTINE,
    GOLD_PERFORMANCE, GOLD_CAMPAIGN, GOLD_CRM)}
