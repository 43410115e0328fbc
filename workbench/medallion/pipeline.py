"""The medallion steps as the workspace runs them: ingest (connector -> bronze) and transform
(bronze -> silver -> gold), each recorded as a job run and announced on the event log."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from connectors.base import ConnectionConfig, Connector, Gap, Window
from connectors.registry import connectors
from workbench import faults, usage
from workbench.lake.catalog import Lake
from workbench.medallion import bronze, gold
from workbench.medallion.rates import load_rates
from workbench.medallion.silver import BatchInfo, transform_batch
from workbench.oltp import repo
from workbench.oltp.db import Oltp
from workbench.oltp.models import Batch, Connection, Organisation
from workbench.progress import progress
from workbench.settings import Settings, new_id

def org_today(org: Organisation) -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo(org.timezone)).date()


@dataclass
class IngestResult:
    batch_id: str | None
    connection: str
    window: Window
    rows: int
    streams: dict[str, int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    api_calls: int = 0


@dataclass
class TransformResult:
    batches: int = 0
    rows_in: int = 0
    rows_silver: int = 0
    rows_quarantined: int = 0
    gold_rows: dict[str, int] = field(default_factory=dict)
    dates: list[dt.date] = field(default_factory=list)


def open_connector(settings: Settings, db: Oltp, org: Organisation, conn: Connection,
                   extra_state: dict[str, Any] | None = None) -> Connector:
    """The connector of ``conn`` with its decrypted credentials; refreshed tokens are stored
    back, encrypted, as soon as the platform issues them."""
    cls = connectors.get(conn.platform)
    key = settings.credentials_key

    def keep(update: dict[str, str]) -> None:
        repo.update_credentials(db, key, org.id, conn.id, update)

    config = ConnectionConfig(
        org_id=org.id, connection_id=conn.id, settings=conn.settings,
        credentials=repo.decrypt_credentials(key, conn.credentials_encrypted),
        state={**conn.state, **(extra_state or {})}, lookback_days=conn.lookback_days,
        org_currency=org.currency, org_timezone=org.timezone, on_credentials=keep)
    return cls(config)


def ingest(settings: Settings, db: Oltp, lake: Lake, org: Organisation, conn: Connection,
           window: Window | None, *, show_progress: bool = True,
           extra_state: dict[str, Any] | None = None) -> IngestResult:
    """Read ``window`` from the connection and land it in bronze as one batch.

    Nothing lands unless the whole read succeeds: a final platform error leaves bronze, silver
    and the connection's state as they were, and the run recorded as failed with the error.
    Usage: ``rows_ingested`` of the platform once the batch landed; ``api_calls`` of the
    platform whatever the outcome (a failed read spent the platform's quota too)."""
    connector = open_connector(settings, db, org, conn, extra_state)
    try:
        return _ingest(settings, db, lake, org, conn, connector, window, show_progress)
    finally:
        calls = connector.api_calls  # before close(): a closed client no longer counts
        connector.close()
        usage.meter(db, org.id, "api_calls", calls, conn.platform)


def _ingest(settings: Settings, db: Oltp, lake: Lake, org: Organisation, conn: Connection,
            connector: Connector, window: Window | None, show_progress: bool) -> IngestResult:
    win = connector.resolve_window(window, org_today(org))
    batch_id = new_id()
    extracted_at = dt.datetime.now(dt.UTC)
    params = {"source": conn.platform, "connection": conn.name, "from": win.start.isoformat(),
              "to": win.end.isoformat()}
    with repo.job_run(db, org.id, "ingest", params) as run, \
            progress(total=None, desc=f"ingest {conn.name}", unit="rec",
                     enabled=show_progress and settings.progress) as bar:
        counts = bronze.land(lake, connector.read(win), org_id=org.id, source=conn.platform,
                             connection_id=conn.id, batch_id=batch_id, window=win,
                             extracted_at=extracted_at, on_page=bar.update)
        faults.checkpoint("ingest.after_bronze")
        rows = sum(counts.values())
        if rows:
            repo.record_batch(db, Batch(id=batch_id, org_id=org.id, connection_id=conn.id,
                                        source=conn.platform, window_start=win.start,
                                        window_end=win.end, extracted_at=extracted_at,
                                        rows_in=rows, streams=dict(counts), status="landed"))
            # metered here, not at the end of the run: from now on the batch is in bronze and
            # will be transformed even if a later step of this run fails
            usage.meter(db, org.id, "rows_ingested", rows, conn.platform)
        gaps = connector.gaps(win)
        gap_text = [g.describe() for g in gaps]
        repo.save_connection_state(db, org.id, conn.id, {**conn.state, **connector.next_state(win),
                                                         "last_gaps": gap_text})
        run.summary = {"batch_id": batch_id if rows else None, "rows": rows, "streams": dict(counts),
                       "api_calls": connector.api_calls, "gaps": gap_text}
    if rows:
        repo.append_event(db, org.id, "ingest.done", {"batch_id": batch_id, "rows": rows,
                                                      "connection": conn.name, "gaps": gap_text})
    return IngestResult(batch_id if rows else None, conn.name, win, rows, dict(counts), gaps,
                        connector.api_calls)


def _with_later_overlaps(selected: list[Batch], all_batches: list[Batch]) -> list[Batch]:
    """Add every later batch of the same connection that overlaps a selected one, so that
    reprocessing an old batch never leaves its older figures on top of newer ones."""
    chosen = {b.id: b for b in selected}
    changed = True
    while changed:
        changed = False
        for b in all_batches:
            if b.id in chosen:
                continue
            if any(c.connection_id == b.connection_id and b.extracted_at > c.extracted_at
                   and b.window_start <= c.window_end and b.window_end >= c.window_start
                   for c in chosen.values()):
                chosen[b.id] = b
                changed = True
    return sorted(chosen.values(), key=lambda b: (b.extracted_at, b.id))


def transform(settings: Settings, db: Oltp, lake: Lake, org: Organisation,
              start: dt.date | None = None, end: dt.date | None = None, *,
              show_progress: bool = True) -> TransformResult:
    """Parse pending batches (or every batch overlapping [start, end]) into silver, then gold."""
    selected = repo.pending_batches(db, org.id, start, end)
    batches = _with_later_overlaps(selected, repo.list_batches(db, org.id))
    conns = {c.id: c for c in repo.list_connections(db, org.id)}
    result = TransformResult()
    params = {"from": start.isoformat() if start else None, "to": end.isoformat() if end else None}
    with repo.job_run(db, org.id, "transform", params) as run:
        rates = load_rates(lake)
        today = org_today(org)
        perf_dates: set[dt.date] = set()
        deal_dates: set[dt.date] = set()
        with progress(total=len(batches), desc="silver", unit="batch",
                      enabled=show_progress and settings.progress) as bar:
            for b in batches:
                conn = conns[b.connection_id]
                info = BatchInfo(b.id, org.id, b.source, b.connection_id, b.window_start,
                                 b.window_end, dict(conn.settings), conn.lookback_days)
                out = transform_batch(lake, info, rates, org.currency, today)
                faults.checkpoint("transform.after_silver")
                repo.mark_batch_transformed(db, org.id, b.id, out.rows_silver, out.rows_quarantined)
                result.batches += 1
                result.rows_in += out.rows_in
                result.rows_silver += out.rows_silver
                result.rows_quarantined += out.rows_quarantined
                perf_dates |= out.performance_dates
                deal_dates |= out.deal_dates
                bar.update(1)
        if batches:
            repo.append_event(db, org.id, "silver.ready", {"batches": [b.id for b in batches]})
        with progress(total=2, desc="gold", unit="table",
                      enabled=show_progress and settings.progress and bool(perf_dates or deal_dates)) as bar:
            result.gold_rows.update(gold.build_performance(lake, org.id, org.currency, perf_dates, rates))
            bar.update(1)
            result.gold_rows.update(gold.build_crm(lake, org.id, org.currency, deal_dates))
            bar.update(1)
        result.dates = sorted(perf_dates | deal_dates)
        run.summary = {"batches": result.batches, "rows_in": result.rows_in,
                       "rows_silver": result.rows_silver,
                       "rows_quarantined": result.rows_quarantined, "gold_rows": result.gold_rows}
    if result.dates:
        repo.append_event(db, org.id, "gold.ready", {
            "from": result.dates[0].isoformat(), "to": result.dates[-1].isoformat(),
            "tables": sorted(result.gold_rows)})
    return result
