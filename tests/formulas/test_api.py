"""The notebook API and the CLI: ws.metrics / define_metric / explain, `workbench metrics|metric`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import workbench as wb
from workbench.errors import FormulaError, ValidationError

END = dt.date(2026, 10, 20)
START = END - dt.timedelta(days=13)


@pytest.fixture(scope="module")
def orgs(tmp_path_factory):
    from workbench.settings import load_settings
    from workbench.stores import close_all

    settings = load_settings(home=tmp_path_factory.mktemp("api") / "home", progress=False)
    acme = wb.create_org("acme", "Acme", "USD", settings=settings)
    globex = wb.create_org("globex", "Globex", "EUR", settings=settings)
    for ws in (acme, globex):
        ws.ingest("synthetic", START, END, progress=False)
        ws.transform(progress=False)
    yield acme, globex
    close_all()


QUERIES = [
    (["spend", "cpa", "roas", "ctr", "cpm"], ["platform", "campaign_name"], None),
    (["spend", "clicks", "vtr"], ["date"], "platform IN ('meta', 'ttd')"),
    (["spend", "won_value", "crm_roas", "leads"], ["platform"], None),
    (["SUM(IF(platform = 'meta', spend, 0)) / spend", "COUNT_DISTINCT(ad_id)"], ["week"], "impressions > 0"),
    (["spend", "budget", "budget_used"], ["campaign_status", "budget_type"], None),
    (["cpc", "AVG(clicks)", "MAX(spend)"], ["ad_group_name"], "campaign_status = 'active'"),
    (["spend", "ctr"], ["platform"], "HAS_LABEL('brand') AND NOT HAS_LABEL('test')"),
]


@pytest.mark.parametrize(("metrics", "by", "where"), QUERIES)
def test_both_engines_agree_on_real_gold(orgs, metrics, by, where):
    acme, _ = orgs
    sql = acme.metrics(metrics, by=by, where=where, start=START, end=END, engine="sql")
    pol = acme.metrics(metrics, by=by, where=where, start=START, end=END, engine="polars")
    assert sql.height > 0
    assert sql.columns == [*by, *metrics]
    assert_frame_equal(sql, pol, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_ratio_of_sums_not_mean_of_ratios(orgs):
    acme, _ = orgs
    daily = acme.metrics(["clicks", "impressions", "ctr"], by=["platform", "date"], start=START, end=END)
    total = acme.metrics(["ctr"], by=["platform"], start=START, end=END)
    expected = daily.group_by("platform").agg((pl.col("clicks").sum() / pl.col("impressions").sum()).alias("ctr"))
    assert_frame_equal(total, expected.sort("platform"), check_exact=False, rel_tol=1e-12)
    mean_of_ratios = daily.group_by("platform").agg(pl.col("ctr").mean()).sort("platform")
    assert not total["ctr"].equals(mean_of_ratios["ctr"])


def test_each_org_sees_only_its_own_rows(orgs):
    acme, globex = orgs
    for ws in (acme, globex):
        gold = ws.table("gold.campaign_daily", START, END)
        for engine in ("sql", "polars"):
            got = ws.metrics(["spend", "clicks"], engine=engine, start=START, end=END)
            assert got["clicks"][0] == gold["clicks"].sum()
            assert got["spend"][0] == pytest.approx(gold["spend_org"].sum())
    # A string literal that tries to break out is a bound value: it matches nothing
    got = acme.metrics(["spend"], where="platform = 'x'' OR org_id = ''globex'")
    assert got["spend"][0] == 0


def test_own_definitions_are_used_and_explained(orgs):
    acme, globex = orgs
    change = acme.define_metric("fee_cpa", "cpa * 1.15", description="CPA with a 15% agency fee",
                                comment="for the Q4 deck")
    assert change.unit == "money" and change.version == 1
    got = acme.metrics(["cpa", "fee_cpa"], by=["platform"], start=START, end=END)
    assert got["fee_cpa"].to_list() == pytest.approx([v * 1.15 if v is not None else None for v in got["cpa"]])
    with pytest.raises(FormulaError, match="unknown metric 'fee_cpa'"):
        globex.metrics(["fee_cpa"])
    text = str(acme.explain("fee_cpa"))
    assert "fee_cpa = cpa * 1.15" in text and "org v1" in text
    assert "└── cpa  [money]  = spend / conversions" in text
    assert "SELECT" in text and "gold.campaign_daily" in text
    assert "fee_cpa" in str(acme.explain("cpa")).split("used by:")[1]
    history = acme.metric_history("fee_cpa")
    assert history.select("version", "comment").rows() == [(1, "for the Q4 deck")]
    catalog = acme.metric_catalog()
    assert {"spend", "ctr", "fee_cpa", "platform"} <= set(catalog["name"])


def test_formatted_output_follows_units(orgs):
    acme, globex = orgs
    shown = acme.metrics(["spend", "ctr", "roas", "clicks"], by=["platform"], formatted=True)
    row = shown.row(0, named=True)
    assert row["spend"].startswith("$") and row["ctr"].endswith("%") and row["roas"].endswith("x")
    assert "," in row["clicks"] or row["clicks"].isdigit()
    assert globex.metrics(["spend"], formatted=True)["spend"][0].startswith("€")


def test_bad_requests_say_what_to_fix(orgs):
    acme, _ = orgs
    with pytest.raises(FormulaError, match="did you mean 'platform'"):
        acme.metrics(["spend"], by=["platfrom"])
    with pytest.raises(FormulaError, match="leads is not available by ad_name"):
        acme.metrics(["leads"], by=["ad_name"])
    with pytest.raises(ValidationError, match="engine must be one of"):
        acme.metrics(["spend"], engine="duckdb")
    with pytest.raises(ValidationError, match="give both a start and an end"):
        acme.metrics(["spend"], start=START)
    with pytest.raises(FormulaError, match="at least one metric"):
        acme.metrics([])


# -- the command line ------------------------------------------------------------------------

def _cli(home, *args, ok=True):
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_PROGRESS": "false"}
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_cli_metrics_and_definitions(orgs):
    acme, _ = orgs
    home = acme.settings.home
    out = _cli(home, "metrics", "--org", "acme", "--metrics", "spend,cpa,DIVIDE(spend, clicks, 0)", "--by", "platform",
               "--from", str(START), "--to", str(END), "--format", "json")
    rows = json.loads(out.stdout)
    assert {r["platform"] for r in rows} >= {"meta", "ttd", "dv360"}
    assert set(rows[0]) == {"platform", "spend", "cpa", "DIVIDE(spend, clicks, 0)"}
    table = _cli(home, "metrics", "--org", "acme", "-m", "spend,ctr", "--by", "platform").stdout
    assert "$" in table and "%" in table
    bad = _cli(home, "metric", "define", "x", "spend / cliks", "--org", "acme", ok=False)
    assert bad.returncode == 1
    assert "line 1, column 9: unknown metric 'cliks' — did you mean 'clicks'?" in bad.stderr
    assert "^^^^^" in bad.stderr
    window = _cli(home, "metrics", "--org", "acme", "-m", "cpa[last_7d]", ok=False)
    assert window.returncode == 1 and "cpa[last_7d]" in window.stderr
    _cli(home, "metric", "define", "cli_cpm", "spend / impressions * 1000", "--org", "acme", "--comment", "via cli")
    assert "cli_cpm v2 saved" in _cli(home, "metric", "define", "cli_cpm", "spend / impressions * 1100",
                                     "--org", "acme").stdout
    assert "via cli" in _cli(home, "metric", "history", "cli_cpm", "--org", "acme").stdout
    shown = _cli(home, "metric", "show", "cli_cpm", "--org", "acme").stdout
    assert "cli_cpm = spend / impressions * 1100" in shown and "SELECT" in shown
    assert "cli_cpm" in _cli(home, "metric", "list", "--org", "acme").stdout
    assert "removed" in _cli(home, "metric", "remove", "cli_cpm", "--org", "acme").stdout
