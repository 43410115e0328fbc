"""Versioned configuration documents per organisation (``config_versions``).

A save appends a version; a removal appends a version without a body; nothing is updated in
place, so the history is complete. Every read and write names the organisation.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from workbench.errors import NotFoundError, TransientError
from workbench.oltp.db import Oltp
from workbench.oltp.models import ConfigVersion


def save_version(db: Oltp, org_id: str, kind: str, name: str, body: dict[str, Any] | None,
                 author: str, comment: str = "") -> ConfigVersion:
    """Append version n+1 of document ``kind/name`` (``body=None`` records a removal)."""
    for _ in range(10):
        try:
            with db.session() as s:
                latest = s.scalar(select(func.max(ConfigVersion.version)).where(
                    ConfigVersion.org_id == org_id, ConfigVersion.kind == kind, ConfigVersion.name == name))
                row = ConfigVersion(org_id=org_id, kind=kind, name=name, version=(latest or 0) + 1,
                                    body=body, author=author, comment=comment)
                s.add(row)
            return row
        except IntegrityError:
            continue  # a concurrent save took this version number; take the next one
    raise TransientError(f"could not save {kind} '{name}' for '{org_id}': too many concurrent saves; retry")


def current(db: Oltp, org_id: str, kind: str) -> dict[str, ConfigVersion]:
    """The latest version of every document of ``kind`` that is not removed, by name."""
    with db.session() as s:
        latest = (select(ConfigVersion.name, func.max(ConfigVersion.version).label("v"))
                  .where(ConfigVersion.org_id == org_id, ConfigVersion.kind == kind)
                  .group_by(ConfigVersion.name).subquery())
        rows = s.scalars(select(ConfigVersion).join(
            latest, (ConfigVersion.name == latest.c.name) & (ConfigVersion.version == latest.c.v))
            .where(ConfigVersion.org_id == org_id, ConfigVersion.kind == kind))
        return {r.name: r for r in rows if r.body is not None}


def history(db: Oltp, org_id: str, kind: str, name: str) -> list[ConfigVersion]:
    """Every version of one document, oldest first."""
    with db.session() as s:
        return list(s.scalars(select(ConfigVersion).where(
            ConfigVersion.org_id == org_id, ConfigVersion.kind == kind, ConfigVersion.name == name)
            .order_by(ConfigVersion.version)))


def get_version(db: Oltp, org_id: str, kind: str, name: str, version: int) -> ConfigVersion:
    """Version ``version`` of one document of the organisation (a removal has ``body=None``)."""
    with db.session() as s:
        row = s.scalar(select(ConfigVersion).where(
            ConfigVersion.org_id == org_id, ConfigVersion.kind == kind, ConfigVersion.name == name,
            ConfigVersion.version == version))
    if row is None:
        raise NotFoundError(f"{kind} '{name}' has no version {version}")
    return row


def latest(db: Oltp, org_id: str, kind: str, name: str) -> ConfigVersion | None:
    """The highest version of one document (a removal too), or ``None`` if it was never saved."""
    with db.session() as s:
        return s.scalar(select(ConfigVersion).where(
            ConfigVersion.org_id == org_id, ConfigVersion.kind == kind, ConfigVersion.name == name)
            .order_by(ConfigVersion.version.desc()).limit(1))


def names(db: Oltp, org_id: str, kind: str) -> list[str]:
    """Every document name of ``kind`` the organisation ever saved (removed ones too), sorted."""
    with db.session() as s:
        return sorted(s.scalars(select(ConfigVersion.name).where(
            ConfigVersion.org_id == org_id, ConfigVersion.kind == kind).distinct()))
