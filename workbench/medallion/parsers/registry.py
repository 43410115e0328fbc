"""The parser registry: bronze stream name -> (parser, silver target).

Stream names carry the payload format (``meta.ad_insights_daily``), so one parser serves the
real connector and the synthetic one alike. Targets: ``performance`` (silver.ad_performance_daily),
``campaigns`` (silver.campaigns), ``deals`` (silver.crm_deals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from workbench.medallion.parsers import csv_rows, dv360, hubspot, meta, salesforce, ttd
from workbench.medallion.parsers.base import Parser

Target = Literal["performance", "campaigns", "deals"]


@dataclass(frozen=True)
class ParserSpec:
    stream: str
    parser: Parser
    target: Target


class ParserRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, ParserSpec] = {}

    def register(self, stream: str, parser: Parser, target: Target) -> None:
        self._specs[stream] = ParserSpec(stream, parser, target)

    def get(self, stream: str) -> ParserSpec:
        try:
            return self._specs[stream]
        except KeyError:
            raise KeyError(f"no silver parser for stream '{stream}'; known: "
                           f"{', '.join(sorted(self._specs))}") from None

    def streams(self) -> list[str]:
        return sorted(self._specs)


parsers = ParserRegistry()
parsers.register("meta.ad_insights_daily", meta.parse_insights, "performance")
parsers.register("meta.campaigns", meta.parse_campaigns, "campaigns")
parsers.register("dv360.report_daily", dv360.parse_report, "performance")
parsers.register("dv360.insertion_orders", dv360.parse_insertion_orders, "campaigns")
parsers.register("ttd.report_daily", ttd.parse_report, "performance")
parsers.register("ttd.campaigns", ttd.parse_campaigns, "campaigns")
parsers.register("hubspot.deals", hubspot.parse_deals, "deals")
parsers.register("salesforce.opportunities", salesforce.parse_opportunities, "deals")
parsers.register("csv.performance_daily", csv_rows.parse_performance, "performance")

__all__ = ["ParserRegistry", "ParserSpec", "parsers"]
