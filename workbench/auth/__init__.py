"""Identity and access: users, memberships and roles, passwords, access tokens (JWT), API tokens,
and the request context every workspace operation runs under.

- ``permissions``: what each role may do, in one table, and ``require``.
- ``context``: ``RequestContext`` (actor, organisation, role).
- ``passwords``: argon2id hashing.
- ``keys`` / ``access``: signing keys by key id, JWT issue and verification.
- ``api_tokens``: long-lived, hashed, revocable tokens for one organisation and role.
- ``service``: users, memberships, login (throttled), token resolution.
"""

from workbench.auth.context import RequestContext
from workbench.auth.permissions import ROLES, require

__all__ = ["ROLES", "RequestContext", "require"]
