"""What formulas can name: base metrics and dimensions over gold, and derived metrics.

Base metrics and dimensions are the built-ins of ``data-contract.md`` and map to gold columns.
Derived metrics come from metric packs (YAML under ``rules/``) and from an organisation's own
definitions, which override the packs'. Only names listed here can become SQL identifiers.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from workbench.formulas.units import Unit

PERF = "gold.performance_daily"
CAMPAIGN = "gold.campaign_daily"
CRM = "gold.crm_attribution_daily"

# A family is a set of base metrics read from one of several tables; the planner picks the
# first table (coarsest first) that has every dimension the query needs.
FAMILY_TABLES: dict[str, tuple[str, ...]] = {
    "ads": (CAMPAIGN, PERF),
    "budget": (CAMPAIGN,),
    "crm": (CRM,),
    "reach": (PERF,),
}


@dataclass(frozen=True)
class BaseMetric:
    name: str
    column: str
    unit: Unit
    vtype: str  # value type of the column: "int" or "float"
    family: str
    description: str
    additive: bool = True
    nullable: bool = False  # True where platforms may not report it (SUM of only nulls is null)


@dataclass(frozen=True)
class Dimension:
    name: str
    column: str  # the gold column it reads (week and month read date)
    unit: Unit
    vtype: str
    tables: tuple[str, ...]
    description: str
    truncate: str | None = None  # "week" or "month": computed from the date


@dataclass(frozen=True)
class MetricDef:
    """A derived metric: a formula over other metrics, with what to show it as."""

    name: str
    formula: str
    description: str = ""
    unit: Unit | None = None  # declared; None -> inferred
    format: str | None = None
    origin: str = "pack:core"  # "pack:<name>" or "org"
    version: int | None = None
    author: str | None = None


_ALL = (PERF, CAMPAIGN, CRM)
_ADS = (PERF, CAMPAIGN)

BASE_METRICS: dict[str, BaseMetric] = {m.name: m for m in (
    BaseMetric("spend", "spend_org", Unit.MONEY, "float", "ads", "Cost, in the organisation's reporting currency."),
    BaseMetric("conversion_value", "conversion_value_org", Unit.MONEY, "float", "ads",
               "Value of attributed conversions, in the reporting currency."),
    BaseMetric("impressions", "impressions", Unit.COUNT, "int", "ads", "Ad impressions."),
    BaseMetric("clicks", "clicks", Unit.COUNT, "int", "ads", "Clicks."),
    BaseMetric("conversions", "conversions", Unit.COUNT, "float", "ads",
               "Attributed conversions (can be fractional)."),
    BaseMetric("video_views", "video_views", Unit.COUNT, "int", "ads", "Video views, where the platform reports them.",
               nullable=True),
    BaseMetric("reach", "reach", Unit.COUNT, "int", "reach",
               "Unique people reached: not additive, only at the grain the platform reported.", additive=False,
               nullable=True),
    BaseMetric("budget", "budget_amount_org", Unit.MONEY, "float", "budget",
               "Campaign budget amount per campaign-day row, in the reporting currency."),
    BaseMetric("leads", "leads", Unit.COUNT, "int", "crm", "CRM deals created, attributed to the campaign."),
    BaseMetric("deals_won", "deals_won", Unit.COUNT, "int", "crm", "CRM deals won, by close date."),
    BaseMetric("pipeline_value", "pipeline_value", Unit.MONEY, "float", "crm", "Amount of deals created."),
    BaseMetric("won_value", "won_value", Unit.MONEY, "float", "crm", "Amount of deals won."),
)}

DIMENSIONS: dict[str, Dimension] = {d.name: d for d in (
    Dimension("date", "date", Unit.DATE, "date", _ALL, "Reporting date in the account's time zone."),
    Dimension("week", "date", Unit.DATE, "date", _ALL, "Monday of the reporting date's week.", "week"),
    Dimension("month", "date", Unit.DATE, "date", _ALL, "First day of the reporting date's month.", "month"),
    Dimension("platform", "platform", Unit.STRING, "string", _ALL, "meta, dv360, ttd, or a CSV's platform."),
    Dimension("campaign_id", "campaign_id", Unit.STRING, "string", _ALL, "Platform campaign id."),
    Dimension("campaign_name", "campaign_name", Unit.STRING, "string", _ALL, "Campaign name."),
    Dimension("account_id", "account_id", Unit.STRING, "string", _ADS, "Ad account / advertiser id."),
    Dimension("account_name", "account_name", Unit.STRING, "string", _ADS, "Ad account / advertiser name."),
    Dimension("currency", "currency", Unit.STRING, "string", _ADS, "The account's currency."),
    Dimension("campaign_status", "campaign_status", Unit.STRING, "string", _ADS, "active, paused or archived."),
    Dimension("settled", "settled", Unit.BOOLEAN, "bool", _ADS,
              "The platform will not restate this day any more."),
    Dimension("objective", "objective", Unit.STRING, "string", (CAMPAIGN,), "Campaign objective."),
    Dimension("budget_type", "budget_type", Unit.STRING, "string", (CAMPAIGN,), "daily or lifetime."),
    Dimension("start_date", "start_date", Unit.DATE, "date", (CAMPAIGN,), "Campaign flight start."),
    Dimension("end_date", "end_date", Unit.DATE, "date", (CAMPAIGN,), "Campaign flight end."),
    Dimension("ad_group_id", "ad_group_id", Unit.STRING, "string", (PERF,), "Ad set / line item / ad group id."),
    Dimension("ad_group_name", "ad_group_name", Unit.STRING, "string", (PERF,), "Ad set / line item / ad group name."),
    Dimension("ad_id", "ad_id", Unit.STRING, "string", (PERF,), "Ad / creative id."),
    Dimension("ad_name", "ad_name", Unit.STRING, "string", (PERF,), "Ad / creative name."),
    Dimension("labels", "campaign_labels", Unit.STRING, "list", (PERF,),
              "The campaign's labels (a list): test one with HAS_LABEL('brand')."),
)}

FUNCTIONS = ("IF", "COALESCE", "DIVIDE", "ROUND", "ABS", "LEAST", "GREATEST", "LOG", "LN", "HAS_LABEL",
             "SUM", "AVG", "MIN", "MAX", "COUNT", "COUNT_DISTINCT")
AGGREGATES = frozenset({"SUM", "AVG", "MIN", "MAX", "COUNT", "COUNT_DISTINCT"})
RESERVED = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})


@dataclass
class Catalog:
    """Every name a formula of one organisation may use."""

    metrics: dict[str, MetricDef] = field(default_factory=dict)
    base: dict[str, BaseMetric] = field(default_factory=lambda: dict(BASE_METRICS))
    dimensions: dict[str, Dimension] = field(default_factory=lambda: dict(DIMENSIONS))

    def names(self) -> list[str]:
        return sorted({*self.base, *self.dimensions, *self.metrics})

    def suggest(self, name: str, pool: list[str] | None = None) -> tuple[str, ...]:
        """Close matches for a misspelt name (case-insensitive)."""
        candidates = pool if pool is not None else self.names()
        lowered = {c.lower(): c for c in candidates}
        return tuple(lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6))

    def with_metric(self, definition: MetricDef) -> Catalog:
        return Catalog({**self.metrics, definition.name: definition}, self.base, self.dimensions)

    def without_metric(self, name: str) -> Catalog:
        return Catalog({k: v for k, v in self.metrics.items() if k != name}, self.base, self.dimensions)
