"""Usage metering: daily totals per organisation of what the workbench did for it.

Metrics: ``rows_ingested`` (source: the connector), ``api_calls`` (source: the platform),
``job_seconds`` (source: the job), ``notifications_sent`` (source: the channel). ``add`` adds
to the day's total (an upsert, safe from several processes); ``daily`` reads them for the cost
tracker.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import polars as pl
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from workbench.errors import TransientError, ValidationError
from workbench.oltp.db import Oltp
from workbench.oltp.models import UsageRecord

METRICS = ("rows_ingested", "api_calls", "job_seconds", "notifications_sent")
SCHEMA: dict[str, Any] = {"day": pl.Date, "metric": pl.String, "source": pl.String, "quantity": pl.Float64}


def add(db: Oltp, org_id: str, metric: str, quantity: float, source: str = "",
        day: dt.date | None = None) -> None:
    """Add ``quantity`` to the organisation's total of ``metric`` for ``source`` on ``day``
    (default today, UTC). Zero adds nothing."""
    if metric not in METRICS:
        raise ValidationError(f"unknown usage metric '{metric}'; metrics: {', '.join(METRICS)}")
    if not quantity:
        return
    day = day or dt.datetime.now(dt.UTC).date()
    for _ in range(10):
        try:
            with db.session() as s:
                # one UPDATE adding in the database: a read-then-write loses concurrent additions
                # (SQLite's driver only starts the transaction at the first write)
                done = s.execute(update(UsageRecord).where(
                    UsageRecord.org_id == org_id, UsageRecord.day == day, UsageRecord.metric == metric,
                    UsageRecord.source == source).values(quantity=UsageRecord.quantity + quantity)
                ).rowcount  # type: ignore[attr-defined]
                if not done:
                    s.add(UsageRecord(org_id=org_id, day=day, metric=metric, source=source, quantity=quantity))
            return
        except IntegrityError:
            continue  # another process created the day's row first: add to it
    raise TransientError(f"could not record usage {metric} for '{org_id}': too many concurrent writers")


def meter(db: Oltp, org_id: str, metric: str, quantity: float, source: str = "",
          day: dt.date | None = None) -> None:
    """``add``, for the places that meter work: a metering failure is logged, never raised over
    the outcome of the work itself."""
    try:
        add(db, org_id, metric, quantity, source, day)
    except Exception as exc:
        logging.getLogger("workbench.usage").warning("%s %s of '%s' (%s) not metered: %s", quantity, metric,
                                                     org_id, source, exc)


def daily(db: Oltp, org_id: str, start: dt.date | None = None, end: dt.date | None = None,
          metric: str | None = None) -> pl.DataFrame:
    """Daily totals of one organisation (day, metric, source, quantity), oldest first."""
    query = select(UsageRecord).where(UsageRecord.org_id == org_id)
    if start is not None:
        query = query.where(UsageRecord.day >= start)
    if end is not None:
        query = query.where(UsageRecord.day <= end)
    if metric is not None:
        query = query.where(UsageRecord.metric == metric)
    with db.session() as s:
        rows = list(s.scalars(query.order_by(UsageRecord.day, UsageRecord.metric, UsageRecord.source)))
    return pl.DataFrame([{"day": r.day, "metric": r.metric, "source": r.source, "quantity": r.quantity}
                         for r in rows], schema=SCHEMA)
