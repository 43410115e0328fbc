"""Reads and writes of the OLTP store, each scoped to one organisation."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from workbench.errors import ConfigError, NotFoundError, ValidationError
from workbench.oltp.db import Oltp
from workbench.oltp.models import Batch, Connection, Event, JobRun, Organisation
from workbench.settings import new_id

SLUG = re.compile(r"^[a-z][a-z0-9-]{1,62}$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- organisations -------------------------------------------------------------------------

def create_org(db: Oltp, slug: str, name: str, currency: str = "USD", timezone: str = "UTC",
               exist_ok: bool = False) -> Organisation:
    """Create an organisation; ``slug`` is its id everywhere (lake rows, URLs, CLI)."""
    if not SLUG.match(slug):
        raise ValidationError(f"organisation slug '{slug}' must be 2-63 lowercase letters, digits "
                              "or '-', starting with a letter")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValidationError(f"currency '{currency}' must be a 3-letter ISO code such as USD or EUR")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"time zone '{timezone}' is unknown; use an IANA name such as "
                              "Europe/Paris") from None
    with db.session() as s:
        existing = s.get(Organisation, slug)
        if existing is not None:
            if exist_ok:
                return existing
            raise ValidationError(f"organisation '{slug}' already exists")
        org = Organisation(id=slug, name=name, currency=currency, timezone=timezone)
        s.add(org)
        return org


def get_org(db: Oltp, slug: str) -> Organisation:
    with db.session() as s:
        org = s.get(Organisation, slug)
        if org is None:
            known = ", ".join(o.id for o in s.scalars(select(Organisation).order_by(Organisation.id)))
            raise NotFoundError(f"organisation '{slug}' does not exist (known: {known or 'none'}); "
                                "create it with `workbench orgs add` or run `workbench demo`")
        return org


def list_orgs(db: Oltp) -> list[Organisation]:
    with db.session() as s:
        return list(s.scalars(select(Organisation).order_by(Organisation.id)))


# -- connections ---------------------------------------------------------------------------

def _fernet(key: bytes) -> Fernet:
    return Fernet(key)


def encrypt_credentials(key: bytes, credentials: dict[str, str]) -> str:
    return _fernet(key).encrypt(json.dumps(credentials).encode()).decode()


def decrypt_credentials(key: bytes, token: str | None) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_fernet(key).decrypt(token.encode()))
    except InvalidToken:
        raise ConfigError("stored credentials cannot be decrypted with the configured secret key; "
                          "set WORKBENCH_SECRET_KEY to the key they were saved with, or re-add "
                          "the connection") from None


def upsert_connection(db: Oltp, key: bytes, org_id: str, name: str, platform: str,
                      settings: dict[str, Any], lookback_days: int,
                      credentials: dict[str, str] | None = None) -> Connection:
    """Create the named connection of an organisation, or update its settings."""
    with db.session() as s:
        conn = s.scalar(select(Connection).where(Connection.org_id == org_id, Connection.name == name))
        if conn is None:
            conn = Connection(id=new_id(), org_id=org_id, name=name, platform=platform, state={},
                              settings=settings, lookback_days=lookback_days)
            s.add(conn)
        elif conn.platform != platform:
            raise ValidationError(f"connection '{name}' of '{org_id}' is a {conn.platform} "
                                  f"connection, not {platform}; choose another name")
        conn.settings = settings
        conn.lookback_days = lookback_days
        if credentials is not None:
            conn.credentials_encrypted = encrypt_credentials(key, credentials)
        return conn


def list_connections(db: Oltp, org_id: str) -> list[Connection]:
    with db.session() as s:
        return list(s.scalars(select(Connection).where(Connection.org_id == org_id)
                              .order_by(Connection.name)))


def update_credentials(db: Oltp, key: bytes, org_id: str, connection_id: str,
                       update: dict[str, str]) -> None:
    """Merge ``update`` (a refreshed access token, a rotated refresh token) into the stored,
    encrypted credentials of a connection."""
    with db.session() as s:
        conn = s.get(Connection, connection_id)
        if conn is None or conn.org_id != org_id:
            raise NotFoundError(f"connection {connection_id} not found in '{org_id}'")
        current = decrypt_credentials(key, conn.credentials_encrypted)
        conn.credentials_encrypted = encrypt_credentials(key, {**current, **update})


def get_connection(db: Oltp, org_id: str, name: str) -> Connection:
    with db.session() as s:
        conn = s.scalar(select(Connection).where(Connection.org_id == org_id, Connection.name == name))
    if conn is None:
        known = ", ".join(c.name for c in list_connections(db, org_id)) or "none"
        raise NotFoundError(f"no connection '{name}' in '{org_id}' (connections: {known}); "
                            "add one with workbench connections add")
    return conn


def remove_connection(db: Oltp, org_id: str, name: str) -> None:
    """Delete a connection and its batch records; what it landed stays in the lake."""
    conn = get_connection(db, org_id, name)
    with db.session() as s:
        s.execute(delete(Batch).where(Batch.org_id == org_id, Batch.connection_id == conn.id))
        row = s.get(Connection, conn.id)
        if row is not None:
            s.delete(row)


def save_connection_state(db: Oltp, org_id: str, connection_id: str, state: dict[str, Any]) -> None:
    with db.session() as s:
        conn = s.get(Connection, connection_id)
        if conn is None or conn.org_id != org_id:
            raise NotFoundError(f"connection {connection_id} not found in '{org_id}'")
        conn.state = state


# -- batches -------------------------------------------------------------------------------

def record_batch(db: Oltp, batch: Batch) -> None:
    with db.session() as s:
        s.add(batch)


def pending_batches(db: Oltp, org_id: str, start: dt.date | None = None,
                    end: dt.date | None = None) -> list[Batch]:
    """Batches to transform: those not transformed yet, plus every batch overlapping
    [start, end] when a range is given (a re-transform), oldest extraction first."""
    with db.session() as s:
        q = select(Batch).where(Batch.org_id == org_id)
        if start is not None and end is not None:
            q = q.where((Batch.status == "landed") |
                        ((Batch.window_start <= end) & (Batch.window_end >= start)))
        else:
            q = q.where(Batch.status == "landed")
        return list(s.scalars(q.order_by(Batch.extracted_at, Batch.id)))


def mark_batch_transformed(db: Oltp, org_id: str, batch_id: str, rows_silver: int,
                           rows_quarantined: int) -> None:
    with db.session() as s:
        b = s.get(Batch, batch_id)
        if b is None or b.org_id != org_id:
            raise NotFoundError(f"batch {batch_id} not found in '{org_id}'")
        b.status, b.rows_silver, b.rows_quarantined = "transformed", rows_silver, rows_quarantined
        b.transformed_at = _now()


def list_batches(db: Oltp, org_id: str) -> list[Batch]:
    with db.session() as s:
        return list(s.scalars(select(Batch).where(Batch.org_id == org_id)
                              .order_by(Batch.extracted_at)))


# -- job runs and events -------------------------------------------------------------------

@contextmanager
def job_run(db: Oltp, org_id: str, job: str, parameters: dict[str, Any]) -> Iterator[JobRun]:
    """Record a job run: started now, succeeded or failed (with the error) when the block ends.

    Its duration is metered as ``job_seconds`` of ``job`` either way (a failed run used the
    machine too); a metering failure is logged, never raised over the job's own outcome."""
    import time

    from workbench import usage

    def meter() -> None:
        usage.meter(db, org_id, "job_seconds", time.monotonic() - started, job)

    run = JobRun(id=new_id(), org_id=org_id, job=job, parameters=parameters, status="running",
                 summary={})
    with db.session() as s:
        s.add(run)
    started = time.monotonic()  # not the wall clock: a clock step must not skew the metered seconds
    try:
        yield run
    except BaseException as exc:
        with db.session() as s:
            row = s.get(JobRun, run.id)
            assert row is not None
            row.status, row.finished_at = "failed", _now()
            row.error = f"{type(exc).__name__}: {exc}"[:4000]
        meter()
        raise
    with db.session() as s:
        row = s.get(JobRun, run.id)
        assert row is not None
        row.status, row.finished_at, row.summary = "succeeded", _now(), run.summary
    meter()


def last_runs(db: Oltp, org_id: str, limit: int = 10) -> list[JobRun]:
    with db.session() as s:
        return list(s.scalars(select(JobRun).where(JobRun.org_id == org_id)
                              .order_by(JobRun.started_at.desc()).limit(limit)))


def append_event(db: Oltp, org_id: str, kind: str, payload: dict[str, Any]) -> Event:
    """Append to the organisation's ordered event log (the sequence number is per organisation)."""
    for _ in range(20):
        try:
            with db.session() as s:
                seq = (s.scalar(select(func.max(Event.seq)).where(Event.org_id == org_id)) or 0) + 1
                ev = Event(org_id=org_id, seq=seq, kind=kind, payload=payload)
                s.add(ev)
            return ev
        except IntegrityError:
            continue  # another writer took this sequence number; take the next one
    raise ConfigError(f"could not append an event for '{org_id}' after 20 attempts")


def events(db: Oltp, org_id: str, after_seq: int = 0) -> list[Event]:
    with db.session() as s:
        return list(s.scalars(select(Event).where(Event.org_id == org_id, Event.seq > after_seq)
                              .order_by(Event.seq)))
