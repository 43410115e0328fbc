"""`workbench connections add|list|test|sync|remove`: platform connections of an organisation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cli_common import Format, FromOpt, OrgOpt, ToOpt, _date, err, key_values, out, print_frame
from workbench.errors import ValidationError

connections_app = typer.Typer(
    help="Platform connections: `workbench connections add meta --org acme --setting account_ids=act_123`.",
    no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Connection name (default for add: the platform).")]


def _value(key: str, text: str) -> Any:
    """A setting's value: JSON when it parses as a list, object, number or boolean; a comma list
    for ``*_ids`` settings; text otherwise."""
    stripped = text.strip()
    try:
        value = json.loads(stripped)
        if isinstance(value, list | dict | bool | int | float):
            return value
    except json.JSONDecodeError:
        pass
    if key.endswith("_ids"):
        return [v.strip() for v in stripped.split(",") if v.strip()]
    return stripped


def _read_credentials(path: Path) -> dict[str, str]:
    """Credentials from a JSON object file, or KEY=value lines (``.env`` style)."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.lstrip().startswith("#"))
    if not isinstance(data, dict):
        raise ValidationError(f"{path} must hold a JSON object or KEY=value lines")
    return {str(k).strip(): str(v).strip() for k, v in data.items()}


@connections_app.command("add")
def add(org: OrgOpt,
        platform: Annotated[str, typer.Argument(help="Connector: meta, dv360, ttd, hubspot, salesforce, synthetic.")],
        name: Annotated[str | None, typer.Option(help="Connection name (default: the platform).")] = None,
        setting: Annotated[list[str] | None, typer.Option("--setting", "-s", help="Setting key=value, repeatable (account_ids=act_1,act_2; base_url=...).")] = None,
        credentials_file: Annotated[Path | None, typer.Option("--credentials-file", exists=True, dir_okay=False, help="JSON object or KEY=value lines with the credentials.")] = None,
        lookback_days: Annotated[int | None, typer.Option(min=0, help="Days re-read every run (default per platform).")] = None,
        update: Annotated[bool, typer.Option("--update", help="Change an existing connection (settings merge; credentials given replace).")] = False,
        test: Annotated[bool, typer.Option("--test/--no-test", help="List the accounts the credentials reach after saving.")] = True) -> None:
    """Add (or --update) a connection. Credentials come from --credentials-file or are prompted
    for (secrets hidden); they are stored encrypted and never printed.

    Examples: `workbench connections add meta --org acme -s account_ids=act_123,act_456`;
    `workbench connections add hubspot --org acme --credentials-file hubspot.json`;
    `workbench connections add meta --org acme --update` (prompts for a new token)
    """
    import workbench
    from workbench import connections

    ws = workbench.open(org)
    settings = {k: _value(k, v) for k, v in key_values(setting, "--setting").items()}
    creds = _read_credentials(credentials_file) if credentials_file else {}
    if sys.stdin.isatty():  # prompt for what the file did not give; Enter keeps a stored value
        for f in connections.credential_fields(platform):
            if f.name in creds:
                continue
            keep = update or not f.required
            value = typer.prompt(f.prompt + (" (Enter keeps it)" if update else "" if f.required else " (optional)"),
                                 hide_input=f.secret, default="" if keep else None, show_default=False)
            if value:
                creds[f.name] = value
    conn = ws.add_connection(platform, name, settings=settings, credentials=creds or None,
                             lookback_days=lookback_days, update=update)
    out.print(f"{'updated' if update else 'added'} connection {conn.name} ({conn.platform}, "
              f"look-back {conn.lookback_days} days)")
    if test:
        print_frame(ws.test_connection(conn.name), "accounts reached")


@connections_app.command("list")
def list_(org: OrgOpt,
          fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table) -> None:
    """The organisation's connections (credential names only, never values).

    Example: `workbench connections list --org acme`
    """
    import workbench

    print_frame(workbench.open(org).connections(), fmt=fmt)


@connections_app.command("test")
def test_(org: OrgOpt, name: NameArg) -> None:
    """Check the credentials and list the accounts they reach.

    Example: `workbench connections test meta --org acme`
    """
    import workbench

    frame = workbench.open(org).test_connection(name)
    print_frame(frame, f"{name}: {frame.height} account(s) reached")


@connections_app.command("sync")
def sync(org: OrgOpt,
         name: Annotated[list[str] | None, typer.Argument(help="Connections (default: every active one).")] = None,
         start: FromOpt = None, end: ToOpt = None,
         transform: Annotated[bool, typer.Option("--transform/--no-transform", help="Run bronze -> silver -> gold after.")] = True) -> None:
    """Ingest connections (new days plus the restatement look-back, or --from/--to), then transform.

    Examples: `workbench connections sync --org acme`; `workbench connections sync meta --org acme --from 2026-10-01 --to 2026-10-31`
    """
    import workbench

    result = workbench.open(org).sync(*(name or []), start=_date(start), end=_date(end), transform=transform)
    print_frame(result.frame(), "ingested")
    for gap in result.gaps:
        err.print(f"[yellow]gap:[/yellow] {gap}")
    if result.transform is not None:
        t = result.transform
        out.print(f"transformed {t.batches} batch(es): {t.rows_silver:,} rows to silver, "
                  f"{t.rows_quarantined:,} quarantined")


@connections_app.command("remove")
def remove(org: OrgOpt, name: NameArg,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False) -> None:
    """Delete a connection and its stored credentials (landed data stays in the lake).

    Example: `workbench connections remove meta --org acme --yes`
    """
    import workbench

    if not yes and not typer.confirm(f"remove connection {name} of {org} and its credentials?"):
        raise typer.Exit(1)
    workbench.open(org).remove_connection(name)
    out.print(f"removed connection {name}")
