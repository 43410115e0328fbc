"""Bronze-shaped frames for parser tests, built from connector pages or plain records."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from typing import Any

import polars as pl

from connectors.base import Page
from workbench.medallion.parsers.base import BRONZE_COLUMNS

EXTRACTED_AT = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)

BRONZE_SCHEMA: dict[str, pl.DataType] = {
    "org_id": pl.String(), "source": pl.String(), "stream": pl.String(),
    "connection_id": pl.String(), "batch_id": pl.String(),
    "extracted_at": pl.Datetime("us", "UTC"), "window_start": pl.Date(),
    "window_end": pl.Date(), "record_index": pl.Int64(), "payload": pl.String(),
}


def bronze_frame(records: Iterable[Any], stream: str, *, org_id: str = "org-test",
                 window: tuple[dt.date, dt.date] = (dt.date(2026, 11, 1), dt.date(2026, 11, 24)),
                 source: str = "synthetic") -> pl.DataFrame:
    """Bronze rows for ``records`` of one stream: dicts as JSON text, strings as they are."""
    payloads = [r if isinstance(r, str) or r is None else json.dumps(r) for r in records]
    n = len(payloads)
    frame = pl.DataFrame({
        "org_id": [org_id] * n, "source": [source] * n, "stream": [stream] * n,
        "connection_id": ["conn-1"] * n, "batch_id": [str(uuid.uuid4())] * n,
        "extracted_at": [EXTRACTED_AT] * n, "window_start": [window[0]] * n,
        "window_end": [window[1]] * n, "record_index": list(range(n)), "payload": payloads,
    }, schema=BRONZE_SCHEMA)
    assert tuple(frame.columns) == BRONZE_COLUMNS
    return frame


def pages_to_bronze(pages: Iterable[Page], **kwargs: Any) -> dict[str, pl.DataFrame]:
    """One bronze frame per stream from connector pages."""
    by_stream: dict[str, list[Any]] = {}
    for page in pages:
        by_stream.setdefault(page.stream, []).extend(page.records)
    return {stream: bronze_frame(records, stream, **kwargs)
            for stream, records in by_stream.items()}
