"""Exchange rates: rate files, and conversion with fallback, cross rates and missing rates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from workbench.medallion.fx import (
    FX_SCHEMA,
    FxFileError,
    convert,
    default_fx_path,
    missing_rate_reason,
    read_fx_csv,
)

D = dt.date


def rates(*rows: tuple[dt.date, str, str, float]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["date", "base", "quote", "rate"], orient="row")


USD_RATES = rates(
    (D(2024, 1, 1), "USD", "EUR", 0.9), (D(2024, 1, 1), "USD", "GBP", 0.8),
    (D(2024, 1, 2), "USD", "EUR", 0.92), (D(2024, 1, 2), "USD", "GBP", 0.78),
    (D(2024, 1, 5), "USD", "EUR", 0.95),
)


def rows(*pairs: tuple[str | None, dt.date | None]) -> pl.DataFrame:
    return pl.DataFrame({"currency": [c for c, _ in pairs], "date": [d for _, d in pairs],
                         "spend": [100.0] * len(pairs), "value": [10.0] * len(pairs)})


def test_exact_date() -> None:
    out = convert(rows(("EUR", D(2024, 1, 2))), USD_RATES, "USD",
                  {"spend": "spend_org", "value": "value_org"})
    assert out["fx_rate"][0] == pytest.approx(1 / 0.92)
    assert out["spend_org"][0] == pytest.approx(100 / 0.92)
    assert out["value_org"][0] == pytest.approx(10 / 0.92)
    assert out["fx_rate_date"][0] == D(2024, 1, 2)
    assert out.schema["fx_rate"] == pl.Float64 and out.schema["fx_rate_date"] == pl.Date


def test_falls_back_to_the_latest_earlier_rate() -> None:
    out = convert(rows(("EUR", D(2024, 1, 4)), ("GBP", D(2024, 3, 1))), USD_RATES, "USD",
                  {"spend": "spend_org"})
    assert out["fx_rate"].to_list() == pytest.approx([1 / 0.92, 1 / 0.78])
    assert out["fx_rate_date"].to_list() == [D(2024, 1, 2), D(2024, 1, 2)]


def test_cross_rate_through_the_common_base() -> None:
    out = convert(rows(("EUR", D(2024, 1, 1)), ("EUR", D(2024, 1, 5))), USD_RATES, "GBP",
                  {"spend": "spend_org"})
    # 1 EUR = (1 / 0.9) USD = (0.8 / 0.9) GBP
    assert out["fx_rate"][0] == pytest.approx(0.8 / 0.9)
    assert out["spend_org"][0] == pytest.approx(100 * 0.8 / 0.9)
    # on the 5th only EUR is quoted: the cross needs both legs on one date, so the 2nd is used
    assert out["fx_rate"][1] == pytest.approx(0.78 / 0.92)
    assert out["fx_rate_date"][1] == D(2024, 1, 2)


def test_direct_and_inverse_pairs_of_a_file_with_another_base() -> None:
    eur_rates = rates((D(2024, 1, 1), "EUR", "USD", 1.1), (D(2024, 1, 1), "EUR", "SEK", 11.0))
    to_usd = convert(rows(("EUR", D(2024, 1, 1)), ("SEK", D(2024, 1, 1))), eur_rates, "USD", {})
    assert to_usd["fx_rate"].to_list() == pytest.approx([1.1, 1.1 / 11.0])
    to_eur = convert(rows(("USD", D(2024, 1, 1))), eur_rates, "eur", {})
    assert to_eur["fx_rate"].to_list() == pytest.approx([1 / 1.1])


def test_loaded_rates_win_over_the_shipped_ones() -> None:
    shipped = rates((D(2024, 1, 1), "USD", "EUR", 0.9), (D(2024, 1, 1), "USD", "GBP", 0.8))
    loaded = rates((D(2024, 1, 1), "EUR", "GBP", 0.85), (D(2024, 1, 1), "EUR", "USD", 1.2))
    both = pl.concat([shipped.with_columns(origin=pl.lit("default")),
                      loaded.with_columns(origin=pl.lit("ecb.csv"))])
    out = convert(rows(("GBP", D(2024, 1, 1)), ("EUR", D(2024, 1, 1))), both, "USD", {})
    # GBP -> USD through the loaded EUR rates, not the shipped inverse USD -> GBP pair
    assert out["fx_rate"].to_list() == pytest.approx([1.2 / 0.85, 1.2])


def test_identity_needs_no_rate() -> None:
    out = convert(rows(("USD", D(2020, 1, 1)), ("usd", D(2030, 1, 1))), USD_RATES, "USD",
                  {"spend": "spend_org"})
    assert out["fx_rate"].to_list() == [1.0, 1.0]
    assert out["fx_rate_date"].to_list() == [D(2020, 1, 1), D(2030, 1, 1)]
    assert out["spend_org"].to_list() == [100.0, 100.0]


def test_missing_rate_is_null_with_a_reason() -> None:
    df = rows(("EUR", D(2023, 12, 30)), ("XYZ", D(2024, 1, 2)), (None, D(2024, 1, 2)),
              ("EUR", None), ("EUR", D(2024, 1, 2)))
    out = convert(df, USD_RATES, "USD", {"spend": "spend_org"})
    assert out["fx_rate"].null_count() == 4 and out["spend_org"].null_count() == 4
    assert out["fx_rate_date"].null_count() == 4
    missing = out.filter(pl.col("fx_rate").is_null()).select(missing_rate_reason("USD"))
    reasons = missing.to_series().to_list()
    assert reasons[0] == ("no exchange rate from EUR to USD on or before 2023-12-30; "
                          "load rates with `workbench fx load FILE`")
    assert reasons[1].startswith("no exchange rate from XYZ to USD on or before 2024-01-02;")
    assert reasons[2].startswith("no exchange rate from (no currency) to USD")
    assert "on or before (no date)" in reasons[3]


def test_row_order_and_other_columns_are_kept() -> None:
    df = rows(*[(c, D(2024, 1, d)) for d in (5, 1, 3) for c in ("GBP", "EUR", "USD")])
    df = df.with_columns(pl.int_range(pl.len()).alias("n"), pl.lit(0.5).alias("fx_rate"))
    out = convert(df, USD_RATES, "USD", {"spend": "spend_org"})
    assert out["n"].to_list() == list(range(9))
    assert out.columns == [*df.columns[:-1], "fx_rate", "fx_rate_date", "spend_org"]
    assert out["fx_rate"][2] == 1.0


def test_empty_frame() -> None:
    out = convert(rows(), USD_RATES, "USD", {"spend": "spend_org"})
    assert out.height == 0 and {"fx_rate", "fx_rate_date", "spend_org"} <= set(out.columns)


def test_many_rows_are_converted_by_position() -> None:
    n = 200_000
    days = pl.date_range(D(2024, 1, 1), D(2024, 1, 9), eager=True)
    df = pl.DataFrame({"currency": ["EUR", "GBP", "USD", "JPY"] * (n // 4),
                       "date": days.gather(pl.int_range(n, eager=True) % days.len()),
                       "spend": [1.0] * n})
    out = convert(df, USD_RATES, "USD", {"spend": "spend_org"})
    expected = df.join(out.unique(["currency", "date"]).select("currency", "date", "fx_rate"),
                       on=["currency", "date"], how="left")
    assert out["fx_rate"].equals(expected["fx_rate"], check_names=False)
    assert out.filter(pl.col("currency") == "JPY")["fx_rate"].null_count() == n // 4


def write(tmp_path: Path, text: str, name: str = "rates.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_file_with_another_base(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Base,Quote,Rate,source\n2024-01-02,eur,usd,1.1,ecb\n"
                           "2024-01-01,EUR,USD, 1.09 ,ecb\n")
    df = read_fx_csv(path)
    assert df.schema == pl.Schema(FX_SCHEMA)
    assert df.rows() == [(D(2024, 1, 1), "EUR", "USD", 1.09, "rates.csv"),
                         (D(2024, 1, 2), "EUR", "USD", 1.1, "rates.csv")]


@pytest.mark.parametrize(("text", "message"), [
    ("date,base,rate\n2024-01-01,USD,1\n", "missing column(s) quote; expected date, base, quote"),
    ("date,base,quote,rate\n2024-01-01,USD,EUR,0.9\n2024-13-01,USD,EUR,0.9\n",
     "line 3: date '2024-13-01' is not a date as YYYY-MM-DD"),
    ("date,base,quote,rate\n2024-01-01,USD,EUR,abc\n", "line 2: rate 'abc' is not a number"),
    ("date,base,quote,rate\n\n2024-01-01,USD,EUR,abc\n\n", "line 3: rate 'abc' is not a number"),
    ("date,base,quote,rate\n2024-01-01,USD,EUR,\n", "line 2: rate '' is not a number"),
    ("date,base,quote,rate\n2024-01-01,USD,EUR,0\n", "line 2: rate 0 must be a positive number"),
    ("date,base,quote,rate\n2024-01-01,USD,EUR,-1\n", "line 2: rate -1 must be a positive number"),
    ("date,base,quote,rate\n2024-01-01,US,EUR,1\n", "line 2: base 'US' is not a 3-letter currency"),
    ("date,base,quote,rate\n2024-01-01,USD,EUR,0.9\n2024-01-02,USD,EUR,1\n2024-01-01,usd,EUR,1\n",
     "2024-01-01 USD->EUR appears more than once (lines 2, 4)"),
    ("", "the file is empty"),
    ("date,base,quote,rate\n", "has a header but no rates"),
])
def test_bad_rate_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FxFileError) as info:
        read_fx_csv(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_many_bad_lines_are_summarised(tmp_path: Path) -> None:
    lines = "".join(f"2024-01-0{d},USD,EUR,x\n" for d in range(1, 9))
    path = write(tmp_path, "date,base,quote,rate\n" + lines)
    with pytest.raises(FxFileError) as info:
        read_fx_csv(path)
    assert len(info.value.problems) == 8
    assert "and 3 more" in str(info.value)


def test_missing_rate_file(tmp_path: Path) -> None:
    with pytest.raises(FxFileError, match="does not exist"):
        read_fx_csv(tmp_path / "nope.csv")


def test_shipped_file_covers_2024_to_2027_for_every_currency() -> None:
    df = read_fx_csv(default_fx_path())
    assert set(df["origin"]) == {"default"}
    assert set(df["base"]) == {"USD"}
    coverage = df.group_by("quote").agg(
        first=pl.col("date").min(), last=pl.col("date").max(), n=pl.len())
    assert set(coverage["quote"]) == {
        "USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "BRL", "INR"}
    assert set(coverage["first"]) == {D(2024, 1, 1)}
    assert set(coverage["last"]) == {D(2027, 12, 31)}
    assert set(coverage["n"]) == {(D(2027, 12, 31) - D(2024, 1, 1)).days + 1}
    assert df.filter(pl.col("quote") == "USD")["rate"].unique().to_list() == [1.0]
    eur = convert(rows(("EUR", D(2026, 6, 1))), df, "USD", {"spend": "spend_org"})
    assert 0.9 < eur["fx_rate"][0] < 1.4
