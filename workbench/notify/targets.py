"""Named channel targets of an organisation ("team-slack", "ops-hook"), as versioned documents.

Each target is a ``channel`` configuration document (``workbench.oltp.configs``): its type,
plain settings, and its secrets encrypted with the workbench's credentials key. Secrets are
never returned by :func:`list_channels`, never printed, and hidden from ``repr``; only the
dispatcher decrypts them (:func:`resolve_channel`) to deliver.

Email targets are addresses and in-app targets are user names: they need no document.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import NotFoundError, ValidationError
from workbench.oltp import configs
from workbench.oltp.db import Oltp
from workbench.oltp.models import ConfigVersion
from workbench.oltp.repo import decrypt_credentials

KIND = "channel"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class ChannelTarget:
    """A configured target as anyone may see it: the names of its secrets, never their values."""

    name: str
    type: str
    settings: dict[str, Any]
    secret_names: tuple[str, ...]
    version: int
    author: str
    updated_at: dt.datetime

    def masked(self) -> dict[str, Any]:
        """One row for listings: settings as given, each secret shown as ``***``."""
        return {"name": self.name, "type": self.type, "settings": self.settings,
                "secrets": {k: "***" for k in self.secret_names}, "version": self.version,
                "author": self.author, "updated_at": self.updated_at}


@dataclass(frozen=True)
class ResolvedChannel:
    """A target with its secrets decrypted, for delivery only (``repr`` shows no secret)."""

    name: str
    type: str
    settings: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)

    def secret(self, key: str) -> str:
        value = self.secrets.get(key)
        if not value:
            raise ValidationError(f"channel '{self.name}' has no secret '{key}'; save it again with "
                                  f"`workbench notify channel add {self.name} --type {self.type} ...`")
        return value


def _target(row: ConfigVersion) -> ChannelTarget:
    body = row.body or {}
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return ChannelTarget(row.name, body["type"], dict(body.get("settings") or {}),
                         tuple(body.get("secret_names") or ()), row.version, row.author, created)


def save_channel(db: Oltp, key: bytes, org_id: str, name: str, type: str, settings: dict[str, Any],
                 secrets: dict[str, str] | None, author: str, comment: str = "") -> ChannelTarget:
    """Save version n+1 of the organisation's channel target ``name`` (a ``channel`` document of
    the configuration service: validated, versioned and audited there).

    ``secrets`` are encrypted with ``key`` (``settings.credentials_key``). ``secrets=None`` keeps
    the secrets of the current version (to change only settings), if it has the same type. Saving
    exactly the current target again keeps its current version.
    """
    from workbench import config_service

    body = {"type": type, "settings": settings, "secrets": secrets}
    return _target(config_service.save(db, org_id, KIND, name, body, author=author, comment=comment, key=key,
                                       refuse_unchanged=False))


def remove_channel(db: Oltp, org_id: str, name: str, author: str, comment: str = "") -> None:
    """Remove the target (a version without a body; its history stays)."""
    from workbench import config_service

    if name not in configs.current(db, org_id, KIND):
        raise NotFoundError(f"organisation '{org_id}' has no channel '{name}'")
    config_service.remove(db, org_id, KIND, name, author=author, comment=comment)  # versioned and audited


def list_channels(db: Oltp, org_id: str) -> list[ChannelTarget]:
    """The organisation's current channel targets by name; secrets masked."""
    return [_target(row) for _, row in sorted(configs.current(db, org_id, KIND).items())]


def resolve_channel(db: Oltp, key: bytes, org_id: str, name: str, type: str) -> ResolvedChannel:
    """The target ``name`` of type ``type`` with decrypted secrets (for delivery)."""
    row = configs.current(db, org_id, KIND).get(name)
    if row is None:
        raise NotFoundError(f"organisation '{org_id}' has no {type} channel '{name}'; add it with "
                            f"`workbench notify channel add {name} --org {org_id} --type {type} ...`")
    body = row.body or {}
    if body.get("type") != type:
        raise ValidationError(f"channel '{name}' of '{org_id}' is a {body.get('type')} channel, not {type}")
    return ResolvedChannel(name, type, dict(body.get("settings") or {}),
                           decrypt_credentials(key, body.get("secrets")))
