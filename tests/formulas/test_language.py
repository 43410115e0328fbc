"""The language: parsing, positions and carets, names, units, levels, functions."""

from __future__ import annotations

import pytest

from workbench.errors import FormulaError, ValidationError
from workbench.formulas import syntax as s
from workbench.formulas.binder import Binder
from workbench.formulas.catalog import Catalog, MetricDef
from workbench.formulas.packs import metric_packs
from workbench.formulas.parser import parse
from workbench.formulas.units import Unit


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(metric_packs.definitions())


def bind(catalog: Catalog, text: str):
    return Binder(catalog).formula(text)


def error(catalog: Catalog, text: str, *, where: bool = False) -> FormulaError:
    with pytest.raises(FormulaError) as info:
        Binder(catalog).condition(text) if where else Binder(catalog).formula(text)
    return info.value


# -- parsing ---------------------------------------------------------------------------------

def test_precedence_and_literals():
    tree = parse("-spend + clicks * 2 / 30% >= 1e3 OR NOT x IS NULL AND p NOT IN ('a', \"b\")")
    assert isinstance(tree, s.Binary) and tree.op == "or"
    left, right = tree.left, tree.right
    assert isinstance(left, s.Binary) and left.op == ">="
    assert isinstance(left.left, s.Binary) and left.left.op == "+"
    assert isinstance(left.left.left, s.Unary) and left.left.left.op == "-"
    assert isinstance(left.right, s.Number) and left.right.value == 1000.0
    assert isinstance(right, s.Binary) and right.op == "and"
    assert isinstance(right.left, s.Unary) and right.left.op == "not"
    assert isinstance(right.right, s.In) and right.right.negated
    assert [i.value for i in right.right.items] == ["a", "b"]  # type: ignore[attr-defined]


def test_percent_strings_keywords_and_case():
    assert parse("30%") == s.Number(0.3, True, start=0, end=3)
    assert parse("'it''s'") == s.String("it's", start=0, end=7)
    assert parse("TrUe") == s.Boolean(True, start=0, end=4)
    call = parse("divide(a, b)")
    assert isinstance(call, s.Call) and call.name == "divide"
    # keywords inside names stay names
    assert parse("android_orders") == s.Name("android_orders", start=0, end=14)
    assert parse("cpa[last_7d]") == s.Name("cpa", "last_7d", start=0, end=12)
    assert isinstance(parse("COUNT(*)"), s.Call)
    assert parse("spend -- a comment\n / clicks") == parse("spend / clicks")


@pytest.mark.parametrize(("text", "line", "column", "fragment"), [
    ("spend / ", 1, 9, "ends too early"),
    ("spend +* 2", 1, 8, "expected a value"),
    ("(spend", 1, 7, "expected ')'"),
    ("spend spend", 1, 7, "two values need an operator"),
    ("1 < 2 < 3", 1, 7, "cannot be chained"),
    ("spend\n  / `clicks`", 2, 5, "unexpected character '`'"),
    ("", None, None, "empty"),
    ("((((" * 100, None, None, "nests"),
    ("99999999999999999999", 1, 1, "too large"),
])
def test_syntax_errors_have_positions(text, line, column, fragment):
    with pytest.raises(FormulaError) as info:
        parse(text)
    exc = info.value
    assert fragment in str(exc)
    assert (exc.line, exc.column) == (line, column)
    assert isinstance(exc, ValidationError)


def test_caret_is_under_the_problem(catalog):
    exc = error(catalog, "spend /\n  cliks")
    lines = str(exc).splitlines()
    assert lines[0] == "line 2, column 3: unknown metric 'cliks' — did you mean 'clicks'?"
    assert lines[1] == "      cliks"
    assert lines[2] == "      ^^^^^"
    assert exc.suggestions == ("clicks",)


# -- names -----------------------------------------------------------------------------------

def test_unknown_names_functions_and_misuse(catalog):
    assert "did you mean 'impressions'" in str(error(catalog, "spend / impresions"))
    assert "unknown function 'SUMM' — did you mean SUM" in str(error(catalog, "SUMM(spend)"))
    assert "not a function" in str(error(catalog, "spend(1)"))
    assert "is a function" in str(error(catalog, "sum + 1"))
    assert "takes 2 to 3 arguments, got 1" in str(error(catalog, "IF(spend > 1)"))
    assert "only COUNT takes *" in str(error(catalog, "SUM(*)"))
    assert "unknown dimension or base metric 'org_id'" in str(error(catalog, "org_id = 'globex'", where=True))
    assert "belong in rule conditions" in str(error(catalog, "cpa[last_7d] > 3"))


def test_names_and_functions_are_case_insensitive(catalog):
    a, b = bind(catalog, "Sum(IF(Platform = 'meta', SPEND, 0))"), bind(catalog, "SUM(IF(platform = 'meta', spend, 0))")
    assert a == b


