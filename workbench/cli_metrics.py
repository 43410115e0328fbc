"""`workbench metrics` (evaluate) and `workbench metric define|list|show|history|remove`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import polars as pl
import typer

from workbench.cli_common import Format, FromOpt, OrgOpt, ToOpt, _date, out, print_frame

metric_app = typer.Typer(help="Metric definitions: `workbench metric define blended_cpm \"spend / impressions * 1000\" --org acme`.",
                         no_args_is_help=True)


class Engine(str, Enum):
    sql = "sql"
    polars = "polars"


def split_top_level(text: str) -> list[str]:
    """Split a comma list, keeping commas inside brackets and quotes: "spend,DIVIDE(a, b)"."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def metrics(org: OrgOpt,
            metrics_: Annotated[str, typer.Option("--metrics", "-m", help="Metric names or formulas, comma-separated.")],
            by: Annotated[str, typer.Option(help="Dimensions, comma-separated (e.g. platform,campaign_name).")] = "",
            where: Annotated[str | None, typer.Option(help="Row filter, e.g. \"platform IN ('meta', 'ttd')\".")] = None,
            start: FromOpt = None, end: ToOpt = None,
            engine: Annotated[Engine, typer.Option(help="Evaluate on the query engine (sql) or Polars.")] = Engine.sql,
            fmt: Annotated[Format, typer.Option("--format", help="table (formatted by unit), csv or json (raw values).")] = Format.table) -> None:
    """Evaluate metrics by dimensions for a date range (ratio of sums at the grain asked for).

    Examples: `workbench metrics --org acme --metrics spend,cpa,roas --by platform --from 2026-11-01 --to 2026-11-24`;
    `workbench metrics --org acme -m "spend,SUM(IF(platform = 'meta', spend, 0))" --where "campaign_status = 'active'"`
    """
    import workbench

    ws = workbench.open(org)
    names = split_top_level(metrics_)
    dims = [d.strip() for d in by.split(",") if d.strip()]
    frame = ws.metrics(names, by=dims, where=where, start=_date(start), end=_date(end), engine=engine.value,
                       formatted=fmt is Format.table)
    print_frame(frame, fmt=fmt)


@metric_app.command("define")
def define(name: Annotated[str, typer.Argument(help="Metric name (lower case, digits, _).")],
           formula: Annotated[str, typer.Argument(help="The formula, e.g. \"spend / impressions * 1000\".")],
           org: OrgOpt,
           description: Annotated[str, typer.Option(help="What the metric means.")] = "",
           unit: Annotated[str | None, typer.Option(help="money, count, ratio or percent (default: inferred).")] = None,
           format_: Annotated[str | None, typer.Option("--display", help="currency, integer, number, percent or multiple.")] = None,
           comment: Annotated[str, typer.Option(help="Why it changed (kept in the history).")] = "") -> None:
    """Validate and store the organisation's definition of a metric (a new version).

    Example: `workbench metric define blended_cpm "spend / impressions * 1000" --org acme --comment "for the Q4 deck"`
    """
    import workbench

    change = workbench.open(org).define_metric(name, formula, description=description, unit=unit,
                                               format=format_, comment=comment)
    out.print(f"{change.name} v{change.version} saved ({change.unit})")
    if change.dependents:
        out.print(f"metrics that depend on it and now change too: {', '.join(change.dependents)}")


@metric_app.command("remove")
def remove(name: str, org: OrgOpt, comment: Annotated[str, typer.Option(help="Why.")] = "") -> None:
    """Remove the organisation's definition (a metric pack's definition of the name returns).

    Example: `workbench metric remove blended_cpm --org acme`
    """
    import workbench

    change = workbench.open(org).remove_metric(name, comment=comment)
    back = f"; {change.now_from} applies again" if change.now_from else ""
    out.print(f"{change.name} removed (v{change.version}){back}")


@metric_app.command("list")
def list_(org: OrgOpt, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Every name formulas can use: base metrics, derived metrics, dimensions.

    Example: `workbench metric list --org acme`
    """
    import workbench

    print_frame(workbench.open(org).metric_catalog(), fmt=fmt)


@metric_app.command("show")
def show(name: Annotated[str, typer.Argument(help="A metric name or a formula.")], org: OrgOpt) -> None:
    """Formula, unit, dependency tree, dependents and generated SQL of a metric.

    Example: `workbench metric show roas --org acme`
    """
    import workbench

    out.print(str(workbench.open(org).explain(name)), highlight=False, markup=False)


@metric_app.command("history")
def history(name: str, org: OrgOpt, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Every version of the organisation's definition: author, time, comment, formula.

    Example: `workbench metric history blended_cpm --org acme`
    """
    import workbench

    frame = workbench.open(org).metric_history(name)
    print_frame(frame.with_columns(pl.col("created_at").dt.strftime("%Y-%m-%d %H:%M:%S")), fmt=fmt)
