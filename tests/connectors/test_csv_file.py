"""The CSV connector: file checks with actionable messages, reading, windows and pages."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from connectors.base import ConnectionConfig, Window
from connectors.csv_file import PAGE_SIZE, CsvConnector, CsvMappingError
from workbench.medallion.parsers.base import PERFORMANCE_SCHEMA, ParseContext
from workbench.medallion.parsers.csv_rows import parse_performance

TODAY = dt.date(2024, 6, 1)
AUTO = "Day,Campaign Name,Cost,Impr.,Clicks,Currency\n"


def write(tmp_path: Path, text: str, name: str = "export.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def connector(path: Path, **settings: Any) -> CsvConnector:
    return CsvConnector(ConnectionConfig("org1", "conn1", settings={"path": str(path), **settings}))


def records(conn: CsvConnector, window: Window | None = None) -> list[dict[str, Any]]:
    window = window or conn.resolve_window(None, TODAY)
    return [r for page in conn.read(window) for r in page.records]


def error(conn_or_path: Path, **settings: Any) -> CsvMappingError:
    with pytest.raises(CsvMappingError) as info:
        conn = connector(conn_or_path, **settings)
        conn.resolve_window(None, TODAY)
    return info.value


def test_happy_path_with_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "Report day,Media cost,Views served,Taps,Initiative,Notes\n"
                           "2024-03-02,\"1,234.50\",1000,10,Brand,first\n"
                           "2024-03-01,5,200,2,Brand,\n")
    conn = connector(path, currency="EUR", mapping={
        "date": "Report day", "spend": "Media cost", "impressions": "Views served",
        "clicks": "Taps", "campaign_name": "Initiative"})
    window = conn.resolve_window(None, TODAY)
    assert window == Window(dt.date(2024, 3, 1), dt.date(2024, 3, 2))
    pages = list(conn.read(window))
    assert [p.stream for p in pages] == ["csv.performance_daily"]
    assert pages[0].records[0] == {
        "Report day": "2024-03-02", "Media cost": "1,234.50", "Views served": "1000", "Taps": "10",
        "Initiative": "Brand", "Notes": "first", "__line": 2}
    state = conn.next_state(window)
    assert state["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (state["data_rows"], state["landed_rows"], state["skipped_rows"]) == (2, 2, 0)
    assert state["last_window_end"] == "2024-03-02"


def test_headers_match_canonical_names_and_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "2024-01-05,Brand,10,100,1,USD\n")
    conn = connector(path)
    assert records(conn)[0]["Cost"] == "10"
    assert conn._check().columns == {
        "date": "Day", "spend": "Cost", "impressions": "Impr.", "clicks": "Clicks",
        "campaign_name": "Campaign Name", "currency": "Currency"}


def test_missing_file(tmp_path: Path) -> None:
    err = error(tmp_path / "nope.csv")
    assert "nope.csv" in str(err) and "does not exist" in str(err)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert "the file is empty" in str(error(path, currency="EUR"))


def test_header_without_rows(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO)
    assert "no data rows" in str(error(path))
    assert records(connector(path), Window(TODAY, TODAY)) == []


def test_required_column_not_found_names_headers_and_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "Day,Cost,Impr.,Clcks,Currency\n2024-01-01,1,1,1,EUR\n")
    err = error(path)
    message = str(err)
    assert "required column 'clicks' not found" in message
    assert "closest: 'Clcks'" in message
    assert "headers found: 'Day', 'Cost', 'Impr.', 'Clcks', 'Currency'" in message
    assert "mapping: {clicks: '<header>'}" in message
    assert len(err.problems) == 1


def test_mapping_to_a_column_that_does_not_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "Day,Cost,Impr.,Clicks (all),Currency\n2024-01-01,1,1,1,EUR\n")
    message = str(error(path, mapping={"clicks": "Clicks all!"}))
    assert "required column 'clicks' is mapped to 'Clicks all!'" in message
    assert "closest: 'Clicks (all)'" in message
    assert "headers found:" in message


def test_mapping_matches_headers_ignoring_case_and_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, "Day,Total Spend,Impr.,Clicks,Currency\n2024-01-01,1,1,1,EUR\n")
    conn = connector(path, mapping={"spend": "total_spend"})
    assert conn._check().columns["spend"] == "Total Spend"


def test_unknown_canonical_name_in_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "2024-01-05,Brand,10,100,1,USD\n")
    message = str(error(path, mapping={"impresions": "Impr."}))
    assert "the mapping names 'impresions', which is not a canonical column" in message
    assert "closest: 'impressions'" in message


def test_no_currency_column_and_no_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "Day,Cost,Impr.,Clicks\n2024-01-01,1,1,1\n")
    message = str(error(path))
    assert "no currency column" in message and "`currency` setting" in message
    assert records(connector(path, currency="eur"))[0]["Cost"] == "1"


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "Day,Impr.\n2024-01-01,1\n")
    err = error(path)
    assert len(err.problems) == 3  # spend, clicks, currency
    assert str(err).count("\n- ") == 3


def test_undecodable_file_names_the_encoding_setting(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "2024-01-05,Café,10,100,1,EUR\n", encoding="latin-1")
    assert "not valid utf-8-sig" in str(error(path)) and "`encoding`" in str(error(path))
    assert records(connector(path, encoding="latin-1"))[0]["Campaign Name"] == "Café"


def test_unparseable_dates_everywhere(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "05/01/2024,Brand,10,100,1,USD\n")
    message = str(error(path))
    assert "no row has a readable date in column 'Day'" in message
    assert "'05/01/2024'" in message and "date_format" in message
    conn = connector(path, date_format="%d/%m/%Y")
    assert conn.resolve_window(None, TODAY) == Window(dt.date(2024, 1, 5), dt.date(2024, 1, 5))


def test_semicolon_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "Day;Cost;Impr.;Clicks;Currency\n2024-01-05;\"1,5\";100;1;EUR\n")
    assert records(connector(path))[0] == {
        "Day": "2024-01-05", "Cost": "1,5", "Impr.": "100", "Clicks": "1", "Currency": "EUR",
        "__line": 2}


def test_tab_delimiter_and_utf16_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "Day\tCost\tImpr.\tClicks\tCurrency\n2024-01-05\t1\t100\t1\tEUR\n",
                 encoding="utf-16")
    assert records(connector(path))[0]["Day"] == "2024-01-05"


def test_byte_order_mark_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "2024-01-05,Brand,10,100,1,USD\n", encoding="utf-8-sig")
    assert next(iter(records(connector(path))[0])) == "Day"


def test_explicit_window_skips_rows_outside_but_lands_unreadable_dates(tmp_path: Path) -> None:
    rows = [f"2024-01-{d:02d},Brand,1,1,1,USD\n" for d in range(1, 11)] + ["Total,,10,10,10,USD\n"]
    path = write(tmp_path, AUTO + "".join(rows))
    conn = connector(path)
    window = Window(dt.date(2024, 1, 3), dt.date(2024, 1, 4))
    got = records(conn, window)
    assert [r["Day"] for r in got] == ["2024-01-03", "2024-01-04", "Total"]
    assert conn.next_state(window)["skipped_rows"] == 8
    assert len(records(conn)) == 11  # the default window is the whole file


def test_pages_hold_at_most_5000_records(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "2024-01-05,Brand,1,1,1,USD\n" * 12_001)
    pages = list(connector(path).read(Window(dt.date(2024, 1, 1), dt.date(2024, 1, 31))))
    assert [len(p.records) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 2_001]


def test_line_numbers_extra_cells_and_blank_rows(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "2024-01-05,\"Two\nlines\",1,1,1,USD\n"
                                  "\n"
                                  ",,,,,\n"
                                  "2024-01-06,Brand,1,1,1,USD,oops\n"
                                  "2024-01-07,Brand,1,1,1,USD,,\n")
    got = records(connector(path))
    assert [r["__line"] for r in got] == [2, 6, 7]
    assert got[1]["__extra"] == ["oops"]
    assert "__extra" not in got[2]


def test_duplicate_header_used_for_a_column(tmp_path: Path) -> None:
    path = write(tmp_path, "Day,Cost,Cost,Impr.,Clicks,Currency\n2024-01-05,1,2,1,1,USD\n")
    assert "several columns named 'Cost'" in str(error(path))


def test_missing_path_setting() -> None:
    with pytest.raises(CsvMappingError, match="`path` setting"):
        CsvConnector(ConnectionConfig("org1", "conn1", settings={}))


def test_landed_records_parse_into_canonical_rows(tmp_path: Path) -> None:
    path = write(tmp_path, AUTO + "2024-01-05,Brand,\"$1,234.50\",\"10,000\",12,usd\n"
                                  "2024-01-06,Brand,abc,1,1,USD\n")
    settings = {"path": str(path)}
    conn = CsvConnector(ConnectionConfig("org1", "conn1", settings=settings))
    recs = records(conn)
    n = len(recs)
    raw = pl.DataFrame({
        "org_id": ["org1"] * n, "source": ["csv"] * n, "stream": ["csv.performance_daily"] * n,
        "connection_id": ["conn1"] * n, "batch_id": ["b1"] * n,
        "extracted_at": [dt.datetime(2024, 6, 1, tzinfo=dt.UTC)] * n,
        "window_start": [dt.date(2024, 1, 5)] * n, "window_end": [dt.date(2024, 1, 6)] * n,
        "record_index": list(range(n)), "payload": [json.dumps(r) for r in recs],
    })
    result = parse_performance(raw, ParseContext("org1", settings))
    assert result.good.schema == pl.Schema(PERFORMANCE_SCHEMA)
    row = result.good.row(0, named=True)
    assert (row["spend"], row["impressions"], row["currency"]) == (1234.5, 10_000, "USD")
    assert result.bad["reason"].to_list() == [
        "line 3: column 'Cost' (spend) is not a number: 'abc'"]