# -- units -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "unit"), [
    ("spend", Unit.MONEY), ("clicks", Unit.COUNT), ("spend / clicks", Unit.MONEY),
    ("clicks / impressions", Unit.RATIO), ("spend / conversion_value", Unit.RATIO),
    ("ctr", Unit.PERCENT), ("cpa * 1.3", Unit.MONEY), ("cpc * clicks", Unit.MONEY),
    ("spend - 100", Unit.MONEY), ("ctr - 1%", Unit.PERCENT), ("roas * ctr", Unit.RATIO),
    ("spend > 100 AND ctr < 2%", Unit.BOOLEAN), ("IF(spend > 0, spend, NULL)", Unit.MONEY),
    ("COUNT(*)", Unit.COUNT), ("COUNT_DISTINCT(campaign_id)", Unit.COUNT), ("AVG(spend)", Unit.MONEY),
    ("LOG(impressions)", Unit.RATIO), ("DIVIDE(spend, conversions, 0)", Unit.MONEY), ("42", Unit.NUMBER),
])
def test_units_are_inferred(catalog, text, unit):
    assert bind(catalog, text).unit is unit


@pytest.mark.parametrize(("text", "fragment"), [
    ("spend + clicks", "cannot add money (spend) and a count (clicks)"),
    ("cpa - ctr", "cannot subtract money (cpa) and a percentage (ctr)"),
    ("spend * conversion_value", "multiplying money (spend) by money (conversion_value) has no meaning"),
    ("SUM(IF(platform = 5, spend, 0))", "cannot compare a string (platform) with a number (5)"),
    ("IF(spend > 1, spend, clicks)", "IF mixes money (spend) and a count (clicks)"),
    ("SUM(platform)", "SUM needs numbers; a string (platform) is not a number"),
    ("IF(spend, 1, 0)", "IF's condition needs a true/false value"),
    ("spend > 1 AND clicks", "AND needs a true/false value; a count (clicks) is not one"),
    ("COALESCE(spend, 'x')", "COALESCE mixes money (spend) and a string ('x')"),
    ("SUM(IF(settled > true, 1, 0))", "true/false values have no order"),
    ("SUM(IF(date > '2026-13-01', 1, 0))", "not a date"),
    ("ROUND(spend, 1.5)", "whole number"),
    ("LOG(spend, 1)", "positive number other than 1"),
    ("SUM(IF(platform IN ('meta', NULL), 1, 0))", "NULL in an IN list"),
    ("SUM(IF(platform IN (campaign_name), 1, 0))", "IN takes a list of values"),
    ("SUM(IF(labels = 'brand', 1, 0))", "labels is a list of values: test one with HAS_LABEL"),
    ("SUM(IF(HAS_LABEL(platform), 1, 0))", "HAS_LABEL takes a quoted label"),
])
def test_unit_and_type_errors_name_both_sides(catalog, text, fragment):
    assert fragment in str(error(catalog, text))


# -- levels ----------------------------------------------------------------------------------

def test_base_metrics_are_summed_at_the_top_and_rows_inside_aggregates(catalog):
    top = bind(catalog, "spend")
    assert top.level == "agg" and type(top).__name__ == "Agg"
    inner = bind(catalog, "SUM(spend * 2)")
    assert inner.level == "agg"


@pytest.mark.parametrize(("text", "fragment"), [
    ("IF(platform = 'meta', spend, 0)", "put the row-level part inside an aggregate"),
    ("platform", "a metric has one value per group"),
    ("SUM(SUM(spend))", "cannot be used here"),
    ("SUM(ctr)", "ctr is a derived metric"),
    ("reach", "reach is not additive"),
    ("spend / clicks", None),
])
def test_mixing_levels_is_an_error(catalog, text, fragment):
    if fragment is None:
        bind(catalog, text)
        return
    assert fragment in str(error(catalog, text))


def test_filters_are_row_level_and_boolean(catalog):
    assert Binder(catalog).condition("platform IN ('meta') AND impressions > 0").unit is Unit.BOOLEAN
    assert "must be true or false" in str(error(catalog, "spend", where=True))
    assert "cannot be used here" in str(error(catalog, "SUM(spend) > 1", where=True))
    assert "derived metric" in str(error(catalog, "ctr > 1%", where=True))


# -- metric references -----------------------------------------------------------------------

def test_cycles_are_named_in_full():
    catalog = Catalog({"a": MetricDef("a", "b + 1"), "b": MetricDef("b", "c * 2"), "c": MetricDef("c", "a / 3")})
    with pytest.raises(FormulaError) as info:
        Binder(catalog).metric("a")
    assert "a → b → c → a" in str(info.value)


def test_errors_in_a_referenced_metric_name_it():
    catalog = Catalog({"good": MetricDef("good", "bad * 2"), "bad": MetricDef("bad", "spend + clicks")})
    with pytest.raises(FormulaError) as info:
        Binder(catalog).metric("good")
    assert str(info.value).startswith("in metric 'bad': line 1, column 1: cannot add money")


def test_declared_unit_must_fit_the_formula():
    ok = Catalog({"ctr2": MetricDef("ctr2", "clicks / impressions", unit=Unit.PERCENT)})
    assert Binder(ok).metric("ctr2").unit is Unit.PERCENT
    bad = Catalog({"x": MetricDef("x", "clicks / impressions", unit=Unit.MONEY)})
    with pytest.raises(FormulaError, match="declares its unit as money"):
        Binder(bad).metric("x")


def test_every_shipped_metric_binds(catalog):
    assert {"ctr", "cpc", "cpm", "cvr", "cpa", "roas", "vtr"} <= set(catalog.metrics)
    for name in catalog.metrics:
        Binder(catalog).metric(name)
