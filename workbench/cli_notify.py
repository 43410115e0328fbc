"""`workbench notify dispatch|status|requeue|inbox` and `workbench notify channel add|list|remove`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import polars as pl
import typer

from workbench.cli_common import Format, OrgOpt, operator_only, out, print_frame

if TYPE_CHECKING:
    from workbench.oltp.db import Oltp
    from workbench.settings import Settings

notify_app = typer.Typer(help="Notifications: `workbench notify dispatch`, `workbench notify status --org acme`.",
                         no_args_is_help=True)
channel_app = typer.Typer(help="Channel targets: `workbench notify channel add team-slack --org acme --type slack`.",
                          no_args_is_help=True)
notify_app.add_typer(channel_app, name="channel")


@notify_app.callback()
def _operator_only() -> None:
    operator_only("notify")  # the outbox of every organisation, read without a workspace


class ChannelType(str, Enum):
    slack = "slack"
    webhook = "webhook"


@dataclass
class _OltpStores:
    settings: Settings
    db: Oltp


def _stores() -> _OltpStores:
    # Only the OLTP store: a dispatcher run from cron every minute should not open the lake.
    from workbench.oltp.db import Oltp
    from workbench.settings import load_settings

    settings = load_settings()
    settings.ensure_home()
    db = Oltp(settings.oltp_url_resolved)
    db.migrate()
    return _OltpStores(settings, db)


def _author() -> str:
    import getpass
    import os

    return os.environ.get("WORKBENCH_USER") or getpass.getuser()


@notify_app.command("dispatch")
def dispatch(org: Annotated[str | None, typer.Option("--org", help="Only this organisation (default: all).")] = None,
             limit: Annotated[int, typer.Option(min=1, help="Most notifications to handle in this run.")] = 1000) -> None:
    """Deliver due notifications from the outbox (retries with back-off; safe to run in parallel).

    Examples: `workbench notify dispatch`; `workbench notify dispatch --org acme --limit 100`
    """
    from workbench.notify import dispatch as run

    out.print(str(run(_stores(), org_id=org, limit=limit)))


@notify_app.command("status")
def status(org: OrgOpt, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Notifications per channel and status, the oldest of each, and the last failures.

    Example: `workbench notify status --org acme`
    """
    from workbench import notify
    from workbench.oltp.repo import get_org

    stores = _stores()
    get_org(stores.db, org)
    frame = notify.status(stores.db, org)
    print_frame(frame.with_columns(pl.col("oldest", "next_attempt_at").dt.strftime("%Y-%m-%d %H:%M:%S")), fmt=fmt)
    if fmt is Format.table:
        bad = notify.notifications(stores.db, org, statuses=("failed", "dead"), limit=5)
        if bad:
            print_frame(pl.DataFrame([{"id": n.id, "channel": n.channel, "target": n.target, "status": n.status,
                                       "attempts": n.attempts, "error": n.last_error or ""} for n in bad]),
                        "last failures (`workbench notify requeue` once fixed)")


@notify_app.command("requeue")
def requeue(org: OrgOpt,
            status: Annotated[list[str] | None, typer.Option("--status", help="failed and/or dead (default both).")] = None) -> None:
    """Put failed or dead notifications back in the queue (attempts reset), after fixing the cause.

    Examples: `workbench notify requeue --org acme`; `workbench notify requeue --org acme --status dead`
    """
    from workbench import notify

    n = notify.requeue(_stores().db, org, statuses=status or ("failed", "dead"))
    out.print(f"requeued {n} notification(s); run `workbench notify dispatch` to send them")


@notify_app.command("inbox")
def inbox(org: OrgOpt, user: Annotated[str, typer.Option(help="The user whose inbox to show.")],
          unread: Annotated[bool, typer.Option("--unread", help="Only unread messages.")] = False,
          mark_read: Annotated[bool, typer.Option("--mark-read", help="Mark the shown messages read.")] = False,
          limit: Annotated[int, typer.Option(min=1)] = 50,
          fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """A user's in-app messages, newest first.

    Examples: `workbench notify inbox --org acme --user ana --unread`; `workbench notify inbox --org acme --user ana --mark-read`
    """
    from workbench import notify

    db = _stores().db
    messages = notify.inbox(db, org, user, unread=unread, limit=limit)
    frame = pl.DataFrame([{"id": m.id, "created_at": m.created_at.strftime("%Y-%m-%d %H:%M"),
                           "read": m.read_at is not None, "title": m.title, "body": m.body.strip()}
                          for m in messages],
                         schema={"id": pl.String, "created_at": pl.String, "read": pl.Boolean, "title": pl.String,
                                 "body": pl.String})
    print_frame(frame, f"inbox of {user} ({notify.unread_count(db, org, user)} unread)", fmt=fmt)
    if mark_read and messages:
        n = notify.mark_read(db, org, user, [m.id for m in messages])
        out.print(f"marked {n} message(s) read")


@channel_app.command("add")
def channel_add(name: Annotated[str, typer.Argument(help="Target name, e.g. team-slack.")], org: OrgOpt,
                type_: Annotated[ChannelType, typer.Option("--type", help="slack or webhook.")],
                url: Annotated[str | None, typer.Option(help="Slack: the incoming-webhook URL (a secret; prompted if omitted). Webhook: the receiver's URL.")] = None,
                secret: Annotated[str | None, typer.Option(help="Webhook: the HMAC signing secret (prompted if omitted).")] = None,
                comment: Annotated[str, typer.Option(help="Why it changed (kept in the history).")] = "") -> None:
    """Create or change a named channel target; secrets are stored encrypted and never shown.

    Examples: `workbench notify channel add team-slack --org acme --type slack` (prompts for the webhook URL);
    `workbench notify channel add ops-hook --org acme --type webhook --url https://ops.example.com/hook` (prompts for the secret)
    """
    from workbench import notify

    stores = _stores()
    if type_ is ChannelType.slack:
        hook = url or typer.prompt("Slack incoming-webhook URL", hide_input=True)
        settings_, secrets = {}, {"webhook_url": hook}
    else:
        if not url:
            url = typer.prompt("Webhook URL")
        settings_ = {"url": url}
        secrets = {"secret": secret or typer.prompt("Signing secret", hide_input=True, confirmation_prompt=True)}
    target = notify.save_channel(stores.db, stores.settings.credentials_key, org, name, type_.value, settings_,
                                 secrets, _author(), comment)
    out.print(f"saved {target.type} channel {target.name} v{target.version} for {org}")


@channel_app.command("list")
def channel_list(org: OrgOpt, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """The organisation's channel targets (secrets masked).

    Example: `workbench notify channel list --org acme`
    """
    from workbench import notify

    rows = [{"name": t.name, "type": t.type, "settings": json.dumps(t.settings, sort_keys=True),
             "secrets": ", ".join(f"{k}=***" for k in t.secret_names), "version": t.version,
             "author": t.author, "updated_at": t.updated_at.strftime("%Y-%m-%d %H:%M")}
            for t in notify.list_channels(_stores().db, org)]
    print_frame(pl.DataFrame(rows, schema={c: (pl.Int64 if c == "version" else pl.String) for c in
                                           ("name", "type", "settings", "secrets", "version", "author", "updated_at")}),
                fmt=fmt)


@channel_app.command("remove")
def channel_remove(name: str, org: OrgOpt, comment: Annotated[str, typer.Option(help="Why.")] = "") -> None:
    """Remove a channel target (its history stays). Example: `workbench notify channel remove ops-hook --org acme`"""
    from workbench import notify

    notify.remove_channel(_stores().db, org, name, _author(), comment)
    out.print(f"removed channel {name} of {org}")
