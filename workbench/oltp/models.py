"""OLTP tables (SQLAlchemy 2). Every row that belongs to an organisation carries ``org_id``.

The schema is owned by the Alembic migrations in ``workbench/migrations``; these classes must
match them (a test compares the two).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, dt.datetime: DateTime(timezone=True)}


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the slug, e.g. "acme"
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(String(32), default="standard")  # rate-limit plan
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


class Connection(Base):
    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lookback_days: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now, onupdate=_now)


class Batch(Base):
    """One extraction run of one connection: the lineage key of bronze and everything downstream."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[dt.date] = mapped_column(Date)
    window_end: Mapped[dt.date] = mapped_column(Date)
    extracted_at: Mapped[dt.datetime]
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    streams: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stream -> rows landed
    status: Mapped[str] = mapped_column(String(32), default="landed")  # landed / transformed
    rows_silver: Mapped[int | None] = mapped_column(Integer)
    rows_quarantined: Mapped[int | None] = mapped_column(Integer)
    transformed_at: Mapped[dt.datetime | None]


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    job: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(32), default="running")  # running/succeeded/failed
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[dt.datetime] = mapped_column(default=_now)
    finished_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # scheduled runs: what started it ("schedule", "manual", "event:<seq>", "backfill:<id>"),
    # the slot it ran for, and the executed notebook under WORKBENCH_HOME/runs
    trigger: Mapped[str | None] = mapped_column(String(64))
    scheduled_for: Mapped[dt.datetime | None]
    notebook: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """The ordered per-organisation event log (ingest done -> transform -> gold ready -> ...)."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("org_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


class ConfigVersion(Base):
    """One saved version of a configuration document (a metric definition, later rules...).

    Versions are never changed: a save appends version n+1; a removal appends a version with
    no body. The current document is the highest version.
    """

    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("org_id", "kind", "name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


# -- rules, alerts, actions and notifications (the rule-engine issue) -----------------------

class RuleEvaluation(Base):
    """One evaluation of one rule version: the data it saw, what matched, what it did."""

    __tablename__ = "rule_evaluations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(200))
    rule_version: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[dt.date] = mapped_column(Date)  # the "today" of the windows
    snapshots: Mapped[dict[str, Any]] = mapped_column(default=dict)  # gold table -> Iceberg snapshot id
    evaluated_at: Mapped[dt.datetime] = mapped_column(default=_now)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    fired: Mapped[int] = mapped_column(Integer, default=0)
    matches: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"rows": [{entity, values, fired, why}]}
    actions: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"taken": [...], "skipped": [...]}
    outcome: Mapped[str] = mapped_column(String(32), default="ok")  # ok / capped / failed
    error: Mapped[str | None] = mapped_column(Text)


class RuleState(Base):
    """Per rule and entity: whether it matched last time and when it last fired (transitions, cooldown)."""

    __tablename__ = "rule_states"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True)
    rule: Mapped[str] = mapped_column(String(200), primary_key=True)
    entity: Mapped[str] = mapped_column(String(400), primary_key=True)
    matched: Mapped[bool] = mapped_column(default=False)
    last_fired_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now, onupdate=_now)


class Alert(Base):
    """A rule fired for one entity: what it saw and the message people get."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(200))
    evaluation_id: Mapped[str | None] = mapped_column(ForeignKey("rule_evaluations.id", ondelete="SET NULL"))
    entity: Mapped[str] = mapped_column(String(400))
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    title: Mapped[str] = mapped_column(String(400))
    body: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


