"""The notebook API: ``ws = workbench.open("acme")`` and everything an analyst does with it.

Every operation of a workspace is scoped to its organisation: lake reads filter on ``org_id``,
SQL runs with the organisation bound as a parameter, OLTP reads filter on it. Every public
operation runs under the workspace's request context (``ws.ctx``: who, which organisation,
which role) and checks the permission it needs first (``workbench.auth.permissions``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from connectors.base import Window
from connectors.registry import connectors
from workbench.auth.context import RequestContext, acts_as_operator
from workbench.auth.permissions import requires
from workbench.errors import AuthenticationError, IsolationError, NotFoundError, ValidationError
from workbench.formulas.api import Explanation
from workbench.formulas.definitions import MetricChange

if TYPE_CHECKING:
    from workbench.config_service import WorkspaceConfigs
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

    def __init__(self, stores: Stores, org_id: str, ctx: RequestContext | None = None) -> None:
        if ctx is None:
            if not acts_as_operator(stores.settings.auth):
                raise AuthenticationError(f"opening '{org_id}' needs a login or an API token: "
                                          f"wb.open('{org_id}', token=...) or wb.login(email, org='{org_id}')")
            ctx = RequestContext.local(org_id)
        if ctx.org_id != org_id:
            raise IsolationError(f"{ctx.actor} acts for organisation '{ctx.org_id}', not '{org_id}'")
        self.stores = stores
        self.ctx = ctx
        self.token: str | None = None  # the access token, after wb.login
        self.org = repo.get_org(stores.db, org_id)

    def __repr__(self) -> str:
        return (f"<Workspace {self.org.id} ({self.org.name}, {self.org.currency}, {self.org.timezone}) "
                f"as {self.ctx.actor} ({self.ctx.role})>")

    @property
    def org_id(self) -> str:
        return self.org.id

    def throttle(self, cost: float = 1) -> None:
        """Take from the user's and the organisation's rate-limit buckets (``RateLimitedError``
        with the retry time when either is empty). The local operator is not limited: it is the
        machine's owner, not one of several users sharing it."""
        if self.ctx.actor.startswith("local:"):
            return
        from workbench import ratelimit

        s = self.stores.settings
        ratelimit.enforce(ratelimit.rate_limiter(s), ratelimit.load_plans(s), plan=self.org.plan,
                          user=self.ctx.actor, org_id=self.org.id, cost=cost)

    @property
    def settings(self) -> Settings:
        return self.stores.settings

    # -- connections and ingestion -------------------------------------------------------

    @requires("connections.manage")
    def connection(self, source: str, name: str | None = None, settings: dict[str, Any] | None = None,
                   lookback_days: int | None = None,
                   credentials: dict[str, str] | None = None) -> Connection:
        """The named connection (default: named after the source), created or updated."""
        return self._upsert_connection(source, name, settings, lookback_days, credentials)

    def _upsert_connection(self, source: str, name: str | None, settings: dict[str, Any] | None,
                           lookback_days: int | None = None,
                           credentials: dict[str, str] | None = None) -> Connection:
        # unguarded: ingest (an editor's) creates the credential-free csv and synthetic connections
        cls = connectors.get(source)
        return repo.upsert_connection(
            self.stores.db, self.settings.credentials_key, self.org.id, name or source, source,
            settings or {}, cls.default_lookback_days if lookback_days is None else lookback_days,
            credentials)

    @requires("data.read")
    def connections(self) -> pl.DataFrame:
        """The organisation's connections: platform, look-back, what they can do, data through,
        gaps of the last run, credential fields set (never their values)."""
        from workbench import connections

        return connections.frame(self)

    @requires("connections.manage")
    def add_connection(self, platform: str, name: str | None = None, *, settings: dict[str, Any] | None = None,
                       credentials: dict[str, str] | None = None, lookback_days: int | None = None,
                       update: bool = False) -> Connection:
        """Add a platform connection (``update=True`` changes an existing one), e.g.
        ``ws.add_connection("meta", credentials={"access_token": token}, settings={"account_ids": ["act_1"]})``.
        Credentials are checked against what the connector needs and stored encrypted."""
        from workbench import connections

        return connections.add(self, platform, name, settings=settings, credentials=credentials,
                               lookback_days=lookback_days, update=update)

    @requires("connections.manage")
    def test_connection(self, name: str) -> pl.DataFrame:
        """The accounts the connection's credentials reach; raises what to fix when they fail."""
        from workbench import connections

        return connections.test(self, name)

    @requires("data.write")
    def sync(self, *names: str, start: dt.date | str | None = None, end: dt.date | str | None = None,
             transform: bool = True, progress: bool = True) -> SyncResult:
        """Ingest the named connections (default: all active ones) for their default window (new
        days plus the restatement look-back) or ``start``..``end``, then transform."""
        from workbench import connections

        win = _window(start, end)
        return connections.sync(self, list(names) or None, win.start if win else None,
                                win.end if win else None, transform=transform, progress=progress)

    @requires("connections.manage")
    def remove_connection(self, name: str) -> None:
        """Delete a connection and its credentials (landed data stays)."""
        from workbench import connections

        connections.remove(self, name)

    @requires("data.write")
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
            if connectors.get(source).credential_fields:
                raise ValidationError(f"add the {source} connection first (it needs credentials): "
                                      f"ws.add_connection('{source}', ...) or workbench connections add {source}")
            conn = self._upsert_connection(source, name, {**base, **conn_settings})
        return pipeline.ingest(self.settings, self.stores.db, self.stores.lake, self.org, conn,
                               _window(start, end), show_progress=progress)

    @requires("data.write")
    def transform(self, start: dt.date | str | None = None, end: dt.date | str | None = None,
                  *, progress: bool = True) -> TransformResult:
        """Bronze -> silver -> gold for pending batches (or every batch overlapping a range)."""
        win = _window(start, end)
        return pipeline.transform(self.settings, self.stores.db, self.stores.lake, self.org,
                                  win.start if win else None, win.end if win else None,
                                  show_progress=progress)

    # -- reading ---------------------------------------------------------------------------

    @requires("data.read")
    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run ClickHouse SQL over the lake tables (``gold.performance_daily``...), this
        organisation's rows only. Bind values as ``{name:Type}`` placeholders with ``params``."""
        return self.stores.warehouse.query(sql, params, org=self.org.id)

    @requires("data.read")
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
    def config(self) -> WorkspaceConfigs:
        """The organisation's versioned configuration documents (connections, metrics, rules,
        budgets, schedules, channels): show, history, diff, set, rollback; permissions checked
        per operation."""
        from workbench.config_service import WorkspaceConfigs

        return WorkspaceConfigs(self)

    @property
    def rules(self) -> Rules:
        """Rules: ``ws.rules.list()``, ``.define(doc)``, ``.preview(name)``, ``.backtest(name, start, end)``,
        ``.evaluate()``, ``.history()``."""
        from workbench.rules.api import Rules

        return Rules(self)

    # -- metrics -----------------------------------------------------------------------------

    @requires("data.read")
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

    @requires("config.write")
    def define_metric(self, name: str, formula: str, *, description: str = "", unit: str | None = None,
                      format: str | None = None, comment: str = "") -> MetricChange:
        """Validate and store this organisation's definition of a metric (a new version)."""
        from workbench import config_service
        from workbench.formulas import definitions

        change = definitions.define(self.stores.db, self.org.id, name, formula, description=description,
                                    unit=unit, format=format, comment=comment, author=self.ctx.author)
        config_service.audit_version(self.stores.db, self.org.id, "metric", name, change.version,
                                     actor=self.ctx.actor)
        return change

    @requires("config.write")
    def remove_metric(self, name: str, *, comment: str = "") -> MetricChange:
        """Remove this organisation's definition of a metric (a pack's definition returns)."""
        from workbench import config_service
        from workbench.formulas import definitions

        change = definitions.remove(self.stores.db, self.org.id, name, comment=comment, author=self.ctx.author)
        config_service.audit_version(self.stores.db, self.org.id, "metric", name, change.version,
                                     actor=self.ctx.actor)
        return change

    @requires("data.read")
    def metric_catalog(self) -> pl.DataFrame:
        """Every name formulas can use: base metrics, derived metrics and dimensions."""
        from workbench.formulas import api
        from workbench.formulas.definitions import load_catalog

        return api.catalog_frame(load_catalog(self.stores.db, self.org.id))

    @requires("data.read")
    def metric_history(self, name: str) -> pl.DataFrame:
        """Every version of this organisation's definition of ``name``."""
        from workbench.formulas import definitions

        rows = definitions.history(self.stores.db, self.org.id, name)
        return pl.DataFrame([{"version": r.version, "created_at": r.created_at, "author": r.author,
                              "comment": r.comment, "formula": (r.body or {}).get("formula"),
                              "removed": r.body is None} for r in rows])

    @requires("data.read")
    def explain(self, name_or_formula: str) -> Explanation:
        """Dependency tree, unit, dependents and generated SQL of a metric or formula."""
        from workbench.formulas import api
        from workbench.formulas.definitions import load_catalog

        return api.explain(load_catalog(self.stores.db, self.org.id), name_or_formula)

    @requires("data.read")
    def quarantine(self) -> pl.DataFrame:
        """Quarantined records with their reasons, newest first."""
        return self.table("silver.quarantine").sort("quarantined_at", "record_index",
                                                    descending=[True, False])

    # -- members, tokens, audit and usage ---------------------------------------------------

    @requires("members.manage")
    def members(self) -> pl.DataFrame:
        """The organisation's users and their roles."""
        from workbench.auth import service

        return service.members(self.stores.db, self.org.id)

    @requires("members.manage")
    def grant(self, email: str, role: str) -> None:
        """Give ``email`` the ``role`` (viewer, editor, admin) in this organisation; audited."""
        from workbench.auth import service

        service.grant(self.stores.db, self.org.id, email, role, actor=self.ctx.actor)

    @requires("members.manage")
    def revoke_member(self, email: str) -> None:
        """Remove ``email`` from this organisation (their tokens for it stop working); audited."""
        from workbench.auth import service

        service.revoke(self.stores.db, self.org.id, email, actor=self.ctx.actor)

    @requires("tokens.manage")
    def create_token(self, name: str, role: str = "viewer", expires_at: dt.datetime | None = None) -> str:
        """A new API token for this organisation (shown once; only its hash is kept); audited."""
        from workbench.auth import service

        return service.create_token(self.stores.db, self.ctx, name, role, expires_at)

    @requires("tokens.manage")
    def tokens(self) -> pl.DataFrame:
        """The organisation's API tokens (never their secrets)."""
        from workbench.auth import api_tokens

        return api_tokens.listing(self.stores.db, self.org.id)

    @requires("tokens.manage")
    def revoke_token(self, token_id: str) -> None:
        from workbench.auth import service

        service.revoke_token(self.stores.db, self.ctx, token_id)

    @requires("audit.read")
    def audit(self, action: str | None = None, limit: int = 1000) -> pl.DataFrame:
        """The organisation's newest audit events: who, when, what, before and after."""
        from workbench import audit

        return audit.events(self.stores.db, self.org.id, action=action, limit=limit)

    @requires("audit.read")
    def usage(self, start: dt.date | str | None = None, end: dt.date | str | None = None,
              metric: str | None = None) -> pl.DataFrame:
        """Daily usage totals: rows ingested per source, API calls per platform, job seconds,
        notifications sent."""
        from workbench import usage

        def day(value: dt.date | str | None) -> dt.date | None:
            return dt.date.fromisoformat(value) if isinstance(value, str) else value

        return usage.daily(self.stores.db, self.org.id, day(start), day(end), metric)

    @requires("data.read")
    def status(self) -> dict[str, pl.DataFrame]:
        """Row counts per table, freshness per connection, quarantine counts, last runs."""
        from workbench.status import workspace_status

        return workspace_status(self)


