"""The in-app inbox: one ``InboxMessage`` per notification, for one user of the organisation.

Delivery is exactly once: ``inbox_messages.notification_id`` is unique, so delivering the same
notification again (after a dispatcher died between writing the message and marking the
notification sent) finds the message already there and does nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from workbench.errors import PermanentDeliveryError
from workbench.notify.base import Channel, DeliveryContext
from workbench.notify.payload import one_line, render_text
from workbench.oltp.db import Oltp
from workbench.oltp.models import InboxMessage, Notification
from workbench.settings import new_id


class InAppChannel(Channel):
    target_hint: ClassVar[str] = "user names"

    def deliver(self, notification: Notification, context: DeliveryContext) -> None:
        user = notification.target.strip()
        message = InboxMessage(id=new_id(), org_id=notification.org_id, user=user,
                               title=one_line(notification.payload["title"], 400),
                               body=render_text(notification.payload, with_title=False),
                               notification_id=notification.id)
        try:
            with context.db.session() as s:
                s.add(message)
        except IntegrityError:
            with context.db.session() as s:
                if s.scalar(select(InboxMessage.id).where(InboxMessage.notification_id == notification.id)):
                    return  # delivered before; the dispatcher died before it recorded that
            raise PermanentDeliveryError(f"in-app message for '{user}' could not be stored "
                                         f"(organisation '{notification.org_id}' removed?)") from None


def inbox(db: Oltp, org_id: str, user: str, *, unread: bool = False, limit: int = 100) -> list[InboxMessage]:
    """The user's messages in the organisation, newest first (only unread ones with ``unread``)."""
    q = select(InboxMessage).where(InboxMessage.org_id == org_id, InboxMessage.user == user)
    if unread:
        q = q.where(InboxMessage.read_at.is_(None))
    with db.session() as s:
        return list(s.scalars(q.order_by(InboxMessage.created_at.desc(), InboxMessage.id).limit(limit)))


def unread_count(db: Oltp, org_id: str, user: str) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(InboxMessage).where(
            InboxMessage.org_id == org_id, InboxMessage.user == user, InboxMessage.read_at.is_(None))) or 0


def mark_read(db: Oltp, org_id: str, user: str, ids: Sequence[str] | None = None,
              now: dt.datetime | None = None) -> int:
    """Mark the user's messages ``ids`` (default: all) read; returns how many changed."""
    q = (update(InboxMessage)
         .where(InboxMessage.org_id == org_id, InboxMessage.user == user, InboxMessage.read_at.is_(None))
         .values(read_at=now or dt.datetime.now(dt.UTC)))
    if ids is not None:
        q = q.where(InboxMessage.id.in_(list(ids)))
    with db.engine.begin() as conn:
        return conn.execute(q).rowcount
