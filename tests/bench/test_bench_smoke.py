"""The benchmark scripts run end to end at tiny sizes (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "WORKBENCH_PROGRESS": "false"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_pipeline_bench_runs_every_contender(tmp_path):
    out = tmp_path / "pipeline.json"
    stdout = _run("pipeline.py", "--sizes", "20000", "--no-pandas-limit", "--out", str(out),
                  "--cache-dir", str(tmp_path / "cache"), "--scratch", str(tmp_path))
    assert "ratio 20,000: workbench/floor" in stdout
    assert "ratio 20,000: pandas/workbench" in stdout
    assert "gold spend_org" in stdout and "MISS" not in stdout.split("gold spend_org")[1].split("\n")[0]
    results = json.loads(out.read_text())["sizes"]["20000"]["results"]
    assert set(results) == {"workbench", "floor", "pandas"}
    wb = results["workbench"]
    assert wb["rows_in"] == 20000 == wb["rows_silver"] + wb["rows_quarantined"]
    assert (wb["rows_silver"], wb["rows_quarantined"]) == (
        results["floor"]["rows_silver"], results["floor"]["rows_quarantined"])


def test_query_bench_compares_engines(tmp_path):
    out = tmp_path / "queries.json"
    stdout = _run("queries.py", "--rows", "20000", "--repeat", "3", "--orgs", "2",
                  "--days", "120", "--out", str(out))
    assert "ratio workbench/duckdb" in stdout and "ratio workbench/polars" in stdout
    stats = json.loads(out.read_text())["stats"]
    assert {"workbench", "duckdb", "polars"} <= set(stats)
    assert all(s["n"] == 3 for s in stats.values())


def test_formula_bench_compares_compiled_hand_and_row_by_row(tmp_path):
    out = tmp_path / "formulas.json"
    stdout = _run("formulas.py", "--quick", "--rows", "50000", "--python-rows", "5000",
                  "--runs", "2", "--days", "14", "--sql-runs", "2", "--warmup", "1", "--out", str(out))
    assert "compiled/hand =" in stdout and "row-by-row/compiled =" in stdout
    assert "ratio sql/polars engine" in stdout and "sql latency" in stdout
    results = json.loads(out.read_text())
    assert len(results["queries"]) == 2
    for query in results["queries"].values():
        assert query["groups"] > 0 and query["row_by_row"]["rows"] == 5000
        assert set(query["timing"]) == {"compiled", "hand", "compiled-prebuilt"}
    assert results["sql"]["gold_rows"] > 0 and results["sql"]["stats"]["sql"]["n"] == 2


def test_rules_bench_compares_engine_per_rule_and_python_loop(tmp_path):
    out = tmp_path / "rules.json"
    stdout = _run("rules.py", "--quick", "--out", str(out), "--scratch", str(tmp_path))
    assert "ratio python/engine =" in stdout and "ratio per-rule/engine =" in stdout
    assert "check python loop = engine on 5 rules: PASS" in stdout
    results = json.loads(out.read_text())
    assert (results["entities"], results["days"], results["rules"]) == (2000, 30, 100)
    engine = results["engine"]
    assert engine["entities_out"] == 2000 and engine["columns_out"] == 6 + 100
    assert engine["slots"] > 0 and len(engine["matched"]) == 100 and sum(engine["matched"].values()) > 0
    assert results["checks"]["python_vs_engine"]["rules"] == 5
    assert results["checks"]["per_rule_vs_engine"]["rules"] == 3
    assert results["python"]["rules_run"] == 5 and results["ratio_python_engine"] > 0
