"""The three stores of one workbench (OLTP, lake, query engine), opened once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from workbench.lake.catalog import Lake
from workbench.oltp.db import Oltp
from workbench.settings import Settings, load_settings
from workbench.warehouse.engine import ChdbWarehouse

_LOCK = threading.Lock()
_OPEN: dict[tuple[str, str, str], Stores] = {}


@dataclass
class Stores:
    settings: Settings
    db: Oltp
    lake: Lake
    warehouse: ChdbWarehouse


def init(settings: Settings | None = None) -> Stores:
    """Create (or upgrade) every store: migrate the OLTP schema, create lake tables (idempotent)."""
    settings = settings or load_settings()
    settings.ensure_home()
    db = Oltp(settings.oltp_url_resolved)
    db.migrate()
    lake = Lake(settings)
    lake.ensure_tables()
    from workbench.medallion.rates import load_rates

    load_rates(lake)
    settings.credentials_key  # noqa: B018 - create the key file now, not mid-ingest
    stores = Stores(settings, db, lake, ChdbWarehouse(lake))
    with _LOCK:
        _OPEN[_key(settings)] = stores
    return stores


def _key(settings: Settings) -> tuple[str, str, str]:
    return (settings.oltp_url_resolved, settings.catalog_uri_resolved, settings.warehouse_resolved)


def get_stores(settings: Settings | None = None) -> Stores:
    """The stores for ``settings`` (initialised on first use in this process)."""
    settings = settings or load_settings()
    with _LOCK:
        found = _OPEN.get(_key(settings))
    return found if found is not None else init(settings)


def close_all() -> None:
    with _LOCK:
        for stores in _OPEN.values():
            stores.db.dispose()
        _OPEN.clear()
