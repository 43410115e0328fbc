"""Users, memberships, login and token resolution: the auth service.

Every change (user created or disabled, password set, role granted or revoked, token created
or revoked, login succeeded or failed) is an audit event. Login attempts are rate limited per
login name and client address (``workbench.ratelimit``); a failed login says only that the
email or password is wrong.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import select

from workbench import audit
from workbench.auth import access, api_tokens, passwords
from workbench.auth.context import RequestContext
from workbench.auth.permissions import check_role
from workbench.errors import AuthenticationError, NotFoundError, ValidationError
from workbench.oltp.db import Oltp
from workbench.oltp.models import Membership, Organisation, User
from workbench.settings import Settings, new_id


def _email(value: str) -> str:
    email = value.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
        raise ValidationError(f"'{value}' is not an email address")
    return email


def get_user(db: Oltp, email: str) -> User:
    with db.session() as s:
        user = s.scalar(select(User).where(User.email == _email(email)))
    if user is None:
        raise NotFoundError(f"no user {email}; add one with workbench users add")
    return user


def create_user(db: Oltp, email: str, name: str = "", password: str | None = None, *, actor: str) -> User:
    """A new user (no password: cannot log in until one is set, but can own API tokens)."""
    email = _email(email)
    hashed = passwords.hash_password(password) if password is not None else None
    with db.session() as s:
        if s.scalar(select(User).where(User.email == email)) is not None:
            raise ValidationError(f"user {email} already exists")
        user = User(id=new_id(), email=email, name=name, password_hash=hashed)
        s.add(user)
    audit.record(db, org_id=None, actor=actor, action="user.create", target_kind="user", target_id=email,
                 after={"email": email, "name": name, "password_set": hashed is not None})
    return user


def set_password(db: Oltp, email: str, password: str, *, actor: str) -> None:
    hashed = passwords.hash_password(password)
    user = get_user(db, email)
    with db.session() as s:
        row = s.get(User, user.id)
        assert row is not None
        row.password_hash = hashed
    audit.record(db, org_id=None, actor=actor, action="user.password", target_kind="user", target_id=user.email)


def set_disabled(db: Oltp, email: str, disabled: bool, *, actor: str) -> None:
    """Disable (or enable) a user: their access tokens stop working at once."""
    user = get_user(db, email)
    with db.session() as s:
        row = s.get(User, user.id)
        assert row is not None
        row.disabled = disabled
    audit.record(db, org_id=None, actor=actor, action="user.disable" if disabled else "user.enable",
                 target_kind="user", target_id=user.email, before={"disabled": user.disabled},
                 after={"disabled": disabled})


def grant(db: Oltp, org_id: str, email: str, role: str, *, actor: str) -> Membership:
    """Give ``email`` the ``role`` in ``org_id`` (creating or changing the membership)."""
    check_role(role)
    user = get_user(db, email)
    with db.session() as s:
        if s.get(Organisation, org_id) is None:
            raise NotFoundError(f"no organisation '{org_id}'")
        row = s.get(Membership, (user.id, org_id))
        before = None if row is None else {"role": row.role}
        if row is None:
            row = Membership(user_id=user.id, org_id=org_id, role=role)
            s.add(row)
        else:
            row.role = role
    audit.record(db, org_id=org_id, actor=actor, action="role.grant", target_kind="user", target_id=user.email,
                 before=before, after={"role": role})
    return row


def revoke(db: Oltp, org_id: str, email: str, *, actor: str) -> None:
    """Remove ``email`` from ``org_id``; their tokens for it stop working at once."""
    user = get_user(db, email)
    with db.session() as s:
        row = s.get(Membership, (user.id, org_id))
        if row is None:
            raise NotFoundError(f"{email} is not a member of '{org_id}'")
        before = {"role": row.role}
        s.delete(row)
    audit.record(db, org_id=org_id, actor=actor, action="role.revoke", target_kind="user", target_id=user.email,
                 before=before, after=None)


def members(db: Oltp, org_id: str) -> pl.DataFrame:
    with db.session() as s:
        rows = s.execute(select(User.email, User.name, Membership.role, User.disabled)
                         .join(Membership, Membership.user_id == User.id)
                         .where(Membership.org_id == org_id).order_by(User.email)).all()
    return pl.DataFrame([{"email": e, "name": n, "role": r, "disabled": d} for e, n, r, d in rows],
                        schema={"email": pl.String, "name": pl.String, "role": pl.String, "disabled": pl.Boolean})


def login(db: Oltp, settings: Settings, email: str, password: str, org_id: str, *,
          address: str | None = None) -> str:
    """An access token for ``email`` in ``org_id`` when the password is right, the user is
    enabled and a member; throttled per login name and address."""
    from workbench import ratelimit

    limiter, plans = ratelimit.rate_limiter(settings), ratelimit.load_plans(settings)
    login_name = email.strip().lower()
    ratelimit.check_login(limiter, plans, login=login_name, address=address)
    refused = AuthenticationError(f"wrong email or password, or no access to '{org_id}'")
    with db.session() as s:
        user = s.scalar(select(User).where(User.email == login_name))
        ok = passwords.verify(user.password_hash if user else None, password)
        membership = s.get(Membership, (user.id, org_id)) if user is not None and ok else None
    if user is None or not ok or user.disabled or membership is None:
        why = ("unknown user" if user is None else "wrong password" if not ok else
               "disabled" if user.disabled else "not a member")
        audit.record(db, org_id=org_id if user is not None else None, actor=f"user:{login_name}",
                     action="login.failed", target_kind="org", target_id=org_id,
                     detail=why + (f" from {address}" if address else ""))
        raise refused
    ratelimit.login_succeeded(limiter, login=login_name)
    if passwords.needs_rehash(user.password_hash or ""):
        set_password(db, login_name, password, actor=f"user:{login_name}")
    audit.record(db, org_id=org_id, actor=f"user:{login_name}", action="login", target_kind="org",
                 target_id=org_id, detail=f"from {address}" if address else "")
    return access.issue(settings, user_id=user.id, email=user.email, org_id=org_id, role=membership.role)


def context_for(db: Oltp, settings: Settings, token: str, org_id: str | None = None,
                now: dt.datetime | None = None) -> RequestContext:
    """The request context of an access token (JWT) or an API token, checked against the
    current state: a disabled user, a removed membership or a revoked token fails at once, and
    a role lowered since the token was issued applies at once. With ``org_id``, a token of
    another organisation is refused."""
    if api_tokens.looks_like(token):
        row = api_tokens.resolve(db, token, now)
        ctx = RequestContext(f"token:{row.id}", row.org_id, row.role, user_id=row.user_id, token_id=row.id)
    else:
        claims = access.verify(settings, token, now)
        with db.session() as s:
            user = s.get(User, claims.user_id)
            membership = s.get(Membership, (claims.user_id, claims.org_id))
        if user is None or user.disabled or membership is None:
            raise AuthenticationError("this account no longer has access: log in again or ask an admin")
        from workbench.auth.permissions import ROLES

        role = min(claims.role, membership.role, key=ROLES.index)  # never more than either says
        ctx = RequestContext(f"user:{user.email}", claims.org_id, role, user_id=user.id)
    if org_id is not None and ctx.org_id != org_id:
        raise AuthenticationError(f"this token is for another organisation, not '{org_id}'")
    return ctx


def create_token(db: Oltp, ctx: RequestContext, name: str, role: str,
                 expires_at: dt.datetime | None = None) -> str:
    """A new API token for the context's organisation (an admin's)."""
    from workbench.auth.permissions import require

    require(ctx, "tokens.manage", ctx.org_id)
    row, token = api_tokens.create(db, ctx.org_id, name, role, created_by=ctx.actor, user_id=ctx.user_id,
                                   expires_at=expires_at)
    audit.record(db, org_id=ctx.org_id, actor=ctx.actor, action="token.create", target_kind="api_token",
                 target_id=row.id, after={"name": name, "role": role,
                                          "expires_at": expires_at.isoformat() if expires_at else None})
    return token


def revoke_token(db: Oltp, ctx: RequestContext, token_id: str) -> None:
    from workbench.auth.permissions import require

    require(ctx, "tokens.manage", ctx.org_id)
    row = api_tokens.revoke(db, ctx.org_id, token_id)
    audit.record(db, org_id=ctx.org_id, actor=ctx.actor, action="token.revoke", target_kind="api_token",
                 target_id=row.id, before={"name": row.name, "role": row.role}, after={"revoked": True})
