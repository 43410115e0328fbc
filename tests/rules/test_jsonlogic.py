"""Rule conditions to and from JsonLogic (``workbench.rules.jsonlogic``).

Examples in both directions, rules shaped like react-awesome-query-builder's export, every
refusal as a positioned or path-naming ``FormulaError``, and properties: random fitting
conditions survive formula -> JsonLogic -> formula (up to the documented normalisations), imported
text is canonical, and random JSON never raises anything but ``FormulaError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import FormulaError
from workbench.formulas import syntax as s
from workbench.formulas.binder import Binder
from workbench.formulas.catalog import RESERVED, Catalog
from workbench.formulas.packs import metric_packs
from workbench.formulas.parser import parse
from workbench.rules.jsonlogic import from_jsonlogic, to_jsonlogic

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def var(name: str) -> dict[str, Any]:
    return {"var": name}


# -- formula -> JsonLogic ---------------------------------------------------------------------------

EXPORTS = [
    ("cpa[last_7d] > 1.3 * target_cpa AND spend[last_7d] > 200",
     {"and": [{">": [var("cpa[last_7d]"), {"*": [1.3, var("target_cpa")]}]}, {">": [var("spend[last_7d]"), 200]}]}),
    ("ctr[yesterday] < 70% * ctr[previous_7d]", {"<": [var("ctr[yesterday]"), {"*": [0.7, var("ctr[previous_7d]")]}]}),
    ("platform IN ('meta', 'it''s')", {"in": [var("platform"), ["meta", "it's"]]}),
    ("platform NOT IN ('ttd')", {"!": {"in": [var("platform"), ["ttd"]]}}),
    ("NOT platform IN ('ttd')", {"!": {"in": [var("platform"), ["ttd"]]}}),
    ("campaign_name IS NULL", {"==": [var("campaign_name"), None]}),
    ("campaign_name IS NOT NULL", {"!=": [var("campaign_name"), None]}),
    ("a <> 1 OR a != 2 OR a == 3 OR a = 4",
     {"or": [{"!=": [var("a"), 1]}, {"!=": [var("a"), 2]}, {"==": [var("a"), 3]}, {"==": [var("a"), 4]}]}),
    ("a < 1 AND a <= 2 AND a > 3 AND a >= 4",
     {"and": [{"<": [var("a"), 1]}, {"<=": [var("a"), 2]}, {">": [var("a"), 3]}, {">=": [var("a"), 4]}]}),
    ("(a AND b) AND c", {"and": [var("a"), var("b"), var("c")]}),
    ("a AND (b AND c)", {"and": [var("a"), {"and": [var("b"), var("c")]}]}),
    ("a OR b AND c", {"or": [var("a"), {"and": [var("b"), var("c")]}]}),
    ("NOT (a OR b)", {"!": {"or": [var("a"), var("b")]}}),
    ("a + b + c - d * e * f / g > 0",
     {">": [{"-": [{"+": [var("a"), var("b"), var("c")]},
                   {"/": [{"*": [var("d"), var("e"), var("f")]}, var("g")]}]}, 0]}),
    ("-x > - 5 AND y < -5", {"and": [{">": [{"-": [var("x")]}, {"-": [5]}]}, {"<": [var("y"), -5]}]}),
    ("IF(a > 1, spend, 0) > 10", {">": [{"if": [{">": [var("a"), 1]}, var("spend"), 0]}, 10]}),
    ("if(a, 1, IF(b, 2, IF(c, 3))) = 1", {"==": [{"if": [var("a"), 1, var("b"), 2, var("c"), 3]}, 1]}),
    ("IF(a, IF(b, 1, 2), 3) = 1", {"==": [{"if": [var("a"), {"if": [var("b"), 1, 2]}, 3]}, 1]}),
    ("LEAST(cpa, 100) < greatest(cpc, 0.5, x)", {"<": [{"min": [var("cpa"), 100]}, {"max": [var("cpc"), 0.5, var("x")]}]}),
    ("settled", var("settled")),
    ("NOT settled", {"!": var("settled")}),
    ("settled = TRUE AND x != FALSE", {"and": [{"==": [var("settled"), True]}, {"!=": [var("x"), False]}]}),
    ("date >= '2026-01-01' -- from January\n AND spend > 2.5e3",
     {"and": [{">=": [var("date"), "2026-01-01"]}, {">": [var("spend"), 2500.0]}]}),
]


@pytest.mark.parametrize(("text", "expected"), EXPORTS, ids=[t for t, _ in EXPORTS])
def test_to_jsonlogic(text: str, expected: dict[str, Any]) -> None:
    logic = to_jsonlogic(text)
    assert logic == expected
    assert json.loads(json.dumps(logic)) == logic  # plain JSON
    assert normalised(parse(from_jsonlogic(logic))) == normalised(parse(text))


def test_to_jsonlogic_keeps_ints_and_floats() -> None:
    logic = to_jsonlogic("x > 3 AND y > 3.0 AND z > 9223372036854775807")
    values = [part[">"][1] for part in logic["and"]]
    assert [type(v) for v in values] == [int, float, int]
    assert json.dumps(logic).count("3.0") == 1


EXPORT_ERRORS = [
    ("DIVIDE(spend, clicks) > 1", "DIVIDE(spend, clicks)", "no DIVIDE"),
    ("spend > 1 AND ROUND(cpa, 2) > 3", "ROUND(cpa, 2)", "no ROUND"),
    ("COALESCE(video_views, 0) > 0", "COALESCE(video_views, 0)", "no COALESCE"),
    ("ABS(x) > 1", "ABS(x)", "no ABS"),
    ("x > 1 OR LOG(x, 2) > 1", "LOG(x, 2)", "no LOG"),
    ("LN(x) > 1", "LN(x)", "no LN"),
    ("SUM(spend) > 100", "SUM(spend)", "aggregate"),
    ("IF(MAX(x) > 1, 1, 0) = 1", "MAX(x)", "aggregate"),
    ("COUNT(*) > 0", "COUNT(*)", "aggregate"),
    ("COUNT_DISTINCT(ad_id) > 3", "COUNT_DISTINCT(ad_id)", "aggregate"),
    ("frobnicate(x) > 1", "frobnicate(x)", "not a function JsonLogic has"),
    ("x = NULL", "x = NULL", "write IS NULL"),
    ("a > 1 AND NULL != x", "NULL != x", "write IS NOT NULL"),
    ("IF(a) = 1", "IF(a)", "IF takes"),
    ("IF(a, 1, 2, 3) = 1", "IF(a, 1, 2, 3)", "IF takes"),
    ("LEAST(a) > 1", "LEAST(a)", "at least two"),
    ("TRUE", "TRUE", "constant"),
    ("(42)", "42", "constant"),
]


@pytest.mark.parametrize(("text", "part", "why"), EXPORT_ERRORS, ids=[t for t, _, _ in EXPORT_ERRORS])
def test_to_jsonlogic_refuses_what_does_not_fit(text: str, part: str, why: str) -> None:
    with pytest.raises(FormulaError) as info:
        to_jsonlogic(text)
    exc = info.value
    assert "does not fit JsonLogic" in exc.message and why in exc.message
    assert (exc.start, exc.end) == (text.index(part), text.index(part) + len(part))
    assert exc.text == text


def test_to_jsonlogic_passes_parse_errors_on() -> None:
    with pytest.raises(FormulaError, match="ends too early"):
        to_jsonlogic("spend >")
    with pytest.raises(FormulaError, match="not int"):
        to_jsonlogic(42)  # type: ignore[arg-type]


# -- JsonLogic -> formula: what query builders emit -------------------------------------------------

# react-awesome-query-builder's QbUtils.jsonLogicFormat: groups are and/or lists (a one-rule group
# too), NOT groups are "!", between is the 3-argument "<=", "any in" is "in" with a list.
RAQB_PAUSE = """
{
  "and": [
    {">": [{"var": "cpa[last_7d]"}, 45]},
    {">=": [{"var": "spend[last_7d]"}, 200]},
    {"in": [{"var": "platform"}, ["meta", "google_ads"]]},
    {"!": {"or": [
      {"==": [{"var": "campaign_status"}, "PAUSED"]},
      {"==": [{"var": "campaign_name"}, null]}
    ]}}
  ]
}
"""

IMPORTS = [
    (RAQB_PAUSE, "cpa[last_7d] > 45 AND spend[last_7d] >= 200 AND platform IN ('meta', 'google_ads') "
                 "AND NOT (campaign_status = 'PAUSED' OR campaign_name IS NULL)"),
    ({"and": [{"==": [var("settled"), True]}]}, "settled = TRUE"),  # one-rule group
    ({"or": [{"<=": [10, var("cpc"), 20]}, {"!": {"<=": [1, var("cpm"), 2]}}]},
     "10 <= cpc AND cpc <= 20 OR NOT (1 <= cpm AND cpm <= 2)"),  # between / not between
    ({"<": [0, var("ctr[yesterday]"), 0.5]}, "0 < ctr[yesterday] AND ctr[yesterday] < 0.5"),
    ({"!": {"in": [var("platform"), ["ttd", "dv360"]]}}, "platform NOT IN ('ttd', 'dv360')"),  # not any in
    ({"and": [{"==": [var("a"), None]}, {"!=": [var("b"), None]}, {"==": [None, var("c")]}]},
     "a IS NULL AND b IS NOT NULL AND c IS NULL"),
    ({"!!": var("campaign_name")}, "campaign_name IS NOT NULL"),  # is not empty
    ({"!!": [{">": [var("spend"), 0]}]}, "spend > 0"),
    ({"!": var("settled")}, "NOT settled"),  # is empty
    ({"!": [{"!": [var("settled")]}]}, "NOT NOT settled"),
    ({"===": [var("a"), 1]}, "a = 1"),
    ({"!==": [var("a"), "x"]}, "a != 'x'"),
    ({"or": [{"and": [var("a"), var("b")]}, var("c")]}, "a AND b OR c"),
    ({"and": [{"or": [var("a"), var("b")]}, var("c")]}, "(a OR b) AND c"),
    ({"and": [var("a"), {"and": [var("b"), var("c")]}]}, "a AND (b AND c)"),
    ({">": [var("ctr[yesterday]"), {"*": [0.7, var("ctr[previous_7d]")]}]}, "ctr[yesterday] > 0.7 * ctr[previous_7d]"),
    ({"==": [{"-": [var("a"), {"-": [var("b"), var("c")]}]}, {"/": [var("a"), {"*": [var("b"), var("c")]}]}]},
     "a - (b - c) = a / (b * c)"),
    ({">": [{"*": [{"+": [var("a"), var("b")]}, {"-": [var("c")]}]}, {"-": [5]}]}, "(a + b) * -c > -(5)"),
    ({">": [{"-": [{"-": [var("x")]}]}, {"-": [-5]}]}, "-(-x) > -(-5)"),
    ({">": [{"-": [var("x"), -5]}, {"+": [var("y")]}]}, "x - -5 > y"),
    ({"==": [{"<": [var("a"), var("b")]}, False]}, "(a < b) = FALSE"),
    ({"==": [{"!": var("a")}, var("b")]}, "(NOT a) = b"),
    ({"==": [{"in": [var("a"), [1]]}, True]}, "(a IN (1)) = TRUE"),
    ({"in": [{"+": [var("a"), 1]}, [{"-": [1]}, 2.5, None]]}, "a + 1 IN (-(1), 2.5, NULL)"),
    ({"==": [var("campaign_name"), "it's \"quoted\" -- not a comment"]},
     "campaign_name = 'it''s \"quoted\" -- not a comment'"),
    ({"if": [var("a"), 1, var("b"), 2, 3]}, "IF(a, 1, IF(b, 2, 3))"),
    ({"if": [var("a"), 1, var("b"), 2]}, "IF(a, 1, IF(b, 2))"),
    ({"?:": [{"or": [var("a"), var("b")]}, 1, 2]}, "IF(a OR b, 1, 2)"),
    ({"<": [{"min": [var("a"), 1]}, {"max": [var("b"), 2, 3]}]}, "LEAST(a, 1) < GREATEST(b, 2, 3)"),
    ({"<": [{"min": [var("a")]}, {"max": var("b")}]}, "a < b"),
    ({"and": [{"var": ["a"]}, {"var": ["b", None]}, var("If"), var("_x1[last_30d]")]}, "a AND b AND If AND _x1[last_30d]"),
    ({">": [var("x"), 1e-07]}, "x > 1e-07"),
    ({">": [var("x"), -9223372036854775807]}, "x > -9223372036854775807"),
    ("true", "TRUE"),
    ('"text"', "'text'"),
    ("null", "NULL"),
]


@pytest.mark.parametrize(("logic", "expected"), IMPORTS, ids=[str(i) for i in range(len(IMPORTS))])
def test_from_jsonlogic(logic: Any, expected: str) -> None:
    text = from_jsonlogic(logic)
    assert text == expected
    parse(text)
    if not isinstance(logic, str):
        assert from_jsonlogic(json.dumps(logic)) == text


def test_imported_builder_rule_binds_as_a_condition() -> None:
    rule = {"and": [{"in": [var("platform"), ["meta"]]}, {">": [var("spend"), 100]}, {"!": var("settled")},
                    {"!!": var("campaign_name")}, {"<=": [10, var("clicks"), 20]}]}
    text = from_jsonlogic(rule)
    assert text == ("platform IN ('meta') AND spend > 100 AND NOT settled AND campaign_name IS NOT NULL "
                    "AND 10 <= clicks AND clicks <= 20")
    assert Binder(Catalog(metric_packs.definitions())).condition(text).unit.value == "boolean"


IMPORT_ERRORS = [
    ({"foo": [1]}, ['unknown JsonLogic operator "foo"', "(at $.foo)"]),
    ({"and": [{"==": [var("a"), 1]}, {"bar": 2}]}, ['"bar"', "(at $.and[1].bar)"]),
    ({"and": [var("a"), {"<=": [1]}]}, ["'<=' takes two values", "(at $.and[1]['<='])"]),
    ({">": [1, 2, 3]}, ["'>' takes two values, got 3"]),
    ({"/": [1]}, ["'/' takes two values"]),
    ({"-": [1, 2, 3]}, ["'-' takes one or two values"]),
    ({"and": []}, ["'and' takes at least one condition, got 0"]),
    ({"!": [var("a"), var("b")]}, ["'!' takes one value"]),
    ({"if": [var("a")]}, ["'if' takes a condition and a value"]),
    ({"?:": [var("a"), 1]}, ["'?:' takes a condition and two values"]),
    ({"min": []}, ["'min' takes at least one value"]),
    ({"in": ["brand", var("campaign_name")]}, ["text containment", "(at $.in)"]),  # builders' "contains"
    ({"!": {"in": ["brand", var("campaign_name")]}}, ["text containment", "(at $['!'].in)"]),
    ({"in": [var("campaign_name"), "brand"]}, ["text containment"]),
    ({"in": [var("a"), var("b")]}, ["needs a list", "(at $.in[1])"]),
    ({"in": [var("a"), []]}, ["empty list"]),
    ({"in": [var("a"), [[1]]]}, ["only allowed as the values of 'in'", "(at $.in[1][0])"]),
    ({"%": [var("a"), 2]}, ["remainder", "(at $['%'])"]),
    ({"cat": ["a", "b"]}, ["text operations"]),
    ({"some": [var("a"), {"==": [var(""), 1]}]}, ["array operations"]),
    ({"missing": ["a"]}, ["IS NULL"]),
    ({"log": var("a")}, ["debugging"]),
    ({"var": "user.name"}, ["'user.name' is not a formula name", "nested fields", "(at $.var)"]),
    ({"var": "null"}, ["'null' is not a formula name"]),
    ({"var": "cpa[AND]"}, ["not a formula name"]),
    ({"var": "cpa[last 7d]"}, ["not a formula name"]),
    ({"var": "cpa\n"}, ["not a formula name"]),
    ({"var": ""}, ["'' is not a formula name"]),
    ({"var": 1}, ["'var' needs a name (text), not 1"]),
    ({"var": [var("a")]}, ["needs a name"]),
    ({"var": []}, ["'var' takes a name"]),
    ({"var": ["a", 0]}, ["default value"]),
    ({}, ["exactly one key", "has 0"]),
    ({"==": [1, 2], "!=": [1, 2]}, ["exactly one key", "has 2"]),
    ({1: 2}, ["unknown JsonLogic operator 1"]),
    ({">": [var("a"), float("nan")]}, ["not a number"]),
    ({">": [var("a"), float("inf")]}, ["not a number"]),
    ({">": [var("a"), 2**63]}, ["too large"]),
    ({">": [var("a"), -(2**63)]}, ["too large"]),
    ({">": [var("a"), (1, 2)]}, ["tuple is not a JSON value"]),
    ({"==": [var("a"), "x" * 30_000]}, ["longer than"]),
    ('{"and": [', ["not valid JSON", "column 10"]),
    ('{"a": NaN}', ["NaN is not a number JSON allows"]),
    ('{">": [1, 1e400]}', ["not a number a formula can hold"]),
    ("[" * 100_000, ["not valid JSON"]),
    ("1" * 5000, ["not valid JSON"]),
    ("[1, 2]", ["only allowed as the values of 'in'", "(at $)"]),
    ({"and": [var("a")] * 251}, ["more than 250 values"]),
    ({"if": [var("a")] * 800}, ["more than 750 values"]),
]


@pytest.mark.parametrize(("logic", "fragments"), IMPORT_ERRORS, ids=[str(i) for i in range(len(IMPORT_ERRORS))])
def test_from_jsonlogic_refusals(logic: Any, fragments: list[str]) -> None:
    with pytest.raises(FormulaError) as info:
        from_jsonlogic(logic)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("logic", [[var("a")], 42, None, ("a",)])
def test_from_jsonlogic_takes_a_dict_or_text(logic: Any) -> None:
    with pytest.raises(FormulaError, match="a dict or JSON text"):
        from_jsonlogic(logic)


def nest(op: str, depth: int, wrap_list: bool) -> dict[str, Any]:
    rule: dict[str, Any] = var("x")
    for _ in range(depth):
        rule = {op: [rule, 1] if wrap_list else rule}
    return rule


def test_deep_rules() -> None:
    assert from_jsonlogic(nest("!", 240, False)) == "NOT " * 240 + "x"
    assert from_jsonlogic(nest("+", 240, True)) == "x" + " + 1" * 240
    deep = from_jsonlogic(json.dumps({"-": [1, nest("+", 150, True)]}))
    assert deep.count("(") == 1 and parse(deep) is not None
    for op, wrap in (("!", False), ("+", True)):
        with pytest.raises(FormulaError, match="more than 250"):
            from_jsonlogic(nest(op, 260, wrap))
    with pytest.raises(FormulaError, match="brackets more than 200 deep"):
        from_jsonlogic(json.dumps({"!": _right_nested(210)}))
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(FormulaError, match="more than 250"):
        from_jsonlogic({"in": [var("x"), cycle]})
    shared = var("x")
    for _ in range(40):  # the middle of a between appears twice: 2**40 leaves
        shared = {"<": [1, shared, 2]}
    with pytest.raises(FormulaError, match="more than 10000 parts"):
        from_jsonlogic(shared)


def _right_nested(depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = var("x")
    for _ in range(depth):
        rule = {"-": [1, rule]}
    return rule


def test_deep_conditions_export() -> None:
    chain = "x" + " + 1" * 240
    assert to_jsonlogic(chain) == {"+": [var("x")] + [1] * 240}
    nested = "1 - (" * 198 + "1 - x" + ")" * 198 + " > 0"
    assert from_jsonlogic(to_jsonlogic(nested)) == nested


# -- properties -------------------------------------------------------------------------------------

NAMES = ["spend", "cpa", "ctr", "target_cpa", "platform", "Campaign_Name", "x", "_a1", "sum", "IF", "least"]
WINDOWS = ["last_7d", "previous_7d", "yesterday", "today", "month_to_date", "Last_30d"]
identifiers = st.one_of(
    st.sampled_from(NAMES),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n.lower() not in RESERVED),
)
names = st.one_of(identifiers, st.builds(lambda n, w: f"{n}[{w}]", identifiers, st.sampled_from(WINDOWS)))
numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.integers(0, 2**63 - 1).map(str),
    st.builds(lambda a, b: f"{a}.{b}", st.integers(0, 999), st.integers(0, 999)),
    st.sampled_from([".5", "5.", "1e3", "2.5E-3", "0.0", "1e308"]),
    st.builds(lambda a: f"{a}%", st.sampled_from(["30", "0", "1.5", ".5", "100"])),
    st.builds(lambda a: f"-{a}", st.sampled_from(["1", "2.5", "0", "0.0", "7%"])),
)
strings = st.text(max_size=12).map(
    lambda v: "'" + v.replace("'", "''") + "'") | st.text(max_size=6).map(lambda v: '"' + v.replace('"', '""') + '"')
COMPARISONS = ["=", "==", "!=", "<>", "<", "<=", ">", ">="]


def maybe_brackets(draw: st.DrawFn, text: str) -> str:
    """Brackets or not: without them precedence decides, and ``parse`` of the text is the reference."""
    return f"({text})" if draw(st.booleans()) else text


@st.composite
def numeric(draw: st.DrawFn, depth: int = 3) -> str:
    kind = draw(st.sampled_from(["atom", "atom", "arith", "arith", "neg", "if", "minmax"] if depth else ["atom"]))
    if kind == "atom":
        return draw(st.one_of(names, numbers))
    if kind == "arith":
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"{maybe_brackets(draw, draw(numeric(depth - 1)))} {op} {maybe_brackets(draw, draw(numeric(depth - 1)))}"
    if kind == "neg":
        return f"- {maybe_brackets(draw, draw(numeric(depth - 1)))}"
    if kind == "if":
        args = [draw(condition(depth - 1)), draw(numeric(depth - 1))]
        if draw(st.booleans()):
            args.append(draw(numeric(depth - 1)))
        return f"{draw(st.sampled_from(['IF', 'if', 'If']))}({', '.join(args)})"
    fn = draw(st.sampled_from(["LEAST", "GREATEST", "least", "Greatest"]))
    return f"{fn}({', '.join(draw(st.lists(numeric(depth - 1), min_size=2, max_size=4)))})"


@st.composite
def condition(draw: st.DrawFn, depth: int = 3) -> str:
    kinds = ["compare", "compare", "text", "in", "null", "logic", "logic", "not", "literal", "name"]
    kind = draw(st.sampled_from(kinds if depth else ["compare", "text", "in", "null", "literal", "name"]))
    d = max(depth - 1, 0)
    if kind == "compare":
        op = draw(st.sampled_from(COMPARISONS))
        return f"{maybe_brackets(draw, draw(numeric(d)))} {op} {maybe_brackets(draw, draw(numeric(d)))}"
    if kind == "text":
        return f"{draw(names)} {draw(st.sampled_from(['=', '!=', '<>']))} {draw(strings)}"
    if kind == "in":
        items = draw(st.lists(st.one_of(strings, numbers), min_size=1, max_size=4))
        keyword = draw(st.sampled_from(["IN", "in", "NOT IN", "not In"]))
        text = f"{draw(names)} {keyword} ({', '.join(items)})"
        return f"NOT {text}" if draw(st.booleans()) else text
    if kind == "null":
        return f"{maybe_brackets(draw, draw(numeric(d)))} {draw(st.sampled_from(['IS NULL', 'is not null']))}"
    if kind == "logic":
        op = draw(st.sampled_from(["AND", "and", "OR", "Or"]))
        parts = [maybe_brackets(draw, draw(condition(d))) for _ in range(draw(st.integers(2, 4)))]
        return f" {op} ".join(parts)
    if kind == "not":
        return f"{draw(st.sampled_from(['NOT', 'not']))} {maybe_brackets(draw, draw(condition(d)))}"
    if kind == "literal":
        return draw(st.sampled_from(["TRUE", "false", "True"]))
    return draw(names)


def normalised(node: s.Node) -> s.Node:
    """The documented normalisations: 30% is 0.3, function names upper case, NOT x IN is x NOT IN."""
    if isinstance(node, s.Number):
        return replace(node, percent=False)
    if isinstance(node, s.Call):
        return replace(node, name=node.name.upper(), args=tuple(normalised(a) for a in node.args))
    if isinstance(node, s.Unary):
        operand = normalised(node.operand)
        if node.op == "not" and isinstance(operand, s.In) and not operand.negated:
            return replace(operand, negated=True)
        return replace(node, operand=operand)
    if isinstance(node, s.Binary):
        return replace(node, left=normalised(node.left), right=normalised(node.right))
    if isinstance(node, s.In):
        return replace(node, operand=normalised(node.operand), items=tuple(normalised(i) for i in node.items))
    if isinstance(node, s.IsNull):
        return replace(node, operand=normalised(node.operand))
    return node


@settings(FAST, max_examples=150)
@given(condition(3))
def test_round_trip(text: str) -> None:
    tree = parse(text)
    if isinstance(tree, s.Boolean):
        with pytest.raises(FormulaError, match="constant"):
            to_jsonlogic(text)
        return
    logic = to_jsonlogic(text)
    back = from_jsonlogic(json.dumps(logic))
    assert normalised(parse(back)) == normalised(tree)
    assert from_jsonlogic(logic) == back
    assert to_jsonlogic(back) == logic  # the JSON is a fixed point
    assert from_jsonlogic(to_jsonlogic(back)) == back  # and so is the imported text


# Random JsonLogic from the operators' vocabulary: many fit, many do not; none may raise anything
# but FormulaError, and what fits reads back and is canonical.
OPERATORS = ["and", "or", "!", "!!", "==", "===", "!=", "!==", "<", "<=", ">", ">=", "in", "+", "-", "*", "/",
             "if", "?:", "min", "max", "var", "%", "cat", "missing", "foo", ""]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["cpa[last_7d]", "spend", "a.b", "null", "x[", "IF"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(OPERATORS), st.text(max_size=3)), inner, max_size=2),
        st.builds(lambda op, args: {op: args}, st.sampled_from(OPERATORS), st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda op, arg: {op: arg}, st.sampled_from(OPERATORS), inner),
        st.builds(lambda name: {"var": name}, st.sampled_from(["cpa[last_7d]", "spend", "x", "settled"])),
    ),
    max_leaves=25,
)


def check_import(logic: Any) -> None:
    try:
        text = from_jsonlogic(logic)
    except FormulaError as exc:
        assert exc.message
        return
    parse(text)
    try:
        again = to_jsonlogic(text)
    except FormulaError as exc:
        assert "constant" in exc.message, exc.message  # the only thing import makes that export refuses
        return
    assert from_jsonlogic(again) == text


@settings(FAST, max_examples=200)
@given(json_values)
def test_random_json_only_formula_errors(logic: Any) -> None:
    check_import(logic if isinstance(logic, dict) else json.dumps(logic))


json_leaves = st.one_of(
    st.builds(var, st.sampled_from(["cpa[last_7d]", "spend", "platform", "settled", "x"])),
    st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.text(max_size=6), st.none(), st.booleans(),
)


def _operation(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def args(low: int, high: int) -> st.SearchStrategy[list[Any]]:
        return st.lists(inner, min_size=low, max_size=high)

    return st.one_of(
        st.builds(lambda op, a: {op: a}, st.sampled_from(["and", "or", "+", "*", "min", "max"]), args(1, 4)),
        st.builds(lambda op, a: {op: a}, st.sampled_from(["==", "===", "!=", "!==", ">", ">=", "-", "/"]), args(2, 2)),
        st.builds(lambda op, a: {op: a}, st.sampled_from(["<", "<="]), args(2, 3)),
        st.builds(lambda op, a, wrap: {op: [a] if wrap else a}, st.sampled_from(["!", "!!", "-"]), inner,
                  st.booleans()),
        st.builds(lambda a, items: {"in": [a, items]}, inner, args(1, 3)),
        st.builds(lambda a: {"if": a}, args(2, 7)),
        st.builds(lambda a: {"?:": a}, args(3, 3)),
    )


well_formed_rules = st.recursive(json_leaves, _operation, max_leaves=20)


@settings(FAST, max_examples=200)
@given(well_formed_rules)
def test_well_formed_rules_import(logic: Any) -> None:
    """Rules with the right shapes: they import (or are refused as a whole) and the text is canonical."""
    check_import(logic if isinstance(logic, dict) else json.dumps(logic))


@settings(FAST, max_examples=100)
@given(st.text(alphabet='{}[]",:0123456789.e-+ truefalsnvai!=<>', max_size=60))
def test_random_json_text_only_formula_errors(text: str) -> None:
    check_import(text)


@settings(FAST, max_examples=150)
@given(st.lists(st.sampled_from(["x", "cpa[last_7d]", "1", "2.5", "30%", "'a'", "NULL", "TRUE", "(", ")", ",", "+",
                                 "-", "*", "/", "=", "<>", "<", "AND", "OR", "NOT", "IN", "IS", "IF", "LEAST",
                                 "SUM", "DIVIDE", "COUNT(*)", "--"]), min_size=1, max_size=20).map(" ".join))
def test_random_text_export_only_formula_errors(text: str) -> None:
    try:
        logic = to_jsonlogic(text)
    except FormulaError as exc:
        assert exc.message
        return
    assert isinstance(logic, dict)
    assert normalised(parse(from_jsonlogic(logic))) == normalised(parse(text))


def test_float_text_is_exact() -> None:
    for value in (0.1, 1 / 3, 1e-300, 1.7976931348623157e308, 5e-324, -0.0, 2.0**60):
        text = from_jsonlogic({">": [var("x"), value]})
        number = parse(text)
        assert isinstance(number, s.Binary) and isinstance(number.right, s.Number)
        assert number.right.value == value and math.copysign(1, number.right.value) == math.copysign(1, value)
