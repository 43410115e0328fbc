"""The dispatcher: deliver due notifications from the outbox, with retries and no double sends.

One row at a time: **claim** it in its own committed transaction with a conditional
``UPDATE ... WHERE id = :id AND (status = 'pending' AND next_attempt_at <= now OR status =
'sending' AND claimed_at < now - lease)``; only the dispatcher whose UPDATE changed the row
delivers it, which holds across processes on SQLite (one writer at a time) and PostgreSQL (the
second UPDATE re-checks the row after the first commits). Claiming counts an attempt, so a
message that keeps crashing its dispatcher still ends dead. Then **deliver**, then **finish**:
``sent``; or, on a transient failure, ``pending`` again after an exponential back-off with
jitter (at least the receiver's ``Retry-After``), ``dead`` after ``notify_max_attempts``; or
``failed`` on a permanent one. A dispatcher that dies after claiming leaves the row
``sending``; once the lease (``notify_lease_seconds``) has passed another run claims it again.

Guarantees: in-app messages are delivered exactly once (a unique key on the inbox row).
Email, Slack and webhooks are at-least-once: a dispatcher that dies after the receiver accepted
a message but before it recorded ``sent`` sends it again after the lease, with the same
idempotency key (``X-Workbench-Idempotency-Key``, the email Message-ID) for the receiver to
dedupe on. Slack itself does not dedupe.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import ColumnElement, and_, or_, select, update

from workbench import usage
from workbench.errors import PermanentDeliveryError, TransientDeliveryError, WorkbenchError
from workbench.faults import checkpoint
from workbench.notify.base import Channel, DeliveryContext
from workbench.notify.registry import channels
from workbench.oltp.db import Oltp
from workbench.oltp.models import Notification
from workbench.settings import Settings

log = logging.getLogger("workbench.notify")
BATCH = 50


class HasOltp(Protocol):
    """What the dispatcher needs of :class:`workbench.stores.Stores`."""

    settings: Settings
    db: Oltp


@dataclass
class DispatchResult:
    """What one dispatcher run did: ``skipped`` rows were claimed by another dispatcher first."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    #: sent notifications per (organisation, channel, UTC day), for usage metering
    sent_by: Counter[tuple[str, str, dt.date]] = field(default_factory=Counter, repr=False, compare=False)

    def __str__(self) -> str:
        return (f"sent {self.sent}, retried {self.retried}, failed {self.failed}, dead {self.dead}, "
                f"skipped {self.skipped}")


def _utc(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def backoff(attempts: int, settings: Settings, retry_after: float | None = None,
            rng: random.Random | None = None) -> dt.timedelta:
    """Delay before attempt ``attempts + 1``: base·2^(attempts-1), capped, times a jitter in [0.5, 1]."""
    ceiling = min(settings.notify_backoff_seconds * 2 ** max(attempts - 1, 0), settings.notify_backoff_max_seconds)
    delay = ceiling * (0.5 + (rng or random).random() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 86400.0))
    return dt.timedelta(seconds=delay)


def _due(now: dt.datetime, lease: dt.timedelta) -> ColumnElement[bool]:
    return or_(and_(Notification.status == "pending", Notification.next_attempt_at <= now),
               and_(Notification.status == "sending", Notification.claimed_at < now - lease))


def _candidates(db: Oltp, org_id: str | None, now: dt.datetime, lease: dt.timedelta, n: int,
                seen: set[str]) -> list[str]:
    q = select(Notification.id).where(_due(now, lease))
    if org_id is not None:
        q = q.where(Notification.org_id == org_id)
    if seen:
        q = q.where(Notification.id.not_in(seen))
    with db.session() as s:
        return list(s.scalars(q.order_by(Notification.next_attempt_at, Notification.created_at,
                                         Notification.id).limit(n)))


def _claim(db: Oltp, notification_id: str, now: dt.datetime, lease: dt.timedelta) -> Notification | None:
    """Take the row if it is still due; None when another dispatcher has it."""
    with db.engine.begin() as conn:
        taken = conn.execute(update(Notification)
                             .where(Notification.id == notification_id, _due(now, lease))
                             .values(status="sending", claimed_at=now, attempts=Notification.attempts + 1)
                             ).rowcount
    if not taken:
        return None
    with db.session() as s:
        return s.get(Notification, notification_id)


