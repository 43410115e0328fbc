"""The `workbench` command line. Errors print one line and exit non-zero (``--debug`` for a traceback)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape

from workbench.cli_metrics import metric_app
from workbench.cli_metrics import metrics as metrics_command
from workbench.cli_notify import notify_app
from workbench.cli_rules import rules_app
from workbench.cli_connections import connections_app
from workbench.cli_users import auth_app, register_org_commands, tokens_app, users_app
from workbench.cli_users import login as login_command
from workbench.cli_config import config_app
from workbench.cli_modules import modules as modules_command
from workbench.cli_schedule import schedule_app
from workbench.cli_schedule import worker as worker_command
from workbench.cli_usage import audit as audit_command
from workbench.cli_usage import usage as usage_command
from workbench.cli_common import _DEBUG, key_values, operator_only, Format, FromOpt, OrgOpt, ToOpt, _date, err, out, print_frame
from workbench.errors import WorkbenchError

app = typer.Typer(help="Analytics workbench for advertising operations: ingest, transform, query.",
                  no_args_is_help=True, rich_markup_mode="markdown", pretty_exceptions_enable=False)
orgs_app = typer.Typer(help="Organisations: `workbench orgs add acme --name 'Acme' --currency USD`.",
                       no_args_is_help=True)
fx_app = typer.Typer(help="Exchange rates: `workbench fx load rates.csv`.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
app.add_typer(fx_app, name="fx")
app.add_typer(metric_app, name="metric")
app.command("metrics")(metrics_command)
app.add_typer(notify_app, name="notify")
app.add_typer(rules_app, name="rules")
app.add_typer(connections_app, name="connections")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(auth_app, name="auth")
app.command("login")(login_command)
register_org_commands(orgs_app)
app.command("modules")(modules_command)
app.add_typer(config_app, name="config")
app.add_typer(schedule_app, name="schedule")
app.command("worker")(worker_command)
app.command("usage")(usage_command)
app.command("audit")(audit_command)


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    import os

    from workbench.auth.context import OPERATOR_PROCESS

    _DEBUG["on"] = debug
    # whoever runs the command line can read the home (database, keys): the operator, unless a
    # token says who acts (WORKBENCH_TOKEN), as for a scheduler's runs
    OPERATOR_PROCESS["on"] = not os.environ.get("WORKBENCH_TOKEN")


@app.command()
def init() -> None:
    """Create or upgrade the stores under WORKBENCH_HOME (migrations, lake tables, default FX rates).

    Example: `workbench init`
    """
    from workbench.stores import init as init_stores

    operator_only("init")
    stores = init_stores()
    out.print(f"workbench ready in {stores.settings.home}")


@app.command()
def demo(org: Annotated[list[str] | None, typer.Option("--org", help="Demo organisation(s); default acme and globex.")] = None,
         days: Annotated[int, typer.Option(min=1, max=730, help="Days of synthetic history.")] = 90) -> None:
    """Create the demo organisations, generate synthetic data and run bronze -> silver -> gold.

    Examples: `workbench demo`, `workbench demo --org acme --days 30`. Safe to rerun.
    """
    from workbench.demo import run_demo

    operator_only("demo")
    for s in run_demo(orgs=org, days=days):
        out.rule(f"[bold]{s.org}[/bold] (reporting currency {s.currency}) - {s.seconds:.1f} s")
        print_frame(s.layers, "rows per layer")
        print_frame(s.spend_by_platform, f"spend per platform ({s.currency})")
        print_frame(s.quarantine, "quarantined records")
    out.print("Next: `workbench status --org acme`, `workbench query --org acme \"SELECT ...\"`, "
              "or open notebooks/quickstart.ipynb")


@app.command()
def ingest(org: OrgOpt,
           source: Annotated[str, typer.Option(help="Connector: synthetic, csv, ...")],
           start: FromOpt = None, end: ToOpt = None,
           file: Annotated[Path | None, typer.Option(help="CSV file (source csv).")] = None,
           map_: Annotated[list[str] | None, typer.Option("--map", help="CSV column mapping canonical=Header, repeatable.")] = None,
           connection: Annotated[str | None, typer.Option(help="Connection name (default: the source, or csv:<file name>).")] = None,
           currency: Annotated[str | None, typer.Option(help="Currency of a CSV without a currency column.")] = None,
           platform: Annotated[str | None, typer.Option(help="Platform name for a CSV without a platform column.")] = None) -> None:
    """Read a window from a source into bronze (one batch).

    Examples: `workbench ingest --org acme --source synthetic --from 2026-11-01 --to 2026-11-24`;
    `workbench ingest --org acme --source csv --file export.csv --map date=Day --map spend=Cost --currency EUR`
    """
    import workbench

    mapping = {k: v.strip() for k, v in key_values(map_, "--map", "canonical=Header").items()}
    settings = {k: v for k, v in {"currency": currency, "platform": platform}.items() if v}
    ws = workbench.open(org)
    result = ws.ingest(source, _date(start), _date(end), file=file, mapping=mapping or None,
                       connection=connection, settings=settings or None)
    streams = ", ".join(f"{k}: {v:,}" for k, v in sorted(result.streams.items())) or "nothing"
    out.print(f"landed {result.rows:,} records from {result.connection} for "
              f"{result.window.start}..{result.window.end} (batch {result.batch_id}): {streams}")


@app.command()
def transform(org: OrgOpt, start: FromOpt = None, end: ToOpt = None) -> None:
    """Bronze -> silver -> gold for new batches, or for every batch overlapping --from/--to.

    Examples: `workbench transform --org acme`; `workbench transform --org acme --from 2026-11-01 --to 2026-11-07`
    """
    import workbench

    r = workbench.open(org).transform(_date(start), _date(end))
    out.print(f"{r.batches} batch(es): {r.rows_in:,} records in, {r.rows_silver:,} to silver, "
              f"{r.rows_quarantined:,} quarantined; gold rows rebuilt: "
              + (", ".join(f"{k} {v:,}" for k, v in r.gold_rows.items()) or "none"))


@app.command()
def query(org: OrgOpt, sql: Annotated[str, typer.Argument(help="ClickHouse SQL over lake tables.")],
          param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Parameter name=value for {name:Type} placeholders.")] = None,
          fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table) -> None:
    """Run ClickHouse SQL over the organisation's rows (the organisation is bound and enforced).

    Example: `workbench query --org acme "SELECT platform, sum(spend_org) FROM gold.performance_daily WHERE date >= {d:Date} GROUP BY platform" -p d=2026-11-01`
    """
    import workbench

    params = key_values(param, "--param", "name=value")
    print_frame(workbench.open(org).query(sql, params), fmt=fmt)


@app.command()
def status(org: OrgOpt) -> None:
    """Tables and row counts, freshness per source, quarantine counts and the last runs.

    Example: `workbench status --org acme`
    """
    import workbench

    for title, frame in workbench.open(org).status().items():
        print_frame(frame, title)


@orgs_app.command("add")
def orgs_add(slug: str, name: Annotated[str, typer.Option(help="Display name.")],
             currency: Annotated[str, typer.Option(help="Reporting currency (ISO code).")] = "USD",
             timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC") -> None:
    """Create an organisation. Example: `workbench orgs add acme --name "Acme" --currency EUR --timezone Europe/Paris`"""
    from workbench.oltp import repo
    from workbench.stores import get_stores

    operator_only("orgs add")
    org = repo.create_org(get_stores().db, slug, name, currency.upper(), timezone)
    out.print(f"created organisation {org.id} ({org.currency}, {org.timezone})")


@orgs_app.command("list")
def orgs_list() -> None:
    """List organisations. Example: `workbench orgs list`"""
    from workbench.oltp import repo
    from workbench.stores import get_stores

    operator_only("orgs list")  # every organisation's name
    rows = [{"slug": o.id, "name": o.name, "currency": o.currency, "timezone": o.timezone}
            for o in repo.list_orgs(get_stores().db)]
    print_frame(pl.DataFrame(rows, schema=["slug", "name", "currency", "timezone"]))


@fx_app.command("load")
def fx_load(file: Path) -> None:
    """Load exchange rates (CSV: date,base,quote,rate); they replace rates of the same date and pair.

    Example: `workbench fx load ecb_rates.csv`, then `workbench transform --org acme --from ... --to ...`
    """
    from workbench.medallion.rates import load_rates_into_lake
    from workbench.stores import get_stores

    operator_only("fx load")  # rates are shared by every organisation
    n = load_rates_into_lake(get_stores().lake, file)
    out.print(f"loaded {n:,} rates from {file}; re-run `workbench transform --from --to` to apply them to past data")


def main() -> None:
    """Entry point of the `workbench` console script."""
    try:
        app(standalone_mode=False)
    except WorkbenchError as exc:
        if _DEBUG["on"]:
            raise
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors and anything unexpected
        import click

        # typer may bundle its own click: match usage errors by what they can do, not by class
        if isinstance(exc, click.exceptions.ClickException) or (hasattr(exc, "show") and hasattr(exc, "exit_code")):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit) or type(exc).__name__ == "Exit":
            sys.exit(getattr(exc, "exit_code", 0))
        if _DEBUG["on"]:
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))} (run with --debug for details)",
                  highlight=False)
        sys.exit(1)
