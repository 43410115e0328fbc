"""Fuzzing the formula front end, and isolation: a formula reaches catalog columns of one organisation only.

(a) Random text, a soup of the grammar's tokens and mutations of valid formulas go through
``parse``, ``Binder.formula`` / ``Binder.condition`` and ``plan.build``: the only exception
allowed is ``FormulaError`` (with a sane position), and nothing takes long.
(b) Names outside the catalog (``org_id``, ``system.tables``, table functions, lake tables, raw
gold columns) are refused; string literals become query parameters, never SQL text; every
identifier in generated SQL is a catalog column, a dimension or a slot; and on the real engine a
plan for one organisation sees none of another's rows.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from workbench.errors import FormulaError
from workbench.formulas import plan as planner
from workbench.formulas.binder import Binder
from workbench.formulas.catalog import BASE_METRICS, DIMENSIONS, FUNCTIONS, Catalog, MetricDef
from workbench.formulas.packs import metric_packs
from workbench.formulas.parser import parse
from workbench.lake.schemas import TABLES
from workbench.warehouse.guard import check_statement

CATALOG = Catalog({
    **metric_packs.definitions(),
    "loop_a": MetricDef("loop_a", "loop_b + 1", origin="org"),
    "loop_b": MetricDef("loop_b", "2 * loop_a", origin="org"),
    "broken": MetricDef("broken", "spend +", origin="org"),
    "mixed": MetricDef("mixed", "spend + clicks", origin="org"),
})
GOLD_TABLES = {"gold.performance_daily", "gold.campaign_daily", "gold.crm_attribution_daily"}
SLOW = 2.0  # seconds: any single call slower than this on a few hundred characters is a hang

# -- text strategies --------------------------------------------------------------------------

NAMES = sorted({*BASE_METRICS, *DIMENSIONS, *CATALOG.metrics}) + list(FUNCTIONS) + [
    "org_id", "system", "tables", "file", "icebergLocal", "url", "gold", "performance_daily", "spend_org",
    "budget_amount_org", "x", "_", "NaN", "inf", "select", "from", "union", "settings", "Spend", "sUm", "if",
]
KEYWORDS = ["AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE", "and", "Not", "null", "is not", "not in"]
NUMBERS = ["0", "1", "2.5", ".5", "5.", "1e3", "1E-3", "1e308", "1e309", "9223372036854775807",
           "9223372036854775808", "30%", "0%", "1.5%", "00", "1e", "0x10", "-1", "1_000"]
STRINGS = ["'meta'", "'it''s'", '"dq"', "''", "'", '"', "'2026-01-01'", "'2026-13-01'", "'{wb_org:String}'",
           "'\\'", "'; DROP TABLE x; --'", "'a\nb'", '"a""b"']
OPERATORS = ["+", "-", "*", "/", "=", "==", "!=", "<>", "<", "<=", ">", ">=", "%", "--", "---", "**", "||", "!",
             "&", "|", "^", "~", ";", ".", ":", "`", "@", "$", "#", "?", "{", "}", "\\"]
PUNCTUATION = ["(", ")", "[", "]", ",", "(*)", "()", "[last_7d]"]
UNICODE = ["é", "中", "😀", "\u200b", "\x00", "\t", "\n", "\r\n", "ß", "İ", "\ufeff", "ｓｐｅｎｄ", "\u2028"]
TOKENS = NAMES + KEYWORDS + NUMBERS + STRINGS + OPERATORS + PUNCTUATION + UNICODE

SEEDS = [
    "spend", "spend / conversions", "SUM(IF(platform = 'meta', spend, 0)) / spend", "DIVIDE(spend, clicks, 0)",
    "COALESCE(video_views, 0) * 2", "ROUND(ctr * 100, 2)", "LOG(impressions, 2)", "COUNT_DISTINCT(campaign_id)",
    "COUNT(*)", "IF(roas > 2, spend, NULL)", "platform IN ('meta', 'ttd') AND NOT settled",
    "date >= '2026-01-01' OR campaign_name IS NULL", "LEAST(cpa, 100) - GREATEST(cpc, 0.5)", "-spend * 30%",
    "MAX(date)", "AVG(spend / clicks)", "won_value / spend", "budget_used", "loop_a", "broken", "mixed",
    "spend[last_7d]", "cpa -- a comment\n + 1",
]


@st.composite
def soup(draw: st.DrawFn) -> str:
    """A sequence of the grammar's tokens (and some it does not know), glued with random spacing."""
    tokens = draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=40))
    seps = draw(st.lists(st.sampled_from(["", " ", " ", "  ", "\n"]), min_size=len(tokens), max_size=len(tokens)))
    return "".join(t + s for t, s in zip(tokens, seps, strict=True))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid formula with a few random edits: near-misses reach the binder, not just the parser."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        edit = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        token = draw(st.sampled_from(TOKENS))
        if edit == "delete":
            text = text[:i] + text[j:]
        elif edit == "insert":
            text = text[:i] + token + text[i:]
        elif edit == "replace":
            text = text[:i] + token + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


