"""The `workbench` command as a user runs it (a real process, a fresh home)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run(home, *args, ok=True):
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_PROGRESS": "false"}
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("cli") / "home"
    run(h, "demo", "--days", "7")
    return h


def test_help_lists_every_command(tmp_path):
    out = run(tmp_path, "--help").stdout
    for command in ("init", "demo", "ingest", "transform", "query", "status", "orgs", "fx"):
        assert command in out
    assert "Example" in run(tmp_path, "ingest", "--help").stdout


def test_init_is_idempotent(tmp_path):
    run(tmp_path / "h", "init")
    assert "workbench ready" in run(tmp_path / "h", "init").stdout
    assert {p.name for p in (tmp_path / "h").iterdir()} >= {"workbench.db", "catalog.db", "warehouse", "secret.key"}


def test_demo_summary_and_rerun(home):
    out = run(home, "demo", "--org", "acme", "--days", "7").stdout
    assert "acme" in out and "spend per platform (USD)" in out and "quarantined records" in out
    for platform in ("dv360", "meta", "ttd"):
        assert platform in out


def test_query_formats_and_binding(home):
    out = run(home, "query", "--org", "acme", "--format", "json",
              "SELECT platform, count() AS n FROM gold.performance_daily WHERE platform = {p:String} GROUP BY platform",
              "-p", "p=meta").stdout
    rows = json.loads(out)
    assert rows[0]["platform"] == "meta" and rows[0]["n"] > 0
    csv = run(home, "query", "--org", "globex", "--format", "csv",
              "SELECT DISTINCT org_id FROM gold.performance_daily").stdout
    assert csv.split() == ["org_id", "globex"]


def test_status(home):
    out = run(home, "status", "--org", "acme").stdout
    for piece in ("gold.performance_daily", "freshness", "quarantine", "runs", "transform"):
        assert piece in out


@pytest.mark.parametrize("args, message", [
    (("query", "--org", "nope", "SELECT 1"), "organisation 'nope' does not exist"),
    (("query", "--org", "acme", "SELECT * FROM file('/etc/passwd')"), "table functions are not allowed"),
    (("ingest", "--org", "acme", "--source", "facebook"), "unknown connector 'facebook'"),
    (("ingest", "--org", "acme", "--source", "csv"), "needs a file"),
])
def test_errors_are_one_clear_line(home, args, message):
    done = run(home, *args, ok=False)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2


def test_debug_shows_the_traceback(home):
    done = run(home, "--debug", "query", "--org", "nope", "SELECT 1", ok=False)
    assert done.returncode == 1 and "Traceback" in done.stderr


def test_csv_ingest_with_mapping_and_bad_file(home, tmp_path):
    good = tmp_path / "export.csv"
    good.write_text("Day,Campaign,Cost,Impressions,Clicks\n2026-10-01,Brand,\"1,200.50\",1000,10\n")
    out = run(home, "ingest", "--org", "acme", "--source", "csv", "--file", str(good),
              "--map", "campaign_name=Campaign", "--currency", "EUR").stdout
    assert "landed 1 records" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("Day,Campaign,Impressions,Clicks\n2026-10-01,Brand,1000,10\n")
    done = run(home, "ingest", "--org", "acme", "--source", "csv", "--file", str(bad),
               "--currency", "EUR", ok=False)
    assert done.returncode == 1 and "spend" in done.stderr
