"""Connections from notebooks: add (validated), list (no secrets), test, sync, remove."""

from __future__ import annotations

import datetime as dt

import pytest
from connector_helpers import workspace

from workbench.errors import NotFoundError, ValidationError


def test_sync_reads_new_days_plus_the_lookback_then_transforms(stores):
    ws = workspace(stores)
    ws.add_connection("synthetic", settings={"as_of": "2026-11-20", "platforms": ["meta"], "crms": []},
                      lookback_days=3)
    first = ws.sync(start="2026-11-10", end="2026-11-20")
    assert first.ingests[0].window.start == dt.date(2026, 11, 10)
    assert first.transform is not None and first.transform.rows_silver > 0
    conns = ws.connections()
    assert conns["data_through"].to_list() == ["2026-11-20"]
    assert conns["capabilities"].to_list() == ["read"]
    frame = first.frame()
    assert frame["records"][0] == first.ingests[0].rows > 0


def test_add_refuses_duplicates_unknown_platforms_and_bad_lookbacks(stores):
    ws = workspace(stores)
    ws.add_connection("synthetic")
    with pytest.raises(ValidationError, match="already exists.*update=True"):
        ws.add_connection("synthetic")
    with pytest.raises(KeyError, match="unknown connector 'tiktok'"):
        ws.add_connection("tiktok")
    with pytest.raises(ValidationError, match="no connection 'other' .* to update"):
        ws.add_connection("synthetic", "other", update=True)
    with pytest.raises(ValidationError, match="lookback_days"):
        ws.add_connection("synthetic", "neg", lookback_days=-1)
    ws.add_connection("synthetic", settings={"seed": 5}, update=True)
    assert '"seed": 5' in ws.connections()["settings"][0]


def test_test_lists_accounts_and_remove_deletes(stores):
    ws = workspace(stores)
    ws.add_connection("synthetic", settings={"platforms": ["meta", "ttd"]})
    accounts = ws.test_connection("synthetic")
    assert accounts.height == 4 and set(accounts.columns) == {"id", "name", "currency", "status"}
    ws.remove_connection("synthetic")
    assert ws.connections().is_empty()
    with pytest.raises(NotFoundError, match="no connection 'synthetic'.*workbench connections add"):
        ws.test_connection("synthetic")