class Notification(Base):
    """The outbox: one message to one channel target, delivered by the dispatcher with retries."""

    __tablename__ = "notifications"
    # the dispatcher's question is "what is due?": status and next attempt, across organisations
    __table_args__ = (UniqueConstraint("idempotency_key"), Index("ix_notifications_due", "status", "next_attempt_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))  # email / slack / inapp / webhook
    target: Mapped[str] = mapped_column(String(400))  # address, configured channel name, user
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # subject, text, blocks, alerts...
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/sending/sent/failed/dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=_now)
    claimed_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    sent_at: Mapped[dt.datetime | None]


class InboxMessage(Base):
    """The in-app inbox: one message for one user of an organisation."""

    __tablename__ = "inbox_messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(400))
    body: Mapped[str] = mapped_column(Text, default="")
    notification_id: Mapped[str | None] = mapped_column(String(32), unique=True)  # delivered once
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    read_at: Mapped[dt.datetime | None]


class ActionRequest(Base):
    """A platform action a rule asked for: dry run, waiting for approval, executed, failed or expired.

    ``before``/``after`` are the platform's values around the change; ``undo`` is the request
    that reverts it (a budget change records the old budget).
    """

    __tablename__ = "action_requests"
    __table_args__ = (UniqueConstraint("idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str | None] = mapped_column(String(200))
    evaluation_id: Mapped[str | None] = mapped_column(String(32))
    platform: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(32))  # campaign / ad_group / ad
    entity_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # pause / resume / set_budget / change_budget
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32))  # dry_run/pending_approval/executed/failed/expired/rejected
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    undo: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[dt.datetime | None]
    executed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


class PlatformWrite(Base):
    """The result of a platform write (pause, resume, budget) by idempotency key: a retried
    write with the same key returns this instead of writing again."""

    __tablename__ = "platform_writes"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(200))
    change: Mapped[dict[str, Any]] = mapped_column(default=dict)
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending / done
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


# -- the control plane: identity, access, audit, usage ---------------------------------------

class User(Base):
    """A person (or a service account) who can log in; belongs to organisations by membership."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(Text)  # argon2id; null: cannot log in
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


class Membership(Base):
    """A user's role in one organisation: admin, editor or viewer."""

    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True,
                                        index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)


class ApiToken(Base):
    """A long-lived token for schedulers and scripts: one organisation, one role, stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(128))  # sha256 of the secret part
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class AuditEvent(Base):
    """Who did what, when, to what, with the before and after values."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_at", "org_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str | None] = mapped_column(String(64))  # null: an event of no organisation (a login failure)
    actor: Mapped[str] = mapped_column(String(320))  # "user:ana@example.com", "token:<id>", "local:<login>"
    action: Mapped[str] = mapped_column(String(64))  # "login", "token.create", "role.grant", "config.save"...
    target_kind: Mapped[str] = mapped_column(String(64), default="")
    target_id: Mapped[str] = mapped_column(String(320), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(default=_now)


class UsageRecord(Base):
    """Daily usage totals of an organisation: rows ingested per source, API calls per platform,
    job seconds per job, notifications sent per channel."""

    __tablename__ = "usage_records"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)  # rows_ingested, api_calls, ...
    source: Mapped[str] = mapped_column(String(128), primary_key=True)  # platform, job or channel; "" for none
    quantity: Mapped[float] = mapped_column(default=0.0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now, onupdate=_now)


# -- the scheduler ------------------------------------------------------------------------------

class JobLock(Base):
    """A lease on one job of one organisation, for stores without advisory locks (SQLite):
    held until ``expires_at``; a crashed holder's lease simply runs out."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # "<org>/<job>"
    owner: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[dt.datetime] = mapped_column(default=_now)
    expires_at: Mapped[dt.datetime]


class EventCursor(Base):
    """How far one consumer (a chained stage) has read an organisation's event log, so each
    event starts its stage once."""

    __tablename__ = "event_cursors"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now, onupdate=_now)


class Backfill(Base):
    """A long range cut into windows run in order; ``next_start`` makes it resumable."""

    __tablename__ = "backfills"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    job: Mapped[str] = mapped_column(String(64))
    start: Mapped[dt.date] = mapped_column(Date)
    end: Mapped[dt.date] = mapped_column(Date)
    window_days: Mapped[int] = mapped_column(Integer)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    next_start: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running / done / failed
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now, onupdate=_now)
