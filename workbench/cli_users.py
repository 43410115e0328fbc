"""`workbench users ...`, `workbench orgs members|grant|revoke`, `workbench tokens ...`,
`workbench login` and `workbench auth rotate-key`: identity and access from the command line.

User and key commands act on the whole workbench (the operator's); organisation commands act as
the operator, or as the identity of ``WORKBENCH_TOKEN`` when it is set (an admin's token).
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer

from workbench.cli_common import Format, OrgOpt, err, operator_only, out, print_frame

users_app = typer.Typer(help="Users: `workbench users add ana@example.com --name Ana`.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: `workbench tokens create scheduler --org acme --role editor`.",
                         no_args_is_help=True)
auth_app = typer.Typer(help="Signing keys of access tokens: `workbench auth rotate-key`.", no_args_is_help=True)
RoleOpt = Annotated[str, typer.Option("--role", help="viewer, editor or admin.")]


@users_app.callback()
def _users_operator_only() -> None:
    operator_only("users")


@auth_app.callback()
def _auth_operator_only() -> None:
    operator_only("auth")


def _stores():  # type: ignore[no-untyped-def]
    from workbench.stores import get_stores

    return get_stores()


def _actor() -> str:
    from workbench.auth.context import RequestContext

    return RequestContext.local("-").actor


def _password(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = typer.prompt(prompt, hide_input=True)
    if typer.prompt("again", hide_input=True) != first:
        raise typer.BadParameter("the two passwords differ")
    return str(first)


@users_app.command("add")
def users_add(email: str, name: Annotated[str, typer.Option(help="Display name.")] = "",
              password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")] = False,
              no_password: Annotated[bool, typer.Option("--no-password", help="A user who cannot log in (yet).")] = False) -> None:
    """Add a user (the password is asked for, hidden, unless --no-password or --password-stdin).

    Example: `workbench users add ana@example.com --name "Ana Lima"`, then `workbench orgs grant ana@example.com --org acme --role editor`
    """
    from workbench.auth import service

    password = None if no_password else _password("password", password_stdin)
    user = service.create_user(_stores().db, email, name, password, actor=_actor())
    out.print(f"added user {user.email}")


@users_app.command("passwd")
def users_passwd(email: str, password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False) -> None:
    """Set a user's password. Example: `workbench users passwd ana@example.com`"""
    from workbench.auth import service

    service.set_password(_stores().db, email, _password("new password", password_stdin), actor=_actor())
    out.print(f"password of {email} set")


@users_app.command("disable")
def users_disable(email: str, enable: Annotated[bool, typer.Option("--enable", help="Enable again instead.")] = False) -> None:
    """Disable a user: their access tokens stop working at once. Example: `workbench users disable ana@example.com`"""
    from workbench.auth import service

    service.set_disabled(_stores().db, email, not enable, actor=_actor())
    out.print(f"{email} {'enabled' if enable else 'disabled'}")


@users_app.command("list")
def users_list(fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Every user with their memberships. Example: `workbench users list`"""
    import polars as pl
    from sqlalchemy import select

    from workbench.oltp.models import Membership, User

    with _stores().db.session() as s:
        users = list(s.scalars(select(User).order_by(User.email)))
        roles = s.execute(select(Membership.user_id, Membership.org_id, Membership.role)).all()
    by_user: dict[str, list[str]] = {}
    for user_id, org, role in roles:
        by_user.setdefault(user_id, []).append(f"{org}:{role}")
    print_frame(pl.DataFrame([{"email": u.email, "name": u.name, "disabled": u.disabled,
                               "can_log_in": u.password_hash is not None,
                               "memberships": ", ".join(sorted(by_user.get(u.id, [])))} for u in users],
                             schema={"email": pl.String, "name": pl.String, "disabled": pl.Boolean,
                                     "can_log_in": pl.Boolean, "memberships": pl.String}), fmt=fmt)


def register_org_commands(orgs_app: typer.Typer) -> None:
    """Add members / grant / revoke to `workbench orgs`."""

    @orgs_app.command("members")
    def members(org: OrgOpt, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
        """Members of an organisation and their roles. Example: `workbench orgs members --org acme`"""
        import workbench

        print_frame(workbench.open(org).members(), fmt=fmt)

    @orgs_app.command("grant")
    def grant(email: str, org: OrgOpt, role: RoleOpt) -> None:
        """Give a user a role in an organisation (or change it).

        Example: `workbench orgs grant ana@example.com --org acme --role editor`
        """
        import workbench

        workbench.open(org).grant(email, role)
        out.print(f"{email} is {role} in {org}")

    @orgs_app.command("revoke")
    def revoke(email: str, org: OrgOpt) -> None:
        """Remove a user from an organisation. Example: `workbench orgs revoke ana@example.com --org acme`"""
        import workbench

        workbench.open(org).revoke_member(email)
        out.print(f"{email} removed from {org}")


@tokens_app.command("create")
def tokens_create(name: str, org: OrgOpt, role: RoleOpt = "viewer",
                  expires_days: Annotated[int | None, typer.Option(min=1, help="Days until it expires (default never).")] = None) -> None:
    """Create an API token for schedulers and scripts; it is printed once, only its hash is kept.

    Example: `workbench tokens create nightly --org acme --role editor --expires-days 365`
    """
    import workbench

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days) if expires_days else None
    token = workbench.open(org).create_token(name, role, expires)
    err.print(f"API token {name} ({role} in {org}); shown once, keep it in your scheduler's secret store:")
    sys.stdout.write(token + "\n")


@tokens_app.command("list")
def tokens_list(org: OrgOpt, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """The organisation's API tokens (never their secrets). Example: `workbench tokens list --org acme`"""
    import workbench

    print_frame(workbench.open(org).tokens(), fmt=fmt)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, org: OrgOpt) -> None:
    """Revoke an API token at once. Example: `workbench tokens revoke 3f2a9c0d1e2b4a5c --org acme`"""
    import workbench

    workbench.open(org).revoke_token(token_id)
    out.print(f"token {token_id} revoked")


def login(email: str, org: OrgOpt,
          password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False) -> None:
    """Log in and print an access token (for `export WORKBENCH_TOKEN=...`).

    Example: `export WORKBENCH_TOKEN=$(workbench login ana@example.com --org acme)`
    """
    from workbench.auth import service

    stores = _stores()
    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("password", hide_input=True)
    token = service.login(stores.db, stores.settings, email, password, org, address="cli")
    sys.stdout.write(token + "\n")


@auth_app.command("rotate-key")
def rotate_key(retire: Annotated[str | None, typer.Option(help="Remove this key id instead: the tokens it signed stop working.")] = None) -> None:
    """Start signing access tokens with a new key (older keys still verify until retired).

    Examples: `workbench auth rotate-key`; `workbench auth rotate-key --retire k20261101120000-ab12`
    """
    from workbench import audit
    from workbench.auth import keys

    stores = _stores()
    kid = keys.rotate(stores.settings, retire)
    audit.record(stores.db, org_id=None, actor=_actor(), action="key.retire" if retire else "key.rotate",
                 target_kind="signing_key", target_id=kid)
    out.print(f"retired key {kid}" if retire else f"new active key {kid}")


@auth_app.command("keys")
def keys_list() -> None:
    """The signing key ids and which one is active. Example: `workbench auth keys`"""
    from workbench.auth import keys

    active, kids = keys.key_ids(_stores().settings)
    for kid in kids:
        out.print(f"{kid}{'  (active)' if kid == active else ''}")
