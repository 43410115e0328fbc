"""The outbox (``notifications``): queue a message in the caller's transaction, see the queue.

:func:`enqueue` only *adds* a row to the session it is given, so the rule engine writes its
alerts and their notifications in one transaction: either both exist or neither. The
dispatcher (:mod:`workbench.notify.dispatcher`) delivers them later.

Row life: ``pending`` → ``sending`` (claimed) → ``sent``; a transient failure puts it back to
``pending`` with a later ``next_attempt_at``; ``dead`` after the last attempt; ``failed`` on a
permanent failure. :func:`requeue` puts failed and dead rows back once the cause is fixed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workbench.errors import IsolationError, NotFoundError, ValidationError
from workbench.notify.payload import validate_payload
from workbench.oltp.db import Oltp
from workbench.oltp.models import Notification
from workbench.settings import new_id

STATUSES = ("pending", "sending", "sent", "failed", "dead")


def notification_key(*parts: object) -> str:
    """A stable idempotency key from its parts, e.g. ``(org, rule, evaluation_id, channel, target)``."""
    return "n-" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


def enqueue(session: Session, org_id: str, channel: str, target: str, payload: dict[str, Any],
            idempotency_key: str, *, not_before: dt.datetime | None = None) -> Notification:
    """Add a notification to ``session`` (not committed here) and return it.

    A second call with the same ``idempotency_key`` returns the existing row and adds nothing,
    also when another transaction inserted it concurrently. The payload schema is in
    :mod:`workbench.notify.payload`; ``target`` is an email address (email), a user name
    (inapp) or a configured channel name (slack, webhook).
    """
    from workbench.notify.registry import channels

    try:
        cls = channels.get(channel)
    except NotFoundError as exc:
        raise ValidationError(str(exc)) from None
    cls.check_target(target)
    if not 0 < len(idempotency_key) <= 200:
        raise ValidationError("an idempotency key must be 1-200 characters; build one with notification_key(...)")
    payload = validate_payload(payload)

    def existing() -> Notification | None:
        row = session.scalar(select(Notification).where(Notification.idempotency_key == idempotency_key))
        if row is not None and row.org_id != org_id:
            raise IsolationError("this idempotency key belongs to a notification of another organisation; "
                                 "include the organisation in the key")
        return row

    found = existing()
    if found is not None:
        return found
    row = Notification(id=new_id(), org_id=org_id, channel=channel, target=target.strip(), payload=payload,
                       idempotency_key=idempotency_key, status="pending", attempts=0,
                       next_attempt_at=not_before or dt.datetime.now(dt.UTC))
    try:
        with session.begin_nested():  # a savepoint: a duplicate must not undo the caller's other writes
            session.add(row)
            session.flush()
    except IntegrityError:
        found = existing()
        if found is None:
            raise
        return found
    return row


def requeue(db: Oltp, org_id: str, *, statuses: Sequence[str] = ("failed", "dead"),
            ids: Sequence[str] | None = None, now: dt.datetime | None = None) -> int:
    """Put failed/dead notifications back to pending (attempts reset); returns how many."""
    bad = sorted(set(statuses) - {"failed", "dead"})
    if bad:
        raise ValidationError(f"only failed or dead notifications can be requeued, not {', '.join(bad)}")
    q = (update(Notification)
         .where(Notification.org_id == org_id, Notification.status.in_(list(statuses)))
         .values(status="pending", attempts=0, next_attempt_at=now or dt.datetime.now(dt.UTC), claimed_at=None))
    if ids is not None:
        q = q.where(Notification.id.in_(list(ids)))
    with db.engine.begin() as conn:
        return conn.execute(q).rowcount


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def status(db: Oltp, org_id: str) -> pl.DataFrame:
    """Notifications per channel and status: count, oldest created and earliest next attempt.

    The oldest ``pending`` row shows how far behind delivery is.
    """
    q = (select(Notification.channel, Notification.status, func.count().label("count"),
                func.min(Notification.created_at).label("oldest"),
                func.min(Notification.next_attempt_at).label("next_attempt_at"))
         .where(Notification.org_id == org_id)
         .group_by(Notification.channel, Notification.status)
         .order_by(Notification.channel, Notification.status))
    with db.session() as s:
        rows = [{"channel": r.channel, "status": r.status, "count": r.count, "oldest": _aware(r.oldest),
                 "next_attempt_at": _aware(r.next_attempt_at) if r.status == "pending" else None}
                for r in s.execute(q)]
    return pl.DataFrame(rows, schema={"channel": pl.String, "status": pl.String, "count": pl.Int64,
                                      "oldest": pl.Datetime("us", "UTC"),
                                      "next_attempt_at": pl.Datetime("us", "UTC")}, orient="row")


def notifications(db: Oltp, org_id: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 50) -> list[Notification]:
    """The organisation's notifications, newest first (optionally of some statuses)."""
    q = select(Notification).where(Notification.org_id == org_id)
    if statuses:
        q = q.where(Notification.status.in_(list(statuses)))
    with db.session() as s:
        return list(s.scalars(q.order_by(Notification.created_at.desc(), Notification.id).limit(limit)))
