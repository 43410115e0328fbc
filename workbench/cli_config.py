"""`workbench config kinds|list|show|history|diff|rollback|set|remove`: versioned configuration documents."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import polars as pl
import typer

from workbench.cli_common import Format, OrgOpt, out, print_frame

if TYPE_CHECKING:
    from workbench.config_service import WorkspaceConfigs

config_app = typer.Typer(help="Versioned configuration documents (connections, metrics, rules, budgets, schedules, "
                              "channels): `workbench config history rule cpa_guardrail --org acme`.",
                         no_args_is_help=True)

KindArg = Annotated[str, typer.Argument(help="Document kind: connection, metric, rule, budget, schedule or channel (`workbench config kinds`).")]
NameArg = Annotated[str, typer.Argument(help="Document name, e.g. cpa_guardrail.")]
CommentOpt = Annotated[str, typer.Option(help="Why it changed (kept in the history).")]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, csv or json.")]


def _configs(org: str) -> WorkspaceConfigs:
    import workbench
    from workbench.config_service import WorkspaceConfigs

    return WorkspaceConfigs(workbench.open(org))


def _when(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    return frame.with_columns(pl.col(column).dt.strftime("%Y-%m-%d %H:%M:%S")) if frame.height else frame


@config_app.command("kinds")
def kinds() -> None:
    """The kinds of configuration documents and what they hold. Example: `workbench config kinds`"""
    from workbench.config_service import KINDS

    print_frame(pl.DataFrame([{"kind": k, "description": spec.description} for k, spec in KINDS.items()],
                             schema={"kind": pl.String, "description": pl.String}))


@config_app.command("list")
def list_(kind: KindArg, org: OrgOpt, fmt: FormatOpt = Format.table) -> None:
    """The organisation's current documents of a kind. Example: `workbench config list budget --org acme`"""
    rows = [{"name": r.name, "version": r.version, "author": r.author, "updated_at": r.created_at,
             "comment": r.comment} for r in _configs(org).list(kind)]
    frame = pl.DataFrame(rows, schema={"name": pl.String, "version": pl.Int64, "author": pl.String,
                                       "updated_at": pl.Datetime("us", "UTC"), "comment": pl.String})
    print_frame(_when(frame, "updated_at"), f"{kind} documents of {org}", fmt=fmt)


@config_app.command("show")
def show(kind: KindArg, name: NameArg, org: OrgOpt,
         version: Annotated[int | None, typer.Option("--version", min=1, help="A past version (default: the current one).")] = None) -> None:
    """A document as YAML (secrets shown as ***); the output can be edited and saved with `set`.

    Examples: `workbench config show rule cpa_guardrail --org acme > rule.yaml`;
    `workbench config show metric blended_cpm --org acme --version 2`
    """
    from workbench.config_service import canonical_yaml

    row = _configs(org).show(kind, name, version)
    header = f"# {kind} {name} v{row.version} by {row.author}, {row.created_at:%Y-%m-%d %H:%M}" + \
        (f": {row.comment}" if row.comment else "")
    typer.echo(header)
    typer.echo(canonical_yaml(row.body) if row.body is not None else "# removed in this version", nl=False)


@config_app.command("history")
def history(kind: KindArg, name: NameArg, org: OrgOpt, fmt: FormatOpt = Format.table) -> None:
    """Every version: author, time, comment and the keys it changed. Example: `workbench config history rule cpa_guardrail --org acme`"""
    from workbench.config_service import changed_keys

    rows, previous = [], None
    for r in _configs(org).history(kind, name):
        changed = "(removed)" if r.body is None else ", ".join(c.path for c in changed_keys(previous, r.body))
        rows.append({"version": r.version, "created_at": r.created_at, "author": r.author, "comment": r.comment,
                     "changed": changed})
        previous = r.body
    frame = pl.DataFrame(rows, schema={"version": pl.Int64, "created_at": pl.Datetime("us", "UTC"),
                                       "author": pl.String, "comment": pl.String, "changed": pl.String})
    print_frame(_when(frame, "created_at"), f"history of {kind} {name}", fmt=fmt)


@config_app.command("diff")
def diff(kind: KindArg, name: NameArg, org: OrgOpt,
         from_: Annotated[int, typer.Option("--from", min=1, help="The older version.")],
         to: Annotated[int, typer.Option("--to", min=1, help="The newer version.")]) -> None:
    """A unified diff of two versions (canonical YAML), then the changed keys.

    Example: `workbench config diff rule cpa_guardrail --org acme --from 1 --to 3`
    """
    result = _configs(org).diff(kind, name, from_, to)
    if not result.changes:
        out.print(f"v{result.from_version} and v{result.to_version} of {kind} {name} are the same")
        return
    typer.echo(result.text, nl=False)
    typer.echo("changed: " + ", ".join(f"{c.path} ({c.change})" for c in result.changes))


@config_app.command("rollback")
def rollback(kind: KindArg, name: NameArg, org: OrgOpt,
             to: Annotated[int, typer.Option("--to", min=1, help="The version to return to.")],
             comment: CommentOpt = "") -> None:
    """Save a new version equal to an old one (validated again). Example: `workbench config rollback metric blended_cpm --org acme --to 1`"""
    row = _configs(org).rollback(kind, name, to, comment=comment)
    out.print(f"{kind} {name} v{row.version} saved: the document of v{to}")


@config_app.command("set")
def set_(kind: KindArg, name: NameArg,
         file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A YAML file with the document.")],
         org: OrgOpt, comment: CommentOpt = "") -> None:
    """Validate a YAML document and save it as the next version.

    Examples: `workbench config set budget q4-search budget.yaml --org acme --comment "Q4 plan"`;
    `workbench config set schedule nightly-rules schedule.yaml --org acme`
    """
    row = _configs(org).set(kind, name, file, comment=comment)
    out.print(f"saved {kind} {name} v{row.version}")


@config_app.command("remove")
def remove(kind: KindArg, name: NameArg, org: OrgOpt, comment: CommentOpt = "") -> None:
    """Remove a document (a version without a body; the history stays). Example: `workbench config remove budget q4-search --org acme`"""
    row = _configs(org).remove(kind, name, comment=comment)
    out.print(f"removed {kind} {name} (v{row.version})")
