"""API tokens for schedulers and scripts: ``wbt_<id>_<secret>``, one organisation and role each.

Only a SHA-256 of the secret is stored (the secret is random, so a slow hash adds nothing);
the whole token is shown once, at creation. Tokens are revocable and may expire.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

import polars as pl
from sqlalchemy import select

from workbench.auth.permissions import check_role
from workbench.errors import AuthenticationError, NotFoundError
from workbench.oltp.db import Oltp
from workbench.oltp.models import ApiToken
from workbench.settings import new_id

PREFIX = "wbt_"
_FORMAT = re.compile(r"^wbt_([0-9a-f]{16})_([A-Za-z0-9_-]{32,})$")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like(token: str) -> bool:
    return token.startswith(PREFIX)


def create(db: Oltp, org_id: str, name: str, role: str, *, created_by: str, user_id: str | None = None,
           expires_at: dt.datetime | None = None) -> tuple[ApiToken, str]:
    """A new token row and the token text (shown once; only its hash is kept)."""
    check_role(role)
    token_id, secret = new_id(), secrets.token_urlsafe(32)
    row = ApiToken(id=token_id, org_id=org_id, user_id=user_id, name=name, role=role,
                   secret_hash=_digest(secret), created_by=created_by, expires_at=expires_at)
    with db.session() as s:
        s.add(row)
    return row, f"{PREFIX}{token_id}_{secret}"


def resolve(db: Oltp, token: str, now: dt.datetime | None = None) -> ApiToken:
    """The token's row, if the token is whole, known, not revoked and not expired."""
    refused = AuthenticationError("the API token is not valid (revoked, expired or mistyped): "
                                  "ask an admin for a new one (workbench tokens create)")
    m = _FORMAT.match(token.strip())
    if not m:
        raise refused
    now = now or dt.datetime.now(dt.UTC)
    with db.session() as s:
        row = s.get(ApiToken, m.group(1))
        if row is None or not hmac.compare_digest(row.secret_hash, _digest(m.group(2))):
            raise refused
        expires = row.expires_at and (row.expires_at if row.expires_at.tzinfo else
                                      row.expires_at.replace(tzinfo=dt.UTC))
        if row.revoked_at is not None or (expires is not None and expires <= now):
            raise refused
        row.last_used_at = now
        return row


def revoke(db: Oltp, org_id: str, token_id: str, now: dt.datetime | None = None) -> ApiToken:
    with db.session() as s:
        row = s.get(ApiToken, token_id)
        if row is None or row.org_id != org_id:
            raise NotFoundError(f"no API token {token_id} in '{org_id}'")
        if row.revoked_at is None:
            row.revoked_at = now or dt.datetime.now(dt.UTC)
        return row


def listing(db: Oltp, org_id: str) -> pl.DataFrame:
    """The organisation's tokens (never their secrets)."""
    with db.session() as s:
        rows = list(s.scalars(select(ApiToken).where(ApiToken.org_id == org_id).order_by(ApiToken.created_at)))
    return pl.DataFrame([{"id": r.id, "name": r.name, "role": r.role, "created_by": r.created_by,
                          "created_at": r.created_at, "expires_at": r.expires_at,
                          "last_used_at": r.last_used_at, "revoked": r.revoked_at is not None} for r in rows],
                        schema={"id": pl.String, "name": pl.String, "role": pl.String, "created_by": pl.String,
                                "created_at": pl.Datetime("us", "UTC"), "expires_at": pl.Datetime("us", "UTC"),
                                "last_used_at": pl.Datetime("us", "UTC"), "revoked": pl.Boolean})
