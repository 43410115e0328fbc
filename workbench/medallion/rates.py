"""Exchange rates in the lake (``silver.fx_rates``): the shipped default and user files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pyiceberg.expressions import AlwaysTrue

from workbench.lake.catalog import Lake
from workbench.lake.schemas import SILVER_FX
from workbench.medallion import fx


def load_rates(lake: Lake) -> pl.DataFrame:
    """The rates in the lake; the shipped default file is loaded the first time."""
    rates = lake.read(SILVER_FX.name)
    if rates.is_empty():
        rates = fx.read_fx_csv(fx.default_fx_path())
        lake.append(SILVER_FX.name, rates)
    return rates


def load_rates_into_lake(lake: Lake, path: str | Path) -> int:
    """Merge a user's rate file into ``silver.fx_rates``: its rows replace rates of the same
    date, base and quote; the rest stay. One commit. Returns the number of rates loaded."""
    new = fx.read_fx_csv(Path(path))
    key = ["date", "base", "quote"]
    existing = lake.read(SILVER_FX.name)
    merged = pl.concat([existing.join(new.select(key), on=key, how="anti"), new.select(existing.columns)],
                       how="vertical_relaxed").sort(key)
    lake.overwrite(SILVER_FX.name, merged, AlwaysTrue())
    return new.height
