"""What each role may do: one table, enforced by ``require`` (every workspace operation calls it).

| permission | viewer | editor | admin |
| --- | --- | --- | --- |
| ``data.read`` (queries, tables, metrics, status, rule previews and history, inbox) | yes | yes | yes |
| ``data.write`` (ingest, transform, sync, rule evaluations) | | yes | yes |
| ``config.write`` (metrics, rules, channels, budgets, schedules, rollbacks) | | yes | yes |
| ``actions.decide`` (approve, reject, undo platform actions) | | yes | yes |
| ``connections.manage`` (add, update, test, remove connections and their credentials) | | | yes |
| ``members.manage`` (users' roles in the organisation) | | | yes |
| ``tokens.manage`` (API tokens of the organisation) | | | yes |
| ``audit.read`` (audit events, usage) | | | yes |
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from workbench.errors import IsolationError, PermissionDenied, ValidationError

if TYPE_CHECKING:
    from workbench.auth.context import RequestContext

ROLES = ("viewer", "editor", "admin")

PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"data.read"}),
    "editor": frozenset({"data.read", "data.write", "config.write", "actions.decide"}),
    "admin": frozenset({"data.read", "data.write", "config.write", "actions.decide", "connections.manage",
                        "members.manage", "tokens.manage", "audit.read"}),
}
ALL_PERMISSIONS = frozenset().union(*PERMISSIONS.values())


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"unknown role '{role}'; roles: {', '.join(ROLES)}")
    return role


def allows(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def require(ctx: RequestContext | None, permission: str, org_id: str | None = None) -> RequestContext:
    """The context, if it may do ``permission`` in ``org_id``; otherwise an error (fail closed:
    no context, a context of another organisation, or a role without the permission)."""
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission}")  # a programming error, not the user's
    if ctx is None:
        raise PermissionDenied("this operation needs a signed-in user or an API token: "
                               "wb.open(org, token=...) or wb.login(...)")
    if org_id is not None and ctx.org_id != org_id:
        raise IsolationError(f"{ctx.actor} acts for organisation '{ctx.org_id}', not '{org_id}'")
    if not allows(ctx.role, permission):
        needed = next(r for r in ROLES if allows(r, permission))
        raise PermissionDenied(f"{ctx.actor} is {ctx.role} in '{ctx.org_id}'; {permission} needs the "
                               f"{needed} role or higher (an admin can grant it: workbench orgs grant)")
    return ctx


F = TypeVar("F", bound=Callable[..., Any])


def requires(permission: str) -> Callable[[F], F]:
    """Mark a method of an object with ``ctx``, ``org_id`` and ``throttle()`` (a workspace, its
    rules accessor) as needing ``permission``; checked, then rate limited, before every call.
    ``__permission__`` records it, so a test can prove every public operation is guarded."""
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission}")

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            require(self.ctx, permission, self.org_id)
            self.throttle()  # the per-user and per-organisation rate limits
            return fn(self, *args, **kwargs)

        guarded.__permission__ = permission  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return wrap