def _finish(db: Oltp, n: Notification, claimed_at: dt.datetime, **values: object) -> bool:
    """Record the outcome, unless another dispatcher re-claimed the row after our lease ran out."""
    with db.engine.begin() as conn:
        done = conn.execute(update(Notification)
                            .where(Notification.id == n.id, Notification.status == "sending",
                                   Notification.claimed_at == claimed_at)
                            .values(**values)).rowcount
    if not done:
        log.warning("notification %s: the lease ran out during delivery and another dispatcher claimed it", n.id)
    return bool(done)


def _redact(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text[:2000]


def dispatch(stores: HasOltp, org_id: str | None = None, now: dt.datetime | None = None,
             limit: int = 1000) -> DispatchResult:
    """Deliver up to ``limit`` due notifications (of one organisation, or all); see the module doc.

    ``now`` fixes the clock (tests, replays); by default each claim uses the current time.
    """
    settings, db = stores.settings, stores.db
    lease = dt.timedelta(seconds=settings.notify_lease_seconds)
    result = DispatchResult()
    seen: set[str] = set()
    instances: dict[str, Channel] = {}
    context = DeliveryContext(settings, db, _utc(now))
    if settings.smtp_password is not None:
        context.secrets.add(settings.smtp_password.get_secret_value())
    try:
        while len(seen) < limit:
            ids = _candidates(db, org_id, _utc(now), lease, min(BATCH, limit - len(seen)), seen)
            if not ids:
                break
            for notification_id in ids:
                seen.add(notification_id)
                claimed_at = _utc(now)
                n = _claim(db, notification_id, claimed_at, lease)
                if n is None:
                    result.skipped += 1
                    continue
                context.now = claimed_at
                _deliver_one(n, claimed_at, context, instances, result, lambda: _utc(now))
    finally:
        context.close()
        _meter(db, result)
    return result


def _meter(db: Oltp, result: DispatchResult) -> None:
    """Add the run's sent notifications to usage: one write per organisation, channel and day
    rather than per message (concurrent dispatchers would otherwise all write the same rows).
    A metering failure is logged; the notifications were sent either way."""
    for (org_id, channel, day), count in sorted(result.sent_by.items()):
        usage.meter(db, org_id, "notifications_sent", count, channel, day)


def _deliver_one(n: Notification, claimed_at: dt.datetime, context: DeliveryContext,
                 instances: dict[str, Channel], result: DispatchResult, clock: Callable[[], dt.datetime]) -> None:
    where = f"{n.channel} to {n.target}"
    try:
        if n.channel not in instances:
            instances[n.channel] = channels.get(n.channel)()
        instances[n.channel].deliver(n, context)
    except TransientDeliveryError as exc:
        _retry(n, claimed_at, context, result, str(exc), exc.retry_after, clock())
        return
    except PermanentDeliveryError as exc:
        _fail(n, claimed_at, context, result, str(exc))
        return
    except WorkbenchError as exc:  # unknown channel or target, undecryptable secrets
        _fail(n, claimed_at, context, result, f"{where}: {exc}")
        return
    except Exception as exc:  # a bug in a channel plug-in: retry, it may be fixed by then
        _retry(n, claimed_at, context, result, f"{where}: unexpected {type(exc).__name__}: {exc}", None, clock())
        return
    checkpoint("notify.after_send")
    sent_at = clock()
    if _finish(context.db, n, claimed_at, status="sent", sent_at=sent_at, last_error=None):
        result.sent += 1
        result.sent_by[(n.org_id, n.channel, sent_at.date())] += 1
        log.info("notification %s sent (%s, attempt %d)", n.id, where, n.attempts)


def _retry(n: Notification, claimed_at: dt.datetime, context: DeliveryContext, result: DispatchResult,
           message: str, retry_after: float | None, failed_at: dt.datetime) -> None:
    error = _redact(message, context.secrets)
    if n.attempts >= context.settings.notify_max_attempts:
        if _finish(context.db, n, claimed_at, status="dead", last_error=error):
            result.dead += 1
            log.error("notification %s dead after %d attempts: %s", n.id, n.attempts, error)
        return
    when = failed_at + backoff(n.attempts, context.settings, retry_after)
    if _finish(context.db, n, claimed_at, status="pending", next_attempt_at=when, last_error=error):
        result.retried += 1
        log.warning("notification %s attempt %d failed, retrying at %s: %s", n.id, n.attempts,
                    when.isoformat(timespec="seconds"), error)


def _fail(n: Notification, claimed_at: dt.datetime, context: DeliveryContext, result: DispatchResult,
          message: str) -> None:
    error = _redact(message, context.secrets)
    if _finish(context.db, n, claimed_at, status="failed", last_error=error):
        result.failed += 1
        log.error("notification %s failed: %s", n.id, error)
