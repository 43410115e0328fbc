"""Connections of an organisation: add (validated against the connector), test, sync, remove.

The notebook API (``ws.add_connection``, ``ws.test_connection``, ``ws.sync``,
``ws.remove_connection``) and ``workbench connections ...`` both call these. Credentials are
stored encrypted with the settings' key and never returned: listings show which credential
fields are set, not their values.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from connectors.base import Connector, CredentialField, Window
from connectors.registry import connectors
from workbench.errors import ValidationError
from workbench.medallion import pipeline
from workbench.medallion.pipeline import IngestResult, TransformResult
from workbench.oltp import repo
from workbench.oltp.models import Connection

if TYPE_CHECKING:
    from workbench.workspace import Workspace


def credential_fields(platform: str) -> tuple[CredentialField, ...]:
    """What ``platform``'s connections need as credentials (for prompts and validation)."""
    return connectors.get(platform).credential_fields


def add(ws: Workspace, platform: str, name: str | None = None, *,
        settings: dict[str, Any] | None = None, credentials: dict[str, str] | None = None,
        lookback_days: int | None = None, update: bool = False) -> Connection:
    """Create a connection, or with ``update=True`` change an existing one (settings are merged,
    credentials given replace those fields only)."""
    cls = connectors.get(platform)
    name = name or platform
    existing = {c.name: c for c in repo.list_connections(ws.stores.db, ws.org.id)}
    current: Connection | None = existing.get(name)
    if current is not None and not update:
        raise ValidationError(f"connection '{name}' already exists in '{ws.org.id}'; pass update=True "
                              "(--update) to change it, or choose another name")
    if current is None and update:
        raise ValidationError(f"there is no connection '{name}' in '{ws.org.id}' to update")
    key = ws.settings.credentials_key
    stored = repo.decrypt_credentials(key, current.credentials_encrypted) if current else {}
    merged_creds = {**stored, **{k: v for k, v in (credentials or {}).items() if v}}
    unknown = sorted(set(credentials or {}) - {f.name for f in cls.credential_fields}) \
        if cls.credential_fields else []
    if unknown:
        known = ", ".join(f.name for f in cls.credential_fields)
        raise ValidationError(f"{platform} connections take the credentials {known}; not {', '.join(unknown)}")
    missing = [f.name for f in cls.credential_fields if f.required and not merged_creds.get(f.name)]
    if missing:
        raise ValidationError(f"a {platform} connection needs the credential(s) {', '.join(missing)} "
                              "(prompted for in a terminal, or --credentials-file)")
    merged_settings = {**(current.settings if current else {}), **(settings or {})}
    required = getattr(cls, "required_settings", ())
    absent = [s for s in required if not merged_settings.get(s)]
    if absent:
        raise ValidationError(f"a {platform} connection needs the setting(s) {', '.join(absent)}")
    lookback = (lookback_days if lookback_days is not None else
                current.lookback_days if current is not None else cls.default_lookback_days)
    if lookback < 0:
        raise ValidationError("lookback_days must be 0 or more")
    from workbench import audit, config_service

    # the versioned document (platform, settings, look-back; never credentials), checked before anything is written
    doc = config_service.validate(ws.stores.db, ws.org.id, "connection", name,
                                  {"platform": platform, "settings": merged_settings, "lookback_days": lookback})
    conn = repo.upsert_connection(ws.stores.db, key, ws.org.id, name, platform, merged_settings,
                                  lookback, merged_creds if cls.credential_fields or credentials else None)
    config_service.save(ws.stores.db, ws.org.id, "connection", name, doc, author=ws.ctx.author, actor=ws.ctx.actor,
                        comment="updated" if current is not None else "added", refuse_unchanged=False, apply=False)
    given = sorted(k for k, v in (credentials or {}).items() if v)
    if given:  # which credentials were set, never their values
        audit.record(ws.stores.db, org_id=ws.org.id, actor=ws.ctx.actor, action="connection.credentials",
                     target_kind="connection", target_id=name, detail=f"set {', '.join(given)}")
    return conn


def _open(ws: Workspace, name: str) -> Connector:
    conn = repo.get_connection(ws.stores.db, ws.org.id, name)
    return pipeline.open_connector(ws.settings, ws.stores.db, ws.org, conn)


