"""`workbench modules`: the installed plug-ins of every kind and whether they can run here."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from workbench.cli_common import Format, out, print_frame
from workbench.modules import KINDS, check_kind, modules_frame


def modules(kind: Annotated[str | None, typer.Option("--kind", help=f"Only one kind: {', '.join(KINDS)}.")] = None,
            fmt: Annotated[Format, typer.Option("--format", help="table, csv or json.")] = Format.table) -> None:
    """List the installed modules: connectors, rule actions, platform writers, notification channels,
    metric packs and optional back-ends, with version, origin (builtin or the entry point's
    distribution), capabilities and missing optional dependencies.

    Examples: `workbench modules`, `workbench modules --kind connector`, `workbench modules --format json`.
    """
    # an unknown kind raises a ValidationError naming the kinds: the CLI prints it as one line
    kind = None if kind is None else check_kind(kind)
    df = modules_frame(kind)
    if fmt is not Format.table:
        print_frame(df, fmt=fmt)
        return
    print_frame(df, title="Installed modules" + (f" ({kind})" if kind else ""), fmt=fmt)
    unavailable = [f"{k} {n}" for k, n in df.filter(~df["available"]).select("kind", "name").iter_rows()]
    # plug-in names are third-party text, not rich markup
    out.print(escape(f"{df.height} modules, {len(unavailable)} unavailable"
                     + (f": {', '.join(unavailable)}" if unavailable else "")), highlight=False)
