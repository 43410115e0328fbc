"""Access tokens: JWTs issued at login, verified on every use.

Verification is strict: the algorithm is the one configured (``jwt_algorithm``), never the
one a token's header names, so ``none`` and algorithm confusion (an HMAC token "signed" with a
public key) are refused; the key comes from the token's ``kid`` among the configured keys;
``iss``, ``aud``, ``exp``, ``iat``, ``sub``, ``org`` and ``role`` are required.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import jwt

from workbench.auth import keys
from workbench.errors import AuthenticationError
from workbench.settings import Settings

LEEWAY_SECONDS = 30  # clock skew between the machine that issued a token and the one checking it


@dataclass(frozen=True)
class Claims:
    user_id: str
    email: str
    org_id: str
    role: str
    expires_at: dt.datetime
    token_id: str


def issue(settings: Settings, *, user_id: str, email: str, org_id: str, role: str,
          now: dt.datetime | None = None, ttl: dt.timedelta | None = None) -> str:
    """A signed access token for one user, organisation and role."""
    key = keys.active_key(settings)
    now = now or dt.datetime.now(dt.UTC)
    expires = now + (ttl or dt.timedelta(minutes=settings.jwt_ttl_minutes))
    claims = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": user_id, "email": email,
              "org": org_id, "role": role, "iat": int(now.timestamp()), "nbf": int(now.timestamp()),
              "exp": int(expires.timestamp()), "jti": secrets.token_hex(8)}
    return jwt.encode(claims, key.signing, algorithm=settings.jwt_algorithm, headers={"kid": key.kid})


def verify(settings: Settings, token: str, now: dt.datetime | None = None) -> Claims:
    """The claims of a valid token; ``AuthenticationError`` for anything else (the message
    says what to do, not which check failed, beyond expiry)."""
    refused = AuthenticationError("the access token is not valid here: log in again (wb.login / workbench login)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise refused from None
    kid = header.get("kid")
    key = keys.verifying_key(settings, kid) if isinstance(kid, str) else None
    if key is None or key.alg != settings.jwt_algorithm:
        raise refused
    try:
        claims = jwt.decode(
            token, key.verifying, algorithms=[settings.jwt_algorithm], audience=settings.jwt_audience,
            issuer=settings.jwt_issuer, leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "org", "role", "jti"]})
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("the access token has expired: log in again") from None
    except jwt.PyJWTError:
        raise refused from None
    if now is not None and claims["exp"] + LEEWAY_SECONDS < now.timestamp():
        raise AuthenticationError("the access token has expired: log in again")
    return Claims(str(claims["sub"]), str(claims.get("email", "")), str(claims["org"]), str(claims["role"]),
                  dt.datetime.fromtimestamp(claims["exp"], dt.UTC), str(claims["jti"]))