def test(ws: Workspace, name: str) -> pl.DataFrame:
    """Check the connection's credentials by listing the accounts they reach (id, name,
    currency, status); raises the platform's error (what to fix) when they do not work."""
    connector = _open(ws, name)
    try:
        accounts = connector.accounts()
    finally:
        connector.close()
    return pl.DataFrame([{"id": a.id, "name": a.name, "currency": a.currency, "status": a.status}
                         for a in accounts],
                        schema={"id": pl.String, "name": pl.String, "currency": pl.String, "status": pl.String})


@dataclass
class SyncResult:
    """What a sync did: one ingest per connection, then one transform."""

    ingests: list[IngestResult] = field(default_factory=list)
    transform: TransformResult | None = None

    @property
    def gaps(self) -> list[str]:
        return [f"{r.connection}: {g.describe()}" for r in self.ingests for g in r.gaps]

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame([{"connection": r.connection, "from": r.window.start, "to": r.window.end,
                              "records": r.rows, "api_calls": r.api_calls, "gaps": len(r.gaps)}
                             for r in self.ingests],
                            schema={"connection": pl.String, "from": pl.Date, "to": pl.Date,
                                    "records": pl.Int64, "api_calls": pl.Int64, "gaps": pl.Int64})


def sync(ws: Workspace, names: list[str] | None = None, start: dt.date | None = None,
         end: dt.date | None = None, *, transform: bool = True, progress: bool = True) -> SyncResult:
    """Ingest each named connection (default: every active one) for its default window (new
    days plus the restatement look-back) or ``start``..``end``, then transform once."""
    conns = repo.list_connections(ws.stores.db, ws.org.id)
    if names:
        by_name = {c.name: c for c in conns}
        chosen = [by_name.get(n) or repo.get_connection(ws.stores.db, ws.org.id, n) for n in names]
    else:
        chosen = [c for c in conns if c.status == "active" and c.platform != "csv"]
    window = Window(start, end) if start and end else None
    if (start is None) != (end is None):
        raise ValidationError("give both --from and --to, or neither for the default window")
    result = SyncResult()
    for conn in chosen:
        result.ingests.append(pipeline.ingest(ws.settings, ws.stores.db, ws.stores.lake, ws.org, conn,
                                              window, show_progress=progress))
    if transform:
        result.transform = ws.transform(progress=progress)
    return result


def remove(ws: Workspace, name: str) -> None:
    """Delete the connection and its stored credentials; landed data stays in the lake."""
    from workbench import config_service
    from workbench.oltp import configs

    repo.remove_connection(ws.stores.db, ws.org.id, name)
    latest = configs.latest(ws.stores.db, ws.org.id, "connection", name)
    if latest is not None and latest.body is not None:  # connections made before versioning have no document
        config_service.remove(ws.stores.db, ws.org.id, "connection", name, author=ws.ctx.author,
                              actor=ws.ctx.actor, comment="removed", apply=False)


def frame(ws: Workspace) -> pl.DataFrame:
    """The organisation's connections: platform, look-back, state, credential fields set (never
    their values)."""
    rows = []
    key = ws.settings.credentials_key
    for c in repo.list_connections(ws.stores.db, ws.org.id):
        creds = repo.decrypt_credentials(key, c.credentials_encrypted) if c.credentials_encrypted else {}
        cls = connectors.get(c.platform) if c.platform in connectors.names() else None
        rows.append({
            "name": c.name, "platform": c.platform, "lookback_days": c.lookback_days, "status": c.status,
            "capabilities": ", ".join(sorted(cls.capabilities)) if cls else "",
            "data_through": c.state.get("last_window_end"),
            "gaps": "; ".join(c.state.get("last_gaps") or []),
            "credentials": ", ".join(sorted(k for k, v in creds.items() if v and k not in ("expires_at",))),
            "settings": json.dumps({k: v for k, v in c.settings.items() if k != "mapping"}, default=str),
            "state": json.dumps({k: v for k, v in c.state.items() if k not in ("last_gaps", "streams")}, default=str),
        })
    schema = {k: pl.Int64 if k == "lookback_days" else pl.String for k in (
        "name", "platform", "lookback_days", "status", "capabilities", "data_through", "gaps",
        "credentials", "settings", "state")}
    return pl.DataFrame(rows, schema=schema)
