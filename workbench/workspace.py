"""The notebook API: ``ws = workbench.open("acme")`` and everything an analyst does with it.

Every operation of a workspace is scoped to its organisation: lake reads filter on ``org_id``,
SQL runs with the organisation bound as a parameter, OLTP reads filter on it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from connectors.base import Window
from connectors.registry import connectors
from workbench.errors import NotFoundError, ValidationError
from workbench.formulas.api import Explanation
from workbench.formulas.definitions import MetricChange

if TYPE_CHECKING:
    from workbench.connections import SyncResult
    from workbench.rules.api import Rules
from workbench.lake.schemas import TABLES
from workbench.medallion import pipeline
from workbench.medallion.pipeline import IngestResult, TransformResult
from workbench.oltp import repo
from workbench.oltp.models import Connection
from workbench.settings import Settings
from workbench.stores import Stores, get_stores


def _window(start: dt.date | str | None, end: dt.date | str | None) -> Window | None:
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ValidationError("give both a start and an end date (or neither)")
    s = dt.date.fromisoformat(start) if isinstance(start, str) else start
    e = dt.date.fromisoformat(end) if isinstance(end, str) else end
    if e < s:
        raise ValidationError(f"the end date {e} is before the start date {s}")
    return Window(s, e)


class Workspace:
    """One organisation's view of the workbench."""

    def __init__(self, stores: Stores, org_id: str) -> None:
        self.stores = stores
        self.org = repo.get_org(stores.db, org_id)

    def __repr__(self) -> str:
        return f"<Workspace {self.org.id} ({self.org.name}, {self.org.currency}, {self.org.timezone})>"

    @property
    def settings(self) -> Settings:
        return self.stores.settings

    # -- connections and ingestion -------------------------------------------------------

    def connection(self, source: str, name: str | None = None, settings: dict[str, Any] | None = None,
                   lookback_days: int | None = None,
                   credentials: dict[str, str] | None = None) -> Connection:
        """The named connection (default: named after the source), created or updated."""
        cls = connectors.get(source)
        return repo.upsert_connection(
            self.stores.db, self.settings.credentials_key, self.org.id, name or source, source,
            settings or {}, cls.default_lookback_days if lookback_days is None else lookback_days,
            credentials)

    def connections(self) -> pl.DataFrame:
        """The organisation's connections: platform, look-back, what they can do, data through,
        gaps of the last run, credential fields set (never their values)."""
        from workbench import connections

        return connections.frame(self)

    def add_connection(self, platform: str, name: str | None = None, *, settings: dict[str, Any] | None = None,
                       credentials: dict[str, str] | None = None, lookback_days: int | None = None,
                       update: bool = False) -> Connection:
        """Add a platform connection (``update=True`` changes an existing one), e.g.
        ``ws.add_connection("meta", credentials={"access_token": token}, settings={"account_ids": ["act_1"]})``.
        Credentials are checked against what the connector needs and stored encrypted."""
        from workbench import connections

        return connections.add(self, platform, name, settings=settings, credentials=credentials,
                               lookback_days=lookback_days, update=update)

    def test_connection(self, name: str) -> pl.DataFrame:
        """The accounts the connection's credentials reach; raises what to fix when they fail."""
        from workbench import connections

        return connections.test(self, name)

    def sync(self, *names: str, start: dt.date | str | None = None, end: dt.date | str | None = None,
             transform: bool = True, progress: bool = True) -> SyncResult:
        """Ingest the named connections (default: all active ones) for their default window (new
        days plus the restatement look-back) or ``start``..``end``, then transform."""
        from workbench import connections

        win = _window(start, end)
        return connections.sync(self, list(names) or None, win.start if win else None,
                                win.end if win else None, transform=transform, progress=progress)

    def remove_connection(self, name: str) -> None:
        """Delete a connection and its credentials (landed data stays)."""
        from workbench import connections

        connections.remove(self, name)

    def ingest(self, source: str = "synthetic", start: dt.date | str | None = None,
               end: dt.date | str | None = None, *, file: str | Path | None = None,
               mapping: dict[str, str] | None = None, connection: str | None = None,
               settings: dict[str, Any] | None = None, progress: bool = True) -> IngestResult:
        """Read a window from a source into bronze (one batch).

        ``source="csv"`` reads ``file`` with an optional column ``mapping`` (canonical name ->
        file header); each file name gets its own connection unless ``connection`` is given.
        """
        conn_settings = dict(settings or {})
        if source == "csv":
            if file is None:
                raise ValidationError("a CSV ingest needs a file: ingest('csv', file='export.csv')")
            path = Path(file).expanduser().resolve()
            conn_settings.update({"path": str(path), "mapping": mapping or {}})
            connection = connection or f"csv:{path.stem}"
        elif file is not None:
            raise ValidationError(f"--file is only for the csv source, not {source}")
        existing = {c.name: c for c in repo.list_connections(self.stores.db, self.org.id)}
        name = connection or source
        if name in existing and not conn_settings:
            conn = existing[name]
        else:
            base = existing[name].settings if name in existing else {}
            conn = self.connection(source, name, {**base, **conn_settings})
        return pipeline.ingest(self.settings, self.stores.db, self.stores.lake, self.org, conn,
                               _window(start, end), show_progress=progress)

    def transform(self, start: dt.date | str | None = None, end: dt.date | str | None = None,
                  *, progress: bool = True) -> TransformResult:
        """Bronze -> silver -> gold for pending batches (or every batch overlapping a range)."""
        win = _window(start, end)
        return pipeline.transform(self.settings, self.stores.db, self.stores.lake, self.org,
                                  win.start if win else None, win.end if win else None,
                                  show_progress=progress)

    # -- reading ---------------------------------------------------------------------------

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run ClickHouse SQL over the lake tables (``gold.performance_daily``...), this
        organisation's rows only. Bind values as ``{name:Type}`` placeholders with ``params``."""
        return self.stores.warehouse.query(sql, params, org=self.org.id)

    def table(self, name: str, start: dt.date | str | None = None,
              end: dt.date | str | None = None) -> pl.DataFrame:
        """This organisation's rows of a lake table, optionally for a date range."""
        if name not in TABLES:
            raise NotFoundError(f"unknown table '{name}'; tables: {', '.join(sorted(TABLES))}")
        lf = self.stores.lake.scan(name)
        if TABLES[name].org_scoped:
            lf = lf.filter(pl.col("org_id") == self.org.id)
        win = _window(start, end)
        if win is not None:
            if "date" not in TABLES[name].column_names:
                raise ValidationError(f"{name} has no date column to filter on")
            lf = lf.filter(pl.col("date").is_between(win.start, win.end))
        return lf.collect()

    # -- rules ---------------------------------------------------------------------------------

    @property
    def rules(self) -> Rules:
        """Rules: ``ws.rules.list()``, ``.define(doc)``, ``.preview(name)``, ``.backtest(name, start, end)``,
        ``.evaluate()``, ``.history()``."""
        from workbench.rules.api import Rules

        return Rules(self)

    # -- metrics -----------------------------------------------------------------------------

    def metrics(self, metrics: list[str] | dict[str, str], by: list[str] | None = None, where: str | None = None,
                start: dt.date | str | None = None, end: dt.date | str | None = None, *, engine: str = "sql",
                formatted: bool = False) -> pl.DataFrame:
        """Metrics (names or formulas) aggregated by dimensions, as ratios of sums.

        ``ws.metrics(["spend", "cpa", "roas"], by=["platform"], where="platform IN ('meta', 'ttd')",
        start="2026-10-01", end="2026-10-31")``. ``engine`` is "sql" (the query engine) or
        "polars"; both give the same frame. ``formatted=True`` returns display strings.
        """
        from workbench.formulas import api
        from workbench.formulas.display import format_frame

        win = _window(start, end)
        frame, formats = api.run(self.stores, self.org.id, metrics, by, where, win.start if win else None,
                                 win.end if win else None, engine)
        return format_frame(frame, formats, self.org.currency) if formatted else frame

    def define_metric(self, name: str, formula: str, *, description: str = "", unit: str | None = None,
                      format: str | None = None, comment: str = "") -> MetricChange:
        """Validate and store this organisation's definition of a metric (a new version)."""
        from workbench.formulas import definitions

        return definitions.define(self.stores.db, self.org.id, name, formula, description=description,
                                  unit=unit, format=format, comment=comment)

    def remove_metric(self, name: str, *, comment: str = "") -> MetricChange:
        """Remove this organisation's definition of a metric (a pack's definition returns)."""
        from workbench.formulas import definitions

        return definitions.remove(self.stores.db, self.org.id, name, comment=comment)

    def metric_catalog(self) -> pl.DataFrame:
        """Every name formulas can use: base metrics, derived metrics and dimensions."""
        from workbench.formulas import api
        from workbench.formulas.definitions import load_catalog

        return api.catalog_frame(load_catalog(self.stores.db, self.org.id))

    def metric_history(self, name: str) -> pl.DataFrame:
        """Every version of this organisation's definition of ``name``."""
        from workbench.formulas import definitions

        rows = definitions.history(self.stores.db, self.org.id, name)
        return pl.DataFrame([{"version": r.version, "created_at": r.created_at, "author": r.author,
                              "comment": r.comment, "formula": (r.body or {}).get("formula"),
                              "removed": r.body is None} for r in rows])

    def explain(self, name_or_formula: str) -> Explanation:
        """Dependency tree, unit, dependents and generated SQL of a metric or formula."""
        from workbench.formulas import api
        from workbench.formulas.definitions import load_catalog

        return api.explain(load_catalog(self.stores.db, self.org.id), name_or_formula)

    def quarantine(self) -> pl.DataFrame:
        """Quarantined records with their reasons, newest first."""
        return self.table("silver.quarantine").sort("quarantined_at", "record_index",
                                                    descending=[True, False])

    def status(self) -> dict[str, pl.DataFrame]:
        """Row counts per table, freshness per connection, quarantine counts, last runs."""
        from workbench.status import workspace_status

        return workspace_status(self)


def open(org: str, settings: Settings | None = None) -> Workspace:
    """Open the workspace of organisation ``org`` (stores are created on first use)."""
    return Workspace(get_stores(settings), org)


def create_org(slug: str, name: str, currency: str = "USD", timezone: str = "UTC", *,
               exist_ok: bool = False, settings: Settings | None = None) -> Workspace:
    """Create an organisation (slug, display name, reporting currency, IANA time zone) and open it."""
    stores = get_stores(settings)
    repo.create_org(stores.db, slug, name, currency, timezone, exist_ok=exist_ok)
    return Workspace(stores, slug)
