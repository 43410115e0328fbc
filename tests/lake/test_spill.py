import datetime as dt

import pyarrow as pa
import pytest

from workbench.lake.catalog import Lake
from workbench.lake.filters import all_of, between, eq
from workbench.lake.spill import Spill


def test_spill_groups_parts_and_cleans_up(tmp_path):
    with Spill(tmp_path, "t") as spill:
        for i in range(5):
            spill.add(pa.table({"x": list(range(i * 10, i * 10 + 10))}))
        spill.add(pa.table({"x": pa.array([], pa.int64())}))
        assert spill.rows == 50 and len(spill.files) == 5
        parts = list(spill.parts(min_rows=20))
        assert [p.num_rows for p in parts] == [20, 20, 10]
        evens = list(spill.parts(lambda t: t.filter(pa.compute.equal(pa.compute.bit_wise_and(t["x"], 1), 0))))
        assert sum(p.num_rows for p in evens) == 25
        folder = spill.path
    assert not folder.exists()


def test_replace_is_one_commit_and_iter_batches_filters(settings):
    lake = Lake(settings)
    lake.ensure_tables()
    rates = lambda quote, day, n: pa.table({
        "date": [dt.date(2026, 1, day)] * n, "base": ["USD"] * n, "quote": [quote] * n,
        "rate": [1.0] * n, "origin": ["t"] * n}).cast(lake.table("silver.fx_rates").schema().as_arrow())
    lake.append("silver.fx_rates", rates("EUR", 1, 3))
    commits_before = len(lake.table("silver.fx_rates", refresh=True).metadata.metadata_log)
    n = lake.replace("silver.fx_rates", eq("quote", "EUR"), lambda: iter([rates("EUR", 2, 2), rates("GBP", 2, 4)]))
    assert n == 6
    table = lake.table("silver.fx_rates", refresh=True)
    assert len(table.metadata.metadata_log) == commits_before + 1, "delete and appends in one commit"
    got = pa.Table.from_batches(list(lake.iter_batches(
        "silver.fx_rates", all_of(eq("quote", "EUR"), between("date", dt.date(2026, 1, 1), dt.date(2026, 1, 31))))))
    assert got.num_rows == 2 and set(got["date"].to_pylist()) == {dt.date(2026, 1, 2)}


def test_replace_rolls_back_when_a_part_fails(settings):
    lake = Lake(settings)
    lake.ensure_tables()
    schema = lake.table("silver.fx_rates").schema().as_arrow()
    good = pa.table({"date": [dt.date(2026, 1, 1)], "base": ["USD"], "quote": ["EUR"], "rate": [1.0],
                     "origin": ["t"]}).cast(schema)
    lake.append("silver.fx_rates", good)

    def parts():
        yield good
        raise RuntimeError("disk full while reading the spill")

    with pytest.raises(RuntimeError):
        lake.replace("silver.fx_rates", eq("quote", "EUR"), parts)
    assert lake.read("silver.fx_rates").height == 1, "nothing was deleted or added"