TEXTS = st.one_of(st.text(max_size=300), soup(), mutated(), st.sampled_from(SEEDS))
BYS = st.lists(st.sampled_from(["platform", "date", "week", "campaign_name", "ad_name", "objective", "org_id",
                                " Platform ", "", "month", "platform"]), max_size=3)


def _expect_formula_error(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``: it either returns or raises a well-formed FormulaError, and does so quickly."""
    begin = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    except FormulaError as exc:
        message = str(exc)  # rendering (line, column, caret) must not fail either
        assert message and exc.message
        if exc.start is not None:
            assert 0 <= exc.start <= len(exc.text), (exc.start, exc.text)
            assert exc.end is not None and exc.start < exc.end <= len(exc.text) + 1, (exc.start, exc.end, exc.text)
        return None
    finally:
        assert time.perf_counter() - begin < SLOW, f"{fn.__name__} took too long on {args!r}"


FUZZ = settings(max_examples=int(os.environ.get("WB_FUZZ_EXAMPLES", "300")), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(TEXTS)
def test_parse_raises_only_formula_errors(text):
    _expect_formula_error(parse, text)


@FUZZ
@given(TEXTS)
def test_binder_raises_only_formula_errors(text):
    _expect_formula_error(Binder(CATALOG).formula, text)
    _expect_formula_error(Binder(CATALOG).condition, text)


@FUZZ
@given(st.lists(TEXTS, min_size=1, max_size=3), BYS, st.one_of(st.none(), TEXTS), st.booleans())
def test_build_raises_only_formula_errors(metrics, by, where, labelled):
    request: list[str] | dict[str, str] = {f"m{i}": m for i, m in enumerate(metrics)} if labelled else metrics
    plan = _expect_formula_error(planner.build, CATALOG, request, by, where)
    if plan is not None and plan.groups:  # plans of constants only: test_constant_only_plan_runs
        check_sql(*planner.to_sql_text(plan))


@pytest.mark.parametrize("text", [None, b"spend", 42, ["spend"], "", "   ", "\n-- only a comment", "(" * 250 + "1",
                                  "x" * 20_001, "spend" + " + spend" * 3000, "- " * 5000 + "1", "NOT " * 3000 + "TRUE"])
def test_odd_inputs(text):
    _expect_formula_error(parse, text)
    if isinstance(text, str):
        _expect_formula_error(planner.build, CATALOG, {"m": text}, [], text)


# Long but legal formulas: no bracket deeper than one, a few thousand characters.
CHAINS = {
    "sum": lambda n: "spend" + " + spend" * n,
    "product": lambda n: "spend" + " * 1" * n,
    "negation": lambda n: "- " * n + "spend",
    "or-filter": lambda n: " OR ".join(["clicks > 1"] * n),
    "not-filter": lambda n: "NOT " * n + "(clicks > 1)",
    "row sum": lambda n: "SUM(spend" + " + spend" * n + ")",
}


@pytest.mark.parametrize("kind", list(CHAINS))
def test_long_chains(kind):
    for n in (100, 250, 400, 550, 700, 850, 990):  # the interpreter's recursion limit is 1000
        text = CHAINS[kind](n)
        if "filter" in kind:
            plan = _expect_formula_error(planner.build, CATALOG, ["spend"], [], text)
        else:
            plan = _expect_formula_error(planner.build, CATALOG, {"m": text}, [])
        if plan is not None:
            check_sql(*planner.to_sql_text(plan), guard=False)


# -- plans found broken by the fuzzer, now fixed ------------------------------------------------

def _empty_source(table: str) -> pl.LazyFrame:
    return pl.from_arrow(TABLES[table].arrow_schema().empty_table()).lazy()  # type: ignore[union-attr]


def test_constant_only_plan_runs():
    plan = planner.build(CATALOG, {"m": "1 + 2"}, ["platform"])
    planner.to_sql_text(plan)
    assert planner.run_polars(plan, _empty_source).columns == ["platform", "m"]


def test_metric_filter_with_crm_metric():
    with pytest.raises(FormulaError, match="the filter uses clicks, which gold.crm_attribution_daily"):
        planner.build(CATALOG, ["leads", "spend"], [], "clicks > 1")


# -- isolation ----------------------------------------------------------------------------------

OUTSIDE_NAMES = [
    "org_id", "ORG_ID", "system.tables", "system", "file('/etc/passwd')", "icebergLocal('/tmp')", "url('http://x')",
    "gold.performance_daily", "performance_daily", "spend_org", "budget_amount_org", "org_currency",
    "campaign_labels", "_a0", "m0", "wb_org", "{wb_org:String}", "`org_id`", "remote('h', system.one)",
    "currentDatabase()", "version()", "SETTINGS", "extracted_at", "fx_rate", "spend[org_id]",
]


@pytest.mark.parametrize("name", OUTSIDE_NAMES)
def test_names_outside_the_catalog_are_refused(name):
    texts = {"metric": name, "in SUM": f"SUM({name})", "in COUNT_DISTINCT": f"COUNT_DISTINCT({name})",
             "in IF": f"SUM(IF({name} = 'acme', spend, 0))", "compared": f"spend + {name}"}
    for place, text in texts.items():
        with pytest.raises(FormulaError):
            planner.build(CATALOG, {"m": text}, [])
            pytest.fail(f"accepted {name} {place}")
    for where in (f"{name} = 'globex'", f"{name} IS NOT NULL", f"platform = 'meta' OR {name}"):
        with pytest.raises(FormulaError):
            planner.build(CATALOG, ["spend"], [], where)
    with pytest.raises(FormulaError):
        planner.build(CATALOG, ["spend"], [name])


INJECTIONS = ["x' OR '1'='1", "'; DROP TABLE gold.performance_daily; --", "{wb_org:String}", "{wb_p0:String}",
              "back\\slash\\", "\\'", "globex", "acme' OR org_id = 'globex", "a\nb -- c", "`org_id`", "') OR (1=1",
              "\x00", "😀", "%s", "$1", "{{wb_org}}"]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _injection_plan(value: str) -> planner.Plan:
    lit = _quote(value)
    return planner.build(CATALOG, {"m": f"SUM(IF(campaign_name = {lit}, spend, 0))", "n": "COUNT(*)"}, [],
                         f"platform = {lit} OR campaign_name IN ({lit}, {lit}) OR ad_name = {lit}")


@pytest.mark.parametrize("value", INJECTIONS)
def test_strings_are_bound_as_parameters(value):
    sql, params = planner.to_sql_text(_injection_plan(value))
    check_sql(sql, params)
    assert sum(1 for v in params.values() if v == value) == 5
    assert sql == planner.to_sql_text(_injection_plan("plain"))[0]  # the text does not depend on the value
    double = '"' + value.replace('"', '""') + '"'  # double quotes are strings too, never identifiers
    sql2, params2 = planner.to_sql_text(planner.build(CATALOG, ["spend"], [], f"campaign_name = {double}"))
    assert list(params2.values()) == [value]
    check_sql(sql2, params2)


IDENT = re.compile(r"`([^`]*)`")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
ALLOWED = ({m.column for m in BASE_METRICS.values()} | {d.column for d in DIMENSIONS.values()}
           | set(DIMENSIONS))


def check_sql(sql: str, params: dict[str, Any], guard: bool = True) -> None:
    """Generated SQL names catalog columns, dimensions and slots only, and reads gold tables only.

    ``guard``: also run the user-SQL guard (sqlglot's parser recurses, so not on very deep SQL).
    """
    for name in IDENT.findall(sql):
        assert name in ALLOWED or re.fullmatch(r"_a\d+", name), f"identifier `{name}` in\n{sql}"
    assert "org_id" not in sql and "system" not in sql.lower() and "--" not in sql, sql
    assert sql.count("{") == sql.count("}") == len(PLACEHOLDER.findall(sql)), sql
    for placeholder in PLACEHOLDER.findall(sql):
        key, _, sql_type = placeholder.partition(":")
        assert re.fullmatch(r"wb_p\d+", key) and key in params and sql_type in ("String", "Date"), placeholder
    assert all(re.fullmatch(r"wb_p\d+", k) for k in params), params
    if guard:
        assert set(check_statement(sql, set(TABLES))) <= GOLD_TABLES  # the user-SQL guard accepts it too
    for match in re.finditer(r"\bFROM\s+([\w.]+)", sql):
        assert match.group(1) in GOLD_TABLES or match.group(1) == "", sql


def _import_cases() -> Any:
    from test_property import CATALOG as PROPERTY_CATALOG
    from test_property import cases

    return cases(with_rows=False), PROPERTY_CATALOG


_CASES, _PROPERTY_CATALOG = _import_cases()


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_CASES)
def test_generated_sql_names_only_catalog_columns(case):
    """Many well-typed formulas (the property test's generator): identifiers and tables of their SQL."""
    try:
        plan = planner.build(_PROPERTY_CATALOG, case.metrics, case.by, case.where, case.start, case.end)
    except FormulaError:
        assume(False)
    assume(plan.groups)
    check_sql(*planner.to_sql_text(plan))


# -- end to end on the real engine: two organisations in one lake ------------------------------

@pytest.fixture(scope="module")
def two_orgs(gold_stores):
    return gold_stores


def _both(stores, org: str, metrics, by=(), where=None, start=None, end=None) -> pl.DataFrame:
    plan = planner.build(CATALOG, metrics, list(by), where, start, end)
    on_sql = planner.run_sql(plan, lambda sql, params: stores.warehouse.query(sql, params, org=org, trusted=True))
    own_rows = planner.run_polars(plan, lambda table: stores.lake.scan(table).filter(pl.col("org_id") == org))
    assert_frame_equal(on_sql, own_rows, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    return on_sql


def test_each_org_sees_only_its_rows(two_orgs):
    from formula_helpers import CRM, PERF

    metrics = {"spend": "spend", "rows": "COUNT(*)", "top_clicks": "MAX(clicks)", "campaigns": "COUNT_DISTINCT(campaign_id)",
               "won": "won_value", "brand": "SUM(IF(campaign_name = 'Brand', spend, 0))"}
    for org in ("acme", "globex"):
        perf = [r for r in PERF if r[0] == org]
        got = _both(two_orgs, org, metrics).row(0, named=True)
        assert got == {"spend": sum(r[8] for r in perf), "rows": len(perf), "top_clicks": max(r[10] for r in perf),
                       "campaigns": len({r[4] for r in perf}), "won": sum(r[8] for r in CRM if r[0] == org),
                       "brand": sum(r[8] for r in perf if r[5] == "Brand")}
    by_platform = _both(two_orgs, "acme", ["spend", "cpa"], ["platform"], "campaign_name IS NOT NULL")
    assert by_platform["spend"].sum() == sum(r[8] for r in PERF if r[0] == "acme")
    # globex's campaign C9 has the name 'Brand' too; a filter on it still stays inside acme
    brand = _both(two_orgs, "acme", ["spend", "clicks"], ["campaign_id"], "campaign_name = 'Brand'")
    assert brand["campaign_id"].to_list() == ["C1"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injected_strings_match_nothing_on_the_engine(two_orgs, value):
    plan = _injection_plan(value)
    got = planner.run_sql(plan, lambda s, p: two_orgs.warehouse.query(s, p, org="acme", trusted=True))
    assert got.row(0) == (0.0, 0), (value, got)
    window = _both(two_orgs, "acme", {"m": "spend"}, (), f"campaign_name = {_quote(value)}",
                   dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert window["m"].to_list() == [0.0]


def test_backslashes_in_strings_mean_themselves(two_orgs):
    _both(two_orgs, "acme", ["spend"], (), "campaign_name = 'Bra\\x6ed'")
