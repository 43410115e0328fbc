import datetime as dt
import multiprocessing as mp

import polars as pl
import pytest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import EqualTo

from workbench.errors import NotFoundError, TransientError
from workbench.lake.catalog import Lake
from workbench.lake.schemas import TABLES
from workbench.settings import load_settings


def _rates(quote: str, n: int = 3) -> pl.DataFrame:
    return pl.DataFrame({"date": [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(n)],
                         "base": ["USD"] * n, "quote": [quote] * n, "rate": [1.5] * n,
                         "origin": ["test"] * n})


def test_tables_created_idempotently_with_contract_partitioning(settings):
    lake = Lake(settings)
    lake.ensure_tables()
    lake.ensure_tables()
    assert {".".join(t) for ns in ("bronze", "silver", "gold")
            for t in lake.catalog.list_tables(ns)} == set(TABLES)
    bronze = lake.table("bronze.raw_records")
    assert [f.name for f in bronze.spec().fields] == ["org_id", "source", "extracted_at_day"]
    gold = lake.table("gold.performance_daily")
    assert [f.name for f in gold.spec().fields] == ["org_id", "date_month"]
    assert [gold.schema().find_column_name(f.source_id) for f in gold.sort_order().fields] == ["org_id", "date"]
    assert str(lake.table("silver.ad_performance_daily").schema().find_field("spend").field_type) == "decimal(18, 6)"


def test_unknown_table_is_a_clear_error(settings):
    lake = Lake(settings)
    lake.ensure_tables()
    with pytest.raises(NotFoundError, match="unknown lake table 'gold.nope'"):
        lake.table("gold.nope")


def test_filtered_overwrite_replaces_only_matching_rows(settings):
    lake = Lake(settings)
    lake.ensure_tables()
    lake.append("silver.fx_rates", pl.concat([_rates("EUR"), _rates("GBP")]))
    lake.overwrite("silver.fx_rates", _rates("EUR", 1).with_columns(pl.lit(2.0).alias("rate")),
                   EqualTo("quote", "EUR"))
    df = lake.read("silver.fx_rates").sort("quote", "date")
    assert df.filter(pl.col("quote") == "EUR")["rate"].to_list() == [2.0]
    assert df.filter(pl.col("quote") == "GBP").height == 3


def test_lost_commit_races_are_retried(settings, monkeypatch):
    lake = Lake(settings)
    lake.ensure_tables()
    calls = {"n": 0}
    real_append = type(lake.table("silver.fx_rates")).append

    def flaky(self, df, *a, **kw):
        calls["n"] += 1
        if calls["n"] < 3:
            raise CommitFailedException("another writer won")
        return real_append(self, df, *a, **kw)

    monkeypatch.setattr(type(lake.table("silver.fx_rates")), "append", flaky)
    lake.append("silver.fx_rates", _rates("EUR"))
    assert calls["n"] == 3
    assert lake.read("silver.fx_rates").height == 3


def test_exhausted_retries_leave_nothing_written(tmp_path, monkeypatch):
    settings = load_settings(home=tmp_path, commit_retries=2)
    lake = Lake(settings)
    lake.ensure_tables()

    def always_lose(self, df, *a, **kw):
        raise CommitFailedException("another writer won")

    monkeypatch.setattr(type(lake.table("silver.fx_rates")), "append", always_lose)
    with pytest.raises(TransientError, match="lost 2 concurrent commit races.*nothing was written"):
        lake.append("silver.fx_rates", _rates("EUR"))
    monkeypatch.undo()
    assert lake.read("silver.fx_rates").height == 0


def _append_many(home: str, quote: str, n: int) -> None:
    lake = Lake(load_settings(home=home, commit_retries=30))
    for _ in range(n):
        lake.append("silver.fx_rates", _rates(quote, 1))


def test_concurrent_appends_from_processes_all_land(tmp_path):
    home = str(tmp_path / "h")
    lake = Lake(load_settings(home=home))
    lake.ensure_tables()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(home, q, 6)) for q in ("EUR", "GBP", "JPY")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    counts = lake.read("silver.fx_rates").group_by("quote").len().sort("quote")
    assert counts["len"].to_list() == [6, 6, 6]


def test_a_lake_of_an_earlier_release_gains_new_columns_and_keeps_its_rows(settings):
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    lake = Lake(settings)
    lake.ensure_tables()
    name = "silver.ad_performance_daily"
    with lake.table(name).update_schema() as update:  # as the table was before "breakdown"
        update.delete_column("breakdown")
    old = lake.table(name, refresh=True)
    row = {f.name: None for f in old.schema().fields} | {
        "org_id": "acme", "platform": "meta", "date": dt.date(2026, 11, 1), "ad_id": "a1", "impressions": 5}
    old.append(pl.DataFrame([row]).to_arrow().cast(schema_to_pyarrow(old.schema(), include_field_ids=False)))

    upgraded = Lake(load_settings(home=settings.home, progress=False))
    upgraded.ensure_tables()
    assert "breakdown" in [f.name for f in upgraded.table(name).schema().fields]
    new = {**row, "ad_id": "a2", "breakdown": "publisher_platform=instagram"}
    upgraded.append(name, upgraded.to_arrow(name, pl.DataFrame([new])))
    df = upgraded.read(name).sort("ad_id")
    assert df.select("ad_id", "impressions", "breakdown").rows() == [
        ("a1", 5, None), ("a2", 5, "publisher_platform=instagram")]
