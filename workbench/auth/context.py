"""The request context: who acts, for which organisation, in which role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.auth.permissions import check_role

#: set by the ``workbench`` command line (a process run by someone who can read the workbench's
#: home, its database and keys, so already able to do anything): without a token, its
#: workspaces act as the operator even when ``auth = "required"``. Nothing else sets it.
OPERATOR_PROCESS = {"on": False}


def acts_as_operator(auth_mode: str) -> bool:
    """Whether a workspace opened without a token acts as the local operator."""
    return auth_mode == "local" or OPERATOR_PROCESS["on"]


@dataclass(frozen=True)
class RequestContext:
    """``actor`` is ``user:<email>``, ``token:<id>`` or ``local:<login>`` (the operator of a
    single-user install); ``org_id`` the one organisation it may act for."""

    actor: str
    org_id: str
    role: str
    user_id: str | None = None
    token_id: str | None = None

    def __post_init__(self) -> None:
        check_role(self.role)

    @classmethod
    def local(cls, org_id: str) -> RequestContext:
        """The local operator: an admin of every organisation of a ``auth = "local"`` install."""
        from workbench.formulas.definitions import default_author

        return cls(f"local:{default_author()}", org_id, "admin")

    @property
    def author(self) -> str:
        """The name recorded as the author of configuration versions."""
        return self.actor.split(":", 1)[1] if ":" in self.actor else self.actor


class WorkspaceAccessor:
    """Base of the objects a workspace hands out (``ws.rules``, ``ws.config``): they act under
    the workspace's request context and rate limits, so ``@requires`` guards their methods too."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.org_id: str = ws.org.id

    @property
    def ctx(self) -> RequestContext:
        return self.ws.ctx  # type: ignore[no-any-return]

    def throttle(self) -> None:
        """The workspace's rate limits (``requires`` takes from them before each operation)."""
        self.ws.throttle()
