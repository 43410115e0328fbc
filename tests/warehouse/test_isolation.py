"""Through SQL, an organisation reaches only its own rows."""

from __future__ import annotations

import datetime as dt

import pytest

import workbench as wb
from workbench.errors import QueryError

END = dt.date(2026, 10, 10)
START = END - dt.timedelta(days=6)


@pytest.fixture
def two_orgs(stores):
    acme = wb.create_org("acme", "Acme", "USD", settings=stores.settings)
    globex = wb.create_org("globex", "Globex", "EUR", settings=stores.settings)
    for ws in (acme, globex):
        ws.ingest("synthetic", START, END, progress=False)
        ws.transform(progress=False)
    return acme, globex


def test_each_org_sees_only_its_rows(two_orgs):
    acme, globex = two_orgs
    a = acme.query("SELECT count() AS n FROM gold.performance_daily")["n"][0]
    g = globex.query("SELECT count() AS n FROM gold.performance_daily")["n"][0]
    assert a == acme.table("gold.performance_daily").height > 0
    assert g == globex.table("gold.performance_daily").height > 0
    for sql in ("SELECT DISTINCT org_id FROM gold.performance_daily",
                "SELECT DISTINCT org_id FROM gold.performance_daily WHERE org_id = 'globex' OR 1 = 1",
                "SELECT DISTINCT org_id FROM (SELECT * FROM gold.performance_daily) t",
                "WITH x AS (SELECT org_id FROM silver.ad_performance_daily) SELECT DISTINCT org_id FROM x",
                "SELECT DISTINCT org_id FROM bronze.raw_records UNION DISTINCT SELECT org_id FROM silver.quarantine"):
        assert set(acme.query(sql)["org_id"]) == {"acme"}, sql
    assert acme.query("SELECT count() AS n FROM gold.performance_daily WHERE org_id = {o:String}",
                      {"o": "globex"})["n"][0] == 0


@pytest.mark.parametrize("sql", [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM system.tables",
    "SELECT count() FROM gold.performance_daily SETTINGS readonly = 0",
    "SELECT 1; DROP TABLE x",
])
def test_crafted_statements_are_refused(two_orgs, sql):
    with pytest.raises(QueryError):
        two_orgs[0].query(sql)


def test_org_parameter_cannot_be_overridden(two_orgs):
    with pytest.raises(QueryError, match="reserved"):
        two_orgs[0].query("SELECT count() FROM gold.performance_daily", {"wb_org": "globex"})


def test_parameters_are_bound_not_formatted(two_orgs):
    acme = two_orgs[0]
    injected = acme.query("SELECT count() AS n FROM gold.performance_daily WHERE platform = {p:String}",
                          {"p": "meta' OR '1'='1"})
    assert injected["n"][0] == 0
    dates = acme.query("SELECT min(date) AS d FROM gold.performance_daily WHERE date >= {d:Date}",
                       {"d": END})
    assert dates["d"][0] == END


def test_engine_errors_are_query_errors(two_orgs):
    with pytest.raises(QueryError, match="refused the statement"):
        two_orgs[0].query("SELECT no_such_column FROM gold.performance_daily")
