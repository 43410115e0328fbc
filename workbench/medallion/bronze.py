"""Bronze: land raw records exactly as received, with lineage, in one commit per batch."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable

import pyarrow as pa

from connectors.base import Page, Window
from workbench.lake.catalog import Lake
from workbench.lake.schemas import BRONZE_RAW


def _text(record: object) -> str:
    # A record that arrived as text (a malformed response body, say) is kept verbatim.
    return record if isinstance(record, str) else json.dumps(record, separators=(",", ":"), default=str)


def land(lake: Lake, pages: Iterable[Page], *, org_id: str, source: str, connection_id: str,
         batch_id: str, window: Window, extracted_at: dt.datetime,
         on_page: Callable[[int], None] | None = None) -> Counter[str]:
    """Append every record of ``pages`` to ``bronze.raw_records`` as one batch; return rows per stream.

    The records are gathered first and committed at once, so a batch is in bronze whole or not
    at all.
    """
    streams: list[str] = []
    payloads: list[str] = []
    counts: Counter[str] = Counter()
    for page in pages:
        streams.extend([page.stream] * len(page.records))
        payloads.extend(_text(r) for r in page.records)
        counts[page.stream] += len(page.records)
        if on_page is not None:
            on_page(len(page.records))
    n = len(payloads)
    if n == 0:
        return counts
    table = pa.table({
        "org_id": pa.array([org_id] * n, pa.large_string()),
        "source": pa.array([source] * n, pa.large_string()),
        "stream": pa.array(streams, pa.large_string()),
        "connection_id": pa.array([connection_id] * n, pa.large_string()),
        "batch_id": pa.array([batch_id] * n, pa.large_string()),
        "extracted_at": pa.array([extracted_at] * n, pa.timestamp("us", tz="UTC")),
        "window_start": pa.array([window.start] * n, pa.date32()),
        "window_end": pa.array([window.end] * n, pa.date32()),
        "record_index": pa.array(range(n), pa.int64()),
        "payload": pa.array(payloads, pa.large_string()),
    })
    lake.append(BRONZE_RAW.name, table.cast(BRONZE_RAW.arrow_schema()))
    return counts
