"""Golden files and a small, hand-checkable gold dataset for the formula tests.

A golden file is a list of cases. Each case starts with ``### title``, then ``key: value``
lines (metrics, by, where, start, end), a ``---`` line, and the expected text. Run the tests
with ``UPDATE_GOLDEN=1`` to rewrite the expected parts, then review the diff.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


@dataclass
class Case:
    title: str
    fields: dict[str, str]
    expected: str

    @property
    def metrics(self) -> list[str]:
        from workbench.cli_metrics import split_top_level

        return split_top_level(self.fields["metrics"])

    @property
    def by(self) -> list[str]:
        return [d.strip() for d in self.fields.get("by", "").split(",") if d.strip()]

    @property
    def where(self) -> str | None:
        return self.fields.get("where") or None

    @property
    def window(self) -> tuple[dt.date | None, dt.date | None]:
        start, end = self.fields.get("start"), self.fields.get("end")
        return (dt.date.fromisoformat(start) if start else None, dt.date.fromisoformat(end) if end else None)


def read_cases(name: str) -> list[Case]:
    cases = []
    for block in (GOLDEN / name).read_text().split("\n### ")[1:]:
        head, _, expected = block.partition("\n---\n")
        title, *lines = head.split("\n")
        fields = {}
        for line in lines:
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        cases.append(Case(title.strip(), fields, expected.strip("\n")))
    return cases


def write_cases(name: str, cases: list[Case], actual: dict[str, str]) -> None:
    path = GOLDEN / name
    header = path.read_text().split("\n### ")[0]
    parts = [header.rstrip("\n") + "\n"]
    for case in cases:
        fields = "\n".join(f"{k}: {v}" for k, v in case.fields.items())
        parts.append(f"### {case.title}\n{fields}\n---\n{actual[case.title]}\n")
    path.write_text("\n".join(parts))


def frame_text(df: pl.DataFrame) -> str:
    """A frame as CSV with floats to 6 significant digits (stable across backends)."""
    def cell(v: object) -> str:
        if v is None:
            return "null"
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v)
    lines = [",".join(df.columns)]
    lines += [",".join(cell(v) for v in row) for row in df.iter_rows()]
    return "\n".join(lines)


D1, D2, D5, N3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 5), dt.date(2026, 11, 3)

# (org, date, platform, account, campaign_id, campaign_name, ad_group, ad, spend, impressions, clicks,
#  conversions, conversion_value, video_views)
PERF = [
    ("acme", D1, "meta", "A1", "C1", "Brand", "G1", "AD1", 100.0, 10000, 200, 10.0, 500.0, None),
    ("acme", D1, "meta", "A1", "C1", "Brand", "G1", "AD2", 50.0, 5000, 50, 0.0, 0.0, None),
    ("acme", D2, "meta", "A1", "C2", "Prospecting", "G2", "AD3", 200.0, 0, 0, 0.0, 0.0, None),
    ("acme", D1, "ttd", "T1", "C3", "Retarget", "G3", "AD4", 80.0, 8000, 40, 4.0, 400.0, 2000),
    ("acme", D2, "ttd", "T1", "C3", "Retarget", "G3", "AD4", 20.0, 2000, 10, 1.0, 100.0, 500),
    ("acme", N3, "dv360", "D1", "C4", "Video", "G4", "AD5", 300.0, 30000, 30, 3.0, 90.0, 15000),
    ("globex", D1, "meta", "A9", "C9", "Brand", "G9", "AD9", 999999.0, 1, 999999, 1.0, 1.0, 1),
]
BUDGETS = {"C1": ("daily", 200.0), "C2": ("daily", 100.0), "C3": ("lifetime", 1000.0), "C4": ("daily", 500.0),
           "C9": ("daily", 1.0)}
# (org, date, platform, campaign_id, campaign_name, leads, deals_won, pipeline_value, won_value)
CRM = [
    ("acme", D1, "meta", "C1", "Brand", 3, 1, 3000.0, 1200.0),
    ("acme", D2, "ttd", "C3", "Retarget", 1, 0, 500.0, 0.0),
    ("acme", D5, None, None, None, 2, 1, 800.0, 400.0),
    ("globex", D1, "meta", "C9", "Brand", 999, 999, 1.0, 999999.0),
]


def load_gold(stores) -> None:
    """Write the dataset above into the lake's gold tables (both organisations)."""
    from workbench.lake.schemas import TABLES

    cols = ["org_id", "date", "platform", "account_id", "campaign_id", "campaign_name", "ad_group_id", "ad_id",
            "spend_org", "impressions", "clicks", "conversions", "conversion_value_org", "video_views"]
    perf = pl.DataFrame(PERF, schema=cols, orient="row").with_columns(
        account_name=pl.col("account_id") + " account", ad_group_name=pl.col("ad_group_id") + " group",
        ad_name=pl.col("ad_id") + " ad", currency=pl.lit("USD"), org_currency=pl.lit("USD"),
        spend=pl.col("spend_org"), conversion_value=pl.col("conversion_value_org"),
        reach=pl.lit(None, pl.Int64), campaign_status=pl.lit("active"),
        campaign_labels=pl.lit(None, pl.List(pl.String)), settled=pl.col("date") < dt.date(2026, 11, 1))
    stores.lake.append("gold.performance_daily", perf.select(TABLES["gold.performance_daily"].column_names))
    keys = ["org_id", "date", "platform", "account_id", "account_name", "campaign_id", "campaign_name",
            "currency", "org_currency", "campaign_status", "settled"]
    measures = ["spend", "spend_org", "impressions", "clicks", "conversions", "conversion_value",
                "conversion_value_org", "video_views"]
    camp = perf.group_by(keys).agg([pl.col(m).sum() if m != "video_views" else pl.col(m).sum().cast(pl.Int64)
                                    for m in measures])
    camp = camp.with_columns(
        video_views=pl.when(pl.col("video_views") == 0).then(None).otherwise(pl.col("video_views")),
        objective=pl.lit("conversions"),
        budget_type=pl.col("campaign_id").replace_strict({k: v[0] for k, v in BUDGETS.items()}),
        budget_amount=pl.col("campaign_id").replace_strict({k: v[1] for k, v in BUDGETS.items()}),
        start_date=pl.lit(dt.date(2026, 9, 1)), end_date=pl.lit(dt.date(2026, 12, 31)),
    ).with_columns(budget_amount_org=pl.col("budget_amount"))
    stores.lake.append("gold.campaign_daily", camp.select(TABLES["gold.campaign_daily"].column_names))
    crm = pl.DataFrame(CRM, schema=["org_id", "date", "platform", "campaign_id", "campaign_name", "leads",
                                    "deals_won", "pipeline_value", "won_value"], orient="row")
    crm = crm.with_columns(org_currency=pl.lit("USD"))
    stores.lake.append("gold.crm_attribution_daily", crm.select(TABLES["gold.crm_attribution_daily"].column_names))
