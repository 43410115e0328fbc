"""What every CLI module shares: consoles, common options, and how frames are printed."""

from __future__ import annotations

import datetime as dt
import sys
from enum import Enum
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
if not out.is_terminal:
    out.width = 200  # piped or captured: don't squeeze tables to 80 columns
err = Console(stderr=True, soft_wrap=True)
_DEBUG = {"on": False}

OrgOpt = Annotated[str, typer.Option("--org", help="Organisation slug, e.g. acme.")]
FromOpt = Annotated[dt.datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First date (YYYY-MM-DD).")]
ToOpt = Annotated[dt.datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last date (YYYY-MM-DD).")]


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def print_frame(df: pl.DataFrame, title: str | None = None, fmt: Format = Format.table) -> None:
    if fmt is Format.csv:
        sys.stdout.write(df.write_csv())
        return
    if fmt is Format.json:
        sys.stdout.write(df.write_json() + "\n")
        return
    # cells are data, not rich markup: "cpa[last_7d]" must print as written
    table = Table(title=escape(title) if title else None, title_justify="left")
    for name, dtype in df.schema.items():
        table.add_column(escape(name), justify="right" if dtype.is_numeric() else "left")
    for row in df.iter_rows():
        table.add_row(*["" if v is None else (f"{v:,.2f}" if isinstance(v, float) else
                                               f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else escape(str(v)))
                        for v in row])
    out.print(table)


def _date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


def operator_only(command: str) -> None:
    """Refuse ``command`` when the command line acts for a token (``WORKBENCH_TOKEN``): it reads
    or changes the whole workbench (users, keys, every organisation's outbox), which only its
    operator may."""
    from workbench.auth.context import OPERATOR_PROCESS
    from workbench.errors import PermissionDenied

    if not OPERATOR_PROCESS["on"]:
        raise PermissionDenied(f"`workbench {command}` acts on the whole workbench: run it as its operator, "
                               "without WORKBENCH_TOKEN")


def key_values(items: list[str] | None, option: str, form: str = "key=value") -> dict[str, str]:
    """``["a=1", "b=x=y"]`` as ``{"a": "1", "b": "x=y"}`` (keys stripped); a usage error naming
    ``option`` for an item without ``=``."""
    pairs: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{option} takes {form}, got '{item}'")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value
    return pairs
