"""The medallion pipeline on real parts: Iceberg on disk, chDB, SQLite."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import workbench as wb
from workbench.oltp import repo

END = dt.date.today()
START = END - dt.timedelta(days=13)
LINEAGE = ["connector", "connection_id", "source_batch_id", "extracted_at", "record_index"]


@pytest.fixture
def acme(stores):
    return wb.create_org("acme", "Acme", "USD", "America/New_York", settings=stores.settings)


def _rows_by_batch(ws, batch_id: str) -> int:
    n = 0
    for table in ("silver.ad_performance_daily", "silver.campaigns", "silver.crm_deals"):
        n += ws.table(table).filter(pl.col("source_batch_id") == batch_id).height
    return n


def test_every_record_is_accounted_for(acme):
    landed = acme.ingest("synthetic", START, END, progress=False)
    result = acme.transform(progress=False)
    assert landed.rows == result.rows_in > 0
    assert result.rows_in == result.rows_silver + result.rows_quarantined
    assert result.rows_quarantined > 0, "the synthetic source sends some malformed records"
    batch = repo.list_batches(acme.stores.db, "acme")[0]
    assert batch.status == "transformed"
    quarantined = acme.quarantine().filter(pl.col("batch_id") == batch.id)
    assert _rows_by_batch(acme, batch.id) + quarantined.height == batch.rows_in
    assert quarantined["reason"].str.len_chars().min() > 10
    assert quarantined["check"].null_count() == 0


def test_gold_agrees_with_silver_and_the_engine(acme):
    acme.ingest("synthetic", START, END, progress=False)
    acme.transform(progress=False)
    silver = acme.table("silver.ad_performance_daily")
    gold = acme.table("gold.performance_daily")
    assert gold.height == silver.height
    assert gold["spend_org"].sum() == pytest.approx(float(silver["spend_org"].cast(pl.Float64).sum()), rel=1e-9)
    engine = acme.query("SELECT platform, sum(spend_org) AS s, sum(clicks) AS c FROM gold.performance_daily "
                        "GROUP BY platform ORDER BY platform")
    polars_side = (gold.group_by("platform").agg(pl.col("spend_org").sum().alias("s"),
                                                  pl.col("clicks").sum().alias("c")).sort("platform"))
    assert engine["platform"].to_list() == polars_side["platform"].to_list() == ["dv360", "meta", "ttd"]
    assert engine["s"].to_list() == pytest.approx(polars_side["s"].to_list())
    assert engine["c"].to_list() == polars_side["c"].to_list()
    campaign = acme.table("gold.campaign_daily")
    assert campaign["spend_org"].sum() == pytest.approx(gold["spend_org"].sum())
    assert campaign["budget_amount"].null_count() < campaign.height
    crm = acme.table("gold.crm_attribution_daily")
    assert crm["leads"].sum() > 0 and crm["platform"].null_count() < crm.height


def _content(ws, table: str) -> pl.DataFrame:
    df = ws.table(table)
    df = df.drop([c for c in (*LINEAGE, "quarantined_at", "batch_id") if c in df.columns])
    return df.sort(df.columns)


def test_same_window_twice_leaves_identical_tables(acme):
    acme.ingest("synthetic", START, END, progress=False)
    acme.transform(progress=False)
    before = {t: _content(acme, t) for t in ("silver.ad_performance_daily", "silver.campaigns",
                                             "silver.crm_deals", "gold.performance_daily",
                                             "gold.campaign_daily", "gold.crm_attribution_daily")}
    q_before = acme.quarantine().height
    acme.ingest("synthetic", START, END, progress=False)
    acme.transform(progress=False)
    for table, frame in before.items():
        assert _content(acme, table).equals(frame), table
    # each batch keeps its own quarantine rows; the second batch quarantined the same records
    assert acme.quarantine().height == 2 * q_before


def test_restated_days_are_replaced_by_the_latest_extraction(acme):
    first_asof = END - dt.timedelta(days=2)
    acme.ingest("synthetic", START, END, settings={"as_of": first_asof.isoformat()}, progress=False)
    acme.transform(progress=False)
    old = acme.table("silver.ad_performance_daily")
    recent = (END - dt.timedelta(days=4), END)
    acme.ingest("synthetic", *recent, settings={"as_of": END.isoformat()}, progress=False)
    result = acme.transform(progress=False)
    new = acme.table("silver.ad_performance_daily")
    batches = repo.list_batches(acme.stores.db, "acme")
    in_window = pl.col("date").is_between(*recent)
    assert set(new.filter(in_window)["source_batch_id"]) == {batches[1].id}
    assert set(new.filter(~in_window)["source_batch_id"]) == {batches[0].id}
    assert new.filter(~in_window).drop(LINEAGE).sort("ad_id", "date").equals(
        old.filter(~in_window).drop(LINEAGE).sort("ad_id", "date"))
    key = ["platform", "account_id", "ad_id", "date"]
    joined = old.join(new, on=key, suffix="_new").filter(pl.col("date") >= first_asof - dt.timedelta(days=2))
    assert (joined["spend"] != joined["spend_new"]).any(), "provisional days were restated"
    # gold was rebuilt for the recent window only, and agrees with silver
    perf_dates = {d for d in result.dates if recent[0] <= d <= recent[1]}
    assert perf_dates == {recent[0] + dt.timedelta(days=i) for i in range(5)}
    gold = acme.table("gold.performance_daily")
    assert gold["spend_org"].sum() == pytest.approx(float(new["spend_org"].cast(pl.Float64).sum()))


def test_retransforming_an_old_batch_keeps_newer_figures(acme):
    acme.ingest("synthetic", START, END, settings={"as_of": (END - dt.timedelta(days=3)).isoformat()}, progress=False)
    acme.ingest("synthetic", END - dt.timedelta(days=4), END, settings={"as_of": END.isoformat()}, progress=False)
    acme.transform(progress=False)
    expected = _content(acme, "gold.performance_daily")
    result = acme.transform(START, START + dt.timedelta(days=1), progress=False)
    assert result.batches == 2, "the later overlapping batch is replayed after the old one"
    assert _content(acme, "gold.performance_daily").equals(expected)


def test_amounts_are_converted_with_the_rate_of_the_day(stores):
    ws = wb.create_org("globex", "Globex", "EUR", "Europe/Berlin", settings=stores.settings)
    ws.ingest("synthetic", START, END, progress=False)
    ws.transform(progress=False)
    silver = ws.table("silver.ad_performance_daily").with_columns(
        pl.col("spend", "spend_org", "conversion_value", "conversion_value_org").cast(pl.Float64))
    assert silver["currency"].n_unique() > 1 and set(silver["org_currency"]) == {"EUR"}
    rates = ws.table("silver.fx_rates")
    usd = silver.filter(pl.col("currency") == "USD").head(20)
    expected = usd.join(rates.filter(pl.col("base") == "USD", pl.col("quote") == "EUR"),
                        on="date").select("spend", "rate", "spend_org", "conversion_value", "conversion_value_org")
    assert expected.height == usd.height
    for row in expected.iter_rows(named=True):
        assert row["spend_org"] == pytest.approx(row["spend"] * row["rate"], abs=2e-6)
        assert row["conversion_value_org"] == pytest.approx(row["conversion_value"] * row["rate"], abs=2e-6)
    eur = silver.filter(pl.col("currency") == "EUR")
    assert (eur["spend"] == eur["spend_org"]).all() and (eur["fx_rate"] == 1.0).all()


def test_missing_rate_falls_back_to_an_earlier_day_or_quarantines(stores, tmp_path):
    ws = wb.create_org("globex", "Globex", "EUR", "Europe/Berlin", settings=stores.settings)
    csv = tmp_path / "x.csv"
    csv.write_text("date,campaign,spend,impressions,clicks,currency\n"
                   "2023-06-01,A,10,100,1,USD\n2030-01-05,A,10,100,1,USD\n2026-01-01,A,5,100,1,XYZ\n")
    ws.ingest("csv", file=csv, mapping={"campaign_name": "campaign"}, progress=False)
    ws.transform(progress=False)
    silver = ws.table("silver.ad_performance_daily")
    assert silver["date"].to_list() == [dt.date(2030, 1, 5)]
    assert silver["fx_rate_date"][0] < dt.date(2030, 1, 5), "the latest earlier rate was used and says so"
    reasons = ws.quarantine().sort("record_index")["reason"].to_list()
    assert len(reasons) == 2
    assert "no exchange rate" in reasons[0] and "USD" in reasons[0] and "2023-06-01" in reasons[0]
    assert "XYZ" in reasons[1]


def test_fx_file_loaded_by_the_user_replaces_default_rates(stores, tmp_path):
    from workbench.medallion.rates import load_rates_into_lake

    rates = tmp_path / "rates.csv"
    rates.write_text("date,base,quote,rate\n2026-03-02,USD,EUR,0.5\n")
    assert load_rates_into_lake(stores.lake, rates) == 1
    fx_table = stores.lake.read("silver.fx_rates")
    day = fx_table.filter(pl.col("date") == dt.date(2026, 3, 2), pl.col("quote") == "EUR")
    assert day["rate"].to_list() == [0.5]
    assert fx_table.filter(pl.col("date") == dt.date(2026, 3, 3), pl.col("quote") == "EUR").height == 1


def test_duplicate_keys_in_a_batch_keep_the_latest_record(acme, tmp_path):
    csv = tmp_path / "dupes.csv"
    csv.write_text("date,campaign,spend,impressions,clicks\n"
                   "2026-10-01,A,10,100,1\n2026-10-01,B,7,70,1\n2026-10-01,A,12,120,2\n")
    acme.ingest("csv", file=csv, mapping={"campaign_name": "campaign"}, settings={"currency": "USD"},
                progress=False)
    result = acme.transform(progress=False)
    assert (result.rows_in, result.rows_silver, result.rows_quarantined) == (3, 2, 1)
    silver = acme.table("silver.ad_performance_daily").sort("campaign_name")
    assert silver["spend"].cast(pl.Float64).to_list() == [12.0, 7.0], "the later record of A won"
    q = acme.quarantine()
    assert q["check"].to_list() == ["duplicate_key"] and q["record_index"].to_list() == [0]
    assert "record 2 of this batch" in q["reason"][0] and '"10"' in q["payload"][0]
