"""`workbench usage` (daily usage totals of an organisation) and `workbench audit` (its newest audit events).

Both read the OLTP store only: the lake is not opened for a usage or audit report.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

import polars as pl
import typer

from workbench.cli_common import Format, FromOpt, OrgOpt, ToOpt, _date, out, print_frame

if TYPE_CHECKING:
    pass


class Metric(str, Enum):
    rows_ingested = "rows_ingested"
    api_calls = "api_calls"
    job_seconds = "job_seconds"
    notifications_sent = "notifications_sent"


COUNTS = ("rows_ingested", "api_calls", "notifications_sent")  # whole numbers; job_seconds keeps its decimals


def daily_table(daily: pl.DataFrame) -> pl.DataFrame:
    """Daily totals as one row per day and source with a column per metric (counts as integers)."""
    present = [m.value for m in Metric if m.value in set(daily["metric"])]
    # one row per (day, metric, source) already: "first" keeps a missing metric empty, not 0
    wide = daily.pivot(on="metric", index=["day", "source"], values="quantity", aggregate_function="first")
    return wide.select("day", "source", *[pl.col(m).round(0).cast(pl.Int64) if m in COUNTS else pl.col(m).round(2)
                                          for m in present]).sort("day", "source")


def summary_table(daily: pl.DataFrame) -> pl.DataFrame:
    """Per metric: the total, the days with usage, and the total per source (largest first)."""
    rows = []
    for metric in [m.value for m in Metric]:
        part = daily.filter(pl.col("metric") == metric)
        if part.is_empty():
            continue
        per_source = part.group_by("source").agg(pl.col("quantity").sum()).sort(["quantity", "source"],
                                                                                  descending=[True, False])
        shown = [f"{s or '-'} {_number(metric, q)}" for s, q in per_source.iter_rows()]
        rows.append({"metric": metric, "total": _number(metric, float(part["quantity"].sum())),
                     "days": part["day"].n_unique(), "by source": ", ".join(shown)})
    return pl.DataFrame(rows, schema={"metric": pl.String, "total": pl.String, "days": pl.Int64,
                                      "by source": pl.String})


def _number(metric: str, value: float) -> str:
    return f"{round(value):,}" if metric in COUNTS else f"{value:,.1f}"


def usage(org: OrgOpt, start: FromOpt = None, end: ToOpt = None,
          metric: Annotated[Metric | None, typer.Option(help="Only this metric.")] = None,
          fmt: Annotated[Format, typer.Option("--format", help="table (per day and a summary per metric), or csv / json (day, metric, source, quantity).")] = Format.table) -> None:
    """Usage of an organisation per day: rows ingested per source, API calls per platform, job
    seconds per job, notifications sent per channel (UTC days).

    Examples: `workbench usage --org acme`; `workbench usage --org acme --from 2026-11-01 --to 2026-11-30 --metric api_calls --format csv`
    """
    import workbench

    first, last = _date(start), _date(end)
    if first and last and first > last:
        raise typer.BadParameter(f"--from {first} is after --to {last}; swap them")
    daily = workbench.open(org).usage(first, last, metric.value if metric else None)  # checks audit.read
    if fmt is not Format.table:
        print_frame(daily, fmt=fmt)
        return
    span = f"{first or 'first'}..{last or 'last'}"
    if daily.is_empty():
        what = f"{metric.value} " if metric else ""
        out.print(f"no {what}usage recorded for '{org}' in {span}", highlight=False, markup=False)
        return
    print_frame(daily_table(daily), f"usage of {org} per UTC day, {span}")
    print_frame(summary_table(daily), "total per metric")


def audit(org: OrgOpt,
          action: Annotated[str | None, typer.Option(help="Only actions starting with this, e.g. action. or config.save.")] = None,
          limit: Annotated[int, typer.Option(min=1, max=100_000, help="How many of the newest events.")] = 50,
          fmt: Annotated[Format, typer.Option("--format", help="table, csv or json.")] = Format.table) -> None:
    """The organisation's newest audit events, newest first: when, who, what, on what, before and after.

    Examples: `workbench audit --org acme`; `workbench audit --org acme --action action. --limit 20 --format json`
    """
    import workbench

    events = workbench.open(org).audit(action, limit)  # checks audit.read
    if fmt is not Format.table:
        print_frame(events, fmt=fmt)
        return
    if events.is_empty():
        out.print(f"no audit events for '{org}'" + (f" with actions starting '{action}'" if action else ""),
                  highlight=False, markup=False)
        return
    shown = events.select(pl.col("at").dt.strftime("%Y-%m-%d %H:%M:%S").alias("at (UTC)"), "actor", "action",
                          pl.concat_str("target_kind", pl.lit(" "), "target_id").str.strip_chars().alias("target"),
                          "before", "after", "detail")
    print_frame(shown, f"audit events of {org}, newest first")
