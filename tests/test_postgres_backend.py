"""The whole pipeline with PostgreSQL as the OLTP store and as the Iceberg catalog."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import workbench as wb
from workbench.oltp import repo
from workbench.settings import load_settings
from workbench.stores import close_all

pytestmark = pytest.mark.postgres


def test_pipeline_on_postgres(tmp_path, pg_url):
    settings = load_settings(home=tmp_path / "home", oltp_url=pg_url, catalog_uri=pg_url, progress=False)
    try:
        ws = wb.create_org("acme", "Acme", "EUR", "Europe/Paris", settings=settings)
        end = dt.date(2026, 10, 10)
        ws.ingest("synthetic", end - dt.timedelta(days=6), end, progress=False)
        result = ws.transform(progress=False)
        assert result.rows_in == result.rows_silver + result.rows_quarantined > 0
        assert [e.kind for e in repo.events(ws.stores.db, "acme")] == ["ingest.done", "silver.ready", "gold.ready"]
        assert not (tmp_path / "home" / "workbench.db").exists(), "no SQLite file when PostgreSQL is configured"
        assert not (tmp_path / "home" / "catalog.db").exists()
        total = ws.query("SELECT sum(spend_org) AS s FROM gold.performance_daily")["s"][0]
        assert total == pytest.approx(ws.table("gold.performance_daily")["spend_org"].sum())
        assert ws.table("silver.ad_performance_daily").select(pl.col("org_currency").unique()).item() == "EUR"
    finally:
        close_all()
