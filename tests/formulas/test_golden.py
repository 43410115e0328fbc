"""Golden files: formula -> SQL, and formula -> result from both backends (see formula_helpers.py)."""

from __future__ import annotations

import json

import pytest

from formula_helpers import UPDATE, frame_text, read_cases, write_cases
from workbench.formulas import api
from workbench.formulas import plan as planner
from workbench.formulas.catalog import Catalog
from workbench.formulas.packs import metric_packs

SQL_CASES = read_cases("sql.txt")
RESULT_CASES = read_cases("results.txt")
_actual: dict[str, dict[str, str]] = {"sql.txt": {}, "results.txt": {}}


def _sql_text(case) -> str:
    start, end = case.window
    plan = planner.build(Catalog(metric_packs.definitions()), case.metrics, case.by, case.where, start, end)
    sql, params = planner.to_sql_text(plan)
    return sql + (f"\n-- params: {json.dumps(params, default=str, sort_keys=True)}" if params else "")


@pytest.mark.parametrize("case", SQL_CASES, ids=[c.title for c in SQL_CASES])
def test_sql(case):
    actual = _sql_text(case)
    _actual["sql.txt"][case.title] = actual
    if not UPDATE:
        assert actual == case.expected


@pytest.mark.parametrize("case", RESULT_CASES, ids=[c.title for c in RESULT_CASES])
def test_results(case, gold_stores):
    start, end = case.window
    by_engine = {}
    for engine in api.ENGINES:
        frame, _ = api.run(gold_stores, "acme", case.metrics, case.by, case.where, start, end, engine)
        by_engine[engine] = frame_text(frame)
    assert by_engine["sql"] == by_engine["polars"], "the two backends disagree"
    _actual["results.txt"][case.title] = by_engine["sql"]
    if not UPDATE:
        assert by_engine["sql"] == case.expected


def teardown_module() -> None:
    if UPDATE:
        for name, cases in (("sql.txt", SQL_CASES), ("results.txt", RESULT_CASES)):
            if len(_actual[name]) == len(cases):
                write_cases(name, cases, _actual[name])
