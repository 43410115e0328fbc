"""Audit events: who did what, when, to what, with the before and after values.

Every login, token, role, configuration and platform-action change calls ``record``; events are
never updated or deleted. ``events`` reads one organisation's (or, for an admin of the whole
workbench, the events of no organisation: failed logins of unknown users).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from sqlalchemy import select

from workbench.oltp.db import Oltp
from workbench.oltp.models import AuditEvent

SCHEMA: dict[str, Any] = {"at": pl.Datetime("us", "UTC"), "org_id": pl.String, "actor": pl.String,
                          "action": pl.String, "target_kind": pl.String, "target_id": pl.String,
                          "before": pl.String, "after": pl.String, "detail": pl.String}


def record(db: Oltp, *, org_id: str | None, actor: str, action: str, target_kind: str = "",
           target_id: str = "", before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           detail: str = "") -> None:
    """Append one audit event (its own transaction: an audit row is never rolled back with a
    failed change; the change's failure is itself worth recording). Never put secrets in
    ``before`` / ``after``: callers pass what a reviewer needs to see."""
    with db.session() as s:
        s.add(AuditEvent(org_id=org_id, actor=actor, action=action, target_kind=target_kind,
                         target_id=target_id, before=before, after=after, detail=detail))


def events(db: Oltp, org_id: str | None, *, start: dt.datetime | None = None, end: dt.datetime | None = None,
           action: str | None = None, limit: int = 1000) -> pl.DataFrame:
    """The newest ``limit`` events of ``org_id`` (``None``: events of no organisation), newest first."""
    import json

    query = select(AuditEvent).where(AuditEvent.org_id.is_(None) if org_id is None
                                     else AuditEvent.org_id == org_id)
    if start is not None:
        query = query.where(AuditEvent.at >= start)
    if end is not None:
        query = query.where(AuditEvent.at < end)
    if action is not None:
        query = query.where(AuditEvent.action.startswith(action))
    with db.session() as s:
        rows = list(s.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))
    return pl.DataFrame([{
        "at": r.at if r.at.tzinfo else r.at.replace(tzinfo=dt.UTC), "org_id": r.org_id, "actor": r.actor,
        "action": r.action, "target_kind": r.target_kind, "target_id": r.target_id,
        "before": None if r.before is None else json.dumps(r.before, sort_keys=True, default=str),
        "after": None if r.after is None else json.dumps(r.after, sort_keys=True, default=str),
        "detail": r.detail} for r in rows], schema=SCHEMA)