def open(org: str, settings: Settings | None = None, *, token: str | None = None) -> Workspace:
    """Open the workspace of organisation ``org`` (stores are created on first use).

    ``token`` is an access token from ``login`` or an API token (default: the ``WORKBENCH_TOKEN``
    environment variable); without one, an install with ``auth = "local"`` acts as its local
    operator and one with ``auth = "required"`` refuses."""
    import os

    stores = get_stores(settings)
    settings = settings or stores.settings  # stores are shared per storage; the auth mode is the caller's
    token = token or os.environ.get("WORKBENCH_TOKEN") or None
    if token is None:
        if not acts_as_operator(settings.auth):
            raise AuthenticationError(f"opening '{org}' needs a login or an API token: "
                                      f"wb.open('{org}', token=...) or wb.login(email, org='{org}')")
        return Workspace(stores, org, RequestContext.local(org))
    from workbench.auth.service import context_for

    return Workspace(stores, org, context_for(stores.db, settings, token, org_id=org))


def login(email: str, org: str, password: str | None = None, settings: Settings | None = None,
          *, address: str | None = None) -> Workspace:
    """Log in (the password is asked for, hidden, when not given) and open ``org`` as that user.
    ``ws.token`` is the access token, for other processes (``WORKBENCH_TOKEN``)."""
    import getpass

    from workbench.auth.service import login as check

    stores = get_stores(settings)
    secret = password if password is not None else getpass.getpass(f"password for {email}: ")
    token = check(stores.db, stores.settings, email, secret, org, address=address)
    ws = open(org, settings, token=token)
    ws.token = token
    return ws


def create_org(slug: str, name: str, currency: str = "USD", timezone: str = "UTC", *,
               exist_ok: bool = False, settings: Settings | None = None) -> Workspace:
    """Create an organisation (slug, display name, reporting currency, IANA time zone) and open
    it. Only the local operator (``auth = "local"``) creates organisations this way; a shared
    install's admins use ``workbench orgs add``."""
    stores = get_stores(settings)
    if not acts_as_operator(stores.settings.auth):
        raise AuthenticationError("creating an organisation needs the workbench's operator: workbench orgs add")
    repo.create_org(stores.db, slug, name, currency, timezone, exist_ok=exist_ok)
    return Workspace(stores, slug)
