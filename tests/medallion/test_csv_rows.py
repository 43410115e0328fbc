"""The csv.performance_daily parser: header matching, numbers, dates, defaults, quarantine."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl
import pytest

from workbench.medallion.parsers.base import PERFORMANCE_SCHEMA, QUARANTINE_SCHEMA, ParseContext
from workbench.medallion.parsers.csv_rows import (
    column_problems,
    parse_date_text,
    parse_performance,
    resolve_columns,
)

HEADERS = ("Day", "Campaign", "Cost", "Impr.", "Clicks")


def bronze(records: list[Any], batch_id: str = "b1") -> pl.DataFrame:
    """Bronze rows of csv.performance_daily holding ``records`` (dicts, or text kept as is)."""
    n = len(records)
    return pl.DataFrame({
        "org_id": ["org1"] * n, "source": ["csv"] * n, "stream": ["csv.performance_daily"] * n,
        "connection_id": ["conn1"] * n, "batch_id": [batch_id] * n,
        "extracted_at": [dt.datetime(2024, 2, 1, tzinfo=dt.UTC)] * n,
        "window_start": [dt.date(2024, 1, 1)] * n, "window_end": [dt.date(2024, 1, 31)] * n,
        "record_index": list(range(n)),
        "payload": [r if isinstance(r, str) else json.dumps(r) for r in records],
    }, schema_overrides={"record_index": pl.Int64, "payload": pl.String})


def row(day: str = "2024-01-05", cost: str = "1", impr: str = "10", clicks: str = "1",
        **more: str) -> dict[str, str]:
    return dict(zip(HEADERS, (day, "Brand", cost, impr, clicks), strict=True), **more)


def parse(records: list[Any], **settings: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    raw = bronze(records)
    result = parse_performance(raw, ParseContext("org1", {"currency": "EUR", **settings}))
    assert result.good.height + result.bad.height == raw.height
    assert result.good.schema == pl.Schema(PERFORMANCE_SCHEMA)
    assert result.bad.schema == pl.Schema(QUARANTINE_SCHEMA)
    return result.good, result.bad


@pytest.mark.parametrize(("text", "value"), [
    ("1234.5", 1234.5), ("$1,234.50", 1234.5), ("1,234.50 USD", 1234.5), ("USD 1,234.50", 1234.5),
    ("€ 12", 12.0), ("-$3.25", -3.25), ("(12.50)", -12.5), (" 7 ", 7.0), ("1e3", 1000.0),
    ("", 0.0), ("--", 0.0),
])
def test_numbers_with_separators_and_symbols(text: str, value: float) -> None:
    good, bad = parse([row(cost=text, impr="1,000")])
    assert bad.is_empty()
    assert good["spend"].to_list() == [value]
    assert good["impressions"].to_list() == [1000]


def test_decimal_comma_setting() -> None:
    good, _ = parse([row(cost="1.234,50 €")], decimal=",")
    assert good["spend"].to_list() == [1234.5]


@pytest.mark.parametrize(("cost", "impr", "reason"), [
    ("abc", "1", "line 2: column 'Cost' (spend) is not a number: 'abc'"),
    ("NaN", "1", "line 2: column 'Cost' (spend) is not a number: 'NaN'"),
    ("1", "2.5", "line 2: column 'Impr.' (impressions) is not a whole number: '2.5'"),
])
def test_unreadable_numbers_are_quarantined(cost: str, impr: str, reason: str) -> None:
    good, bad = parse([row(cost=cost, impr=impr)])
    assert good.is_empty()
    assert bad.row(0, named=True) | {"payload": None} == {
        "org_id": "org1", "source": "csv", "stream": "csv.performance_daily", "batch_id": "b1",
        "record_index": 0, "payload": None, "reason": reason, "check": "invalid_number"}


def test_bad_date_is_quarantined_with_line_number() -> None:
    records = [row(), row(day="05/01/2024", __line=7), row(day="")]  # type: ignore[arg-type]
    good, bad = parse(records)
    assert good["date"].to_list() == [dt.date(2024, 1, 5)]
    reasons = bad.sort("record_index")["reason"].to_list()
    assert reasons[0].startswith("line 7: column 'Day' (date) is not a date: '05/01/2024'")
    assert "date_format" in reasons[0]
    assert reasons[1] == "line 4: column 'Day' (date) is empty"  # record_index + 2
    assert set(bad["check"]) == {"invalid_date"}


def test_explicit_date_format() -> None:
    good, bad = parse([row(day="05/01/2024"), row(day="2024-01-05")], date_format="%d/%m/%Y")
    assert good["date"].to_list() == [dt.date(2024, 1, 5)]
    assert "expected format '%d/%m/%Y'" in bad["reason"][0]


def test_every_row_is_accounted_for() -> None:
    records: list[Any] = [row(), row(cost="x"), "{not json", "[1, 2]", row(day="2024/01/06"),
                          {**row(), "__extra": ["spill"]}, {"Day": "2024-01-07", "Campaign": "B"}]
    good, bad = parse(records)
    assert good.height == 2 and bad.height == 5
    assert sorted(good["record_index"].to_list() + bad["record_index"].to_list()) == list(range(7))
    checks = dict(zip(bad["record_index"], bad["check"], strict=True))
    assert checks == {1: "invalid_number", 2: "invalid_json", 3: "invalid_json", 5: "csv_row",
                      6: "csv_row"}
    short = bad.filter(pl.col("record_index") == 6)["reason"][0]
    assert short == ("line 8 has fewer cells than the header: no value for column 'Cost' (spend), "
                     "column 'Impr.' (impressions), column 'Clicks' (clicks)")


def test_canonical_values_and_defaults() -> None:
    good, _ = parse([row()], platform="LinkedIn")
    assert good.row(0, named=True) == {
        "org_id": "org1", "platform": "linkedin", "date": dt.date(2024, 1, 5),
        "account_id": "csv", "account_name": None, "campaign_id": "Brand", "campaign_name": "Brand",
        "ad_group_id": "", "ad_group_name": None, "ad_id": "", "ad_name": None, "currency": "EUR",
        "spend": 1.0, "impressions": 10, "clicks": 1, "conversions": None,
        "conversion_value": None, "video_views": None, "reach": None, "connector": "csv",
        "connection_id": "conn1", "source_batch_id": "b1",
        "extracted_at": dt.datetime(2024, 2, 1, tzinfo=dt.UTC), "record_index": 0, "breakdown": None}


def test_columns_of_the_file_win_over_settings() -> None:
    record = row(**{"Currency": "gbp", "Platform": "Meta", "Account ID": "42",
                    "Ad group": "Set A", "Conversions": "2.5", "Conv. value": "$10"})
    good, _ = parse([record, {**record, "Currency": ""}])
    first = good.row(0, named=True)
    assert (first["currency"], first["platform"], first["account_id"]) == ("GBP", "meta", "42")
    assert (first["ad_group_id"], first["ad_group_name"]) == ("Set A", "Set A")
    assert (first["conversions"], first["conversion_value"]) == (2.5, 10.0)
    assert good["currency"][1] == "EUR"  # a blank currency cell falls back to the setting


def test_invalid_currency_cell() -> None:
    good, bad = parse([row(Currency="US Dollar"), row(Currency="")], currency=None)
    assert good.is_empty()
    reasons = bad.sort("record_index")["reason"].to_list()
    assert reasons == [
        "line 2: column 'Currency' (currency) is not a 3-letter ISO code: 'US Dollar'",
        "line 3: column 'Currency' (currency) is empty and the connection has no currency setting"]


def test_unmappable_batch_is_quarantined_whole() -> None:
    good, bad = parse([{"Day": "2024-01-05", "Cost": "1"}] * 3)
    assert good.is_empty() and bad.height == 3
    assert set(bad["check"]) == {"csv_mapping"}
    assert "required column 'impressions' not found" in bad["reason"][0]


def test_batches_with_different_headers() -> None:
    raw = pl.concat([bronze([row()], "b1"),
                     bronze([{"Date": "2024-01-06", "Spend": "2", "Impressions": "3",
                              "Clicks": "0"}], "b2")])
    result = parse_performance(raw, ParseContext("org1", {"currency": "EUR"}))
    assert result.good["spend"].to_list() == [1.0, 2.0]
    assert result.good["source_batch_id"].to_list() == ["b1", "b2"]


def test_empty_input() -> None:
    result = parse_performance(bronze([]), ParseContext("org1", {"currency": "EUR"}))
    assert result.good.is_empty() and result.bad.is_empty()
    assert result.good.schema == pl.Schema(PERFORMANCE_SCHEMA)


def test_resolve_columns_mapping_first_then_names_then_aliases() -> None:
    headers = ["Date", "Day", "Spend", "Cost", "Impressions", "Clicks", "Campaign name", "Ad"]
    assert resolve_columns(headers, {"spend": "cost"}) == {
        "spend": "Cost", "date": "Date", "impressions": "Impressions", "clicks": "Clicks",
        "campaign_name": "Campaign name", "ad_name": "Ad"}
    assert resolve_columns(["Amount spent (EUR)", "Reporting starts"]) == {
        "spend": "Amount spent (EUR)", "date": "Reporting starts"}


def test_column_problems_of_settings() -> None:
    headers = ["Day", "Cost", "Impr.", "Clicks"]
    assert column_problems(headers, {"currency": "EUR"}) == []
    problems = column_problems(headers, {"currency": "Euro", "decimal": ";"})
    assert problems == ["setting currency 'Euro' is not a 3-letter ISO code such as EUR",
                        "setting decimal ';' must be '.' or ','"]


def test_parse_date_text_matches_the_column_rules() -> None:
    assert parse_date_text("2024-01-05") == dt.date(2024, 1, 5)
    assert parse_date_text(" 2024/01/05 00:00:00") == dt.date(2024, 1, 5)
    assert parse_date_text("05/01/2024") is None
    assert parse_date_text("05/01/2024", "%d/%m/%Y") == dt.date(2024, 1, 5)
