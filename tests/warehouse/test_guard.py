import pytest

from workbench.errors import QueryError
from workbench.lake.schemas import TABLES
from workbench.warehouse.guard import check_params, check_statement, rewrite_tables

KNOWN = set(TABLES)


@pytest.mark.parametrize("sql, fragment", [
    ("SELECT * FROM file('/etc/passwd', 'CSV')", "table functions are not allowed"),
    ("SELECT * FROM icebergLocal('/tmp/x')", "table functions are not allowed"),
    ("SELECT * FROM url('http://127.0.0.1/x', 'CSV')", "table functions are not allowed"),
    ("SELECT * FROM system.tables", "unknown table 'system.tables'"),
    ("SELECT * FROM gold.nope", "unknown table 'gold.nope'"),
    ("SELECT * FROM performance_daily", "unknown table 'performance_daily'"),
    ("INSERT INTO gold.performance_daily VALUES (1)", "only read statements"),
    ("DROP TABLE gold.performance_daily", "only read statements"),
    ("SELECT 1; SELECT 2", "one statement at a time"),
    ("SELECT count() FROM gold.performance_daily SETTINGS max_threads = 1", "SETTINGS and FORMAT"),
    ("SELECT * FROM (SELECT * FROM file('x')) t", "table functions are not allowed"),
    ("SELECT * FROM gold.performance_daily WHERE org_id IN (SELECT org_id FROM s3('x'))",
     "table functions are not allowed"),
    ("SELECT (1 FROM gold.performance_daily", "could not be parsed"),
])
def test_refused_statements(sql, fragment):
    with pytest.raises(QueryError, match=fragment):
        check_statement(sql, KNOWN)


def test_accepted_statement_lists_its_tables():
    sql = ("WITH c AS (SELECT * FROM gold.campaign_daily) "
           "SELECT p.platform, sum(p.spend) FROM gold.performance_daily AS p "
           "JOIN c USING (campaign_id) WHERE p.date >= {d:Date} GROUP BY p.platform")
    assert sorted(check_statement(sql, KNOWN)) == ["gold.campaign_daily", "gold.performance_daily"]


def test_reserved_parameter_names():
    with pytest.raises(QueryError, match="reserved"):
        check_params({"wb_org": "globex"})
    check_params({"org": "fine"})


def test_rewrite_replaces_tables_not_strings_or_comments():
    sql = ("SELECT 'gold.performance_daily' AS s, performance_daily.spend -- gold.performance_daily\n"
           "FROM gold.performance_daily JOIN gold.campaign_daily c ON 1")
    out = rewrite_tables(sql, lambda name: f"<{name}>" if name in KNOWN else "")
    assert out == ("SELECT 'gold.performance_daily' AS s, performance_daily.spend -- gold.performance_daily\n"
                   "FROM <gold.performance_daily> AS performance_daily JOIN <gold.campaign_daily> c ON 1")


def test_rewrite_keeps_explicit_alias():
    assert rewrite_tables("SELECT 1 FROM gold.x AS g", lambda n: "(S)") == "SELECT 1 FROM (S) AS g"
