"""What a silver parser receives and returns, and helpers every parser shares.

A parser turns bronze rows of one stream (columns ``BRONZE_COLUMNS``, ``payload`` holding the
record as received) into canonical rows of one silver table, and sends every record it cannot
read to quarantine with a reason a person can act on. It must account for every input row:
``len(good) + len(bad) == len(raw)``. Parsers are vectorised Polars code; never a Python loop
per record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

BRONZE_COLUMNS = (
    "org_id", "source", "stream", "connection_id", "batch_id", "extracted_at",
    "window_start", "window_end", "record_index", "payload",
)

#: bronze columns a parser carries along to build its lineage and quarantine rows
BRONZE_KEEP = ("org_id", "source", "stream", "connection_id", "batch_id", "extracted_at",
               "record_index", "payload")

#: lineage columns every parser output carries, taken from the bronze row
LINEAGE = {
    "connector": pl.col("source"),
    "connection_id": pl.col("connection_id"),
    "source_batch_id": pl.col("batch_id"),
    "extracted_at": pl.col("extracted_at"),
    "record_index": pl.col("record_index"),
}

#: parser output schema for ``silver.ad_performance_daily`` (before currency conversion)
PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    "org_id": pl.String(), "platform": pl.String(), "date": pl.Date(),
    "account_id": pl.String(), "account_name": pl.String(),
    "campaign_id": pl.String(), "campaign_name": pl.String(),
    "ad_group_id": pl.String(), "ad_group_name": pl.String(),
    "ad_id": pl.String(), "ad_name": pl.String(),
    "currency": pl.String(),
    "spend": pl.Float64(), "impressions": pl.Int64(), "clicks": pl.Int64(),
    "conversions": pl.Float64(), "conversion_value": pl.Float64(),
    "video_views": pl.Int64(), "reach": pl.Int64(),
    "connector": pl.String(), "connection_id": pl.String(), "source_batch_id": pl.String(),
    "extracted_at": pl.Datetime("us", "UTC"), "record_index": pl.Int64(),
    "breakdown": pl.String(),  # null, or "publisher_platform=instagram|age=25-34"
}

#: parser output schema for ``silver.campaigns``
CAMPAIGN_SCHEMA: dict[str, pl.DataType] = {
    "org_id": pl.String(), "platform": pl.String(), "account_id": pl.String(),
    "campaign_id": pl.String(), "name": pl.String(),
    "status": pl.String(),  # active / paused / archived
    "objective": pl.String(),
    "budget_type": pl.String(),  # daily / lifetime / null when the campaign has no budget
    "budget_amount": pl.Float64(),  # in the account currency, major units
    "currency": pl.String(),
    "start_date": pl.Date(), "end_date": pl.Date(),
    "labels": pl.List(pl.String()),
    "updated_at": pl.Datetime("us", "UTC"),
    "connector": pl.String(), "connection_id": pl.String(), "source_batch_id": pl.String(),
    "extracted_at": pl.Datetime("us", "UTC"), "record_index": pl.Int64(),
}

#: parser output schema for ``silver.crm_deals`` (platform/campaign resolved later from UTMs)
DEAL_SCHEMA: dict[str, pl.DataType] = {
    "org_id": pl.String(), "crm": pl.String(), "deal_id": pl.String(), "name": pl.String(),
    "amount": pl.Float64(), "currency": pl.String(), "stage": pl.String(),
    "is_closed": pl.Boolean(), "is_won": pl.Boolean(),
    "created_at": pl.Datetime("us", "UTC"), "closed_at": pl.Datetime("us", "UTC"),
    "source": pl.String(), "utm_source": pl.String(), "utm_medium": pl.String(),
    "utm_campaign": pl.String(),
    "connector": pl.String(), "connection_id": pl.String(), "source_batch_id": pl.String(),
    "extracted_at": pl.Datetime("us", "UTC"), "record_index": pl.Int64(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "org_id": pl.String(), "source": pl.String(), "stream": pl.String(),
    "batch_id": pl.String(), "record_index": pl.Int64(), "payload": pl.String(),
    "reason": pl.String(), "check": pl.String(),
}


@dataclass(frozen=True)
class ParseContext:
    """What a parser may need beyond the rows: the connection's settings."""

    org_id: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ParseResult:
    """Canonical rows (``good``) and quarantined rows (``bad``, ``QUARANTINE_SCHEMA``)."""

    good: pl.DataFrame
    bad: pl.DataFrame


Parser = Callable[[pl.DataFrame, ParseContext], ParseResult]


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def quarantine(raw: pl.DataFrame, reason: pl.Expr | str, check: str) -> pl.DataFrame:
    """Quarantine rows of ``raw`` (bronze columns) with a reason (text or expression)."""
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    return raw.select(
        "org_id", "source", "stream", "batch_id", "record_index", "payload",
        reason_expr.cast(pl.String).alias("reason"), pl.lit(check).alias("check"),
    )


def split_invalid_json(raw: pl.DataFrame, dtype: pl.DataType) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode ``payload`` into a struct column ``r``; rows that are not JSON objects go to bad.

    Decoding is vectorised; only when the batch holds malformed text does it fall back to
    checking records one by one, to find which ones (the rest of the batch still decodes).
    """
    try:
        decoded = raw.with_columns(pl.col("payload").str.json_decode(dtype).alias("r"))
        ok_mask = pl.col("r").is_not_null()
        return decoded.filter(ok_mask), quarantine(
            decoded.filter(~ok_mask), "record is not a JSON object; it was kept as received",
            "invalid_json")
    except pl.exceptions.ComputeError:
        import json

        def _valid(text: str | None) -> bool:
            try:
                return isinstance(json.loads(text), dict) if text is not None else False
            except ValueError:
                return False

        mask = raw["payload"].map_elements(_valid, return_dtype=pl.Boolean)
        good_raw, bad_raw = raw.filter(mask), raw.filter(~mask)
        decoded = good_raw.with_columns(pl.col("payload").str.json_decode(dtype).alias("r"))
        return decoded, quarantine(
            bad_raw, "record is not valid JSON; it was kept as received", "invalid_json")


def parse_number(expr: pl.Expr) -> pl.Expr:
    """A number from text that may carry thousands separators, spaces or a trailing '%'."""
    cleaned = expr.cast(pl.String).str.strip_chars().str.replace_all(r"[,\s]", "")
    return cleaned.cast(pl.Float64, strict=False)


def parse_date(expr: pl.Expr, formats: tuple[str, ...] = ("%Y-%m-%d", "%Y/%m/%d")) -> pl.Expr:
    """A date from text in any of ``formats`` (first that parses wins); null when none does."""
    text = expr.cast(pl.String).str.strip_chars().str.slice(0, 10)
    return pl.coalesce([text.str.strptime(pl.Date, f, strict=False) for f in formats])


def check_numbers(df: pl.DataFrame, columns: Mapping[str, str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows whose text field (columns: parsed name -> raw name) failed to parse.

    ``df`` holds the parsed columns and, under ``__raw_<name>``, the raw text of each; a row is
    bad when a raw value is present but did not parse.
    """
    problems = [
        pl.when(pl.col(f"__raw_{name}").is_not_null() & pl.col(name).is_null())
        .then(pl.format("field '{}' is not a number: '{}'", pl.lit(raw), pl.col(f"__raw_{name}")))
        for name, raw in columns.items()
    ]
    with_reason = df.with_columns(pl.concat_str(problems, separator="; ", ignore_nulls=True).alias("__reason"))
    bad = with_reason.filter(pl.col("__reason").is_not_null())
    good = with_reason.filter(pl.col("__reason").is_null())
    return good.drop("__reason"), bad


def conform(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast ``df`` to ``schema``; missing columns become nulls."""
    return df.select([
        (pl.col(n) if n in df.columns else pl.lit(None)).cast(t).alias(n) for n, t in schema.items()
    ])




def parse_timestamp(expr: pl.Expr) -> pl.Expr:
    """A UTC timestamp from ISO 8601 text: with an offset (``+0000``, ``+01:00``) or ``Z``; text
    without an offset is taken as UTC; a bare date is its midnight. Null when none parses."""
    text = expr.cast(pl.String).str.strip_chars()
    utc = pl.Datetime("us", "UTC")
    return pl.coalesce([
        text.str.strptime(utc, "%Y-%m-%dT%H:%M:%S%.f%z", strict=False),
        text.str.strptime(utc, "%Y-%m-%dT%H:%M:%S%.fZ", strict=False),
        text.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False)
        .dt.replace_time_zone("UTC"),
        text.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
        .dt.replace_time_zone("UTC"),
        text.str.strptime(pl.Date, "%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"),
    ])


def decode_objects(
    raw: pl.DataFrame, dtype: pl.DataType,
    transform: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode ``payload`` into the struct column ``r`` in one streaming pass, then ``transform``.

    Returns (decoded rows, quarantined rows). Text that cannot be a JSON object (truncated, an
    array, a bare value) is set aside by a cheap vectorised test first, so a batch with a few
    broken records still decodes in one pass. Only if decoding still fails (malformed text
    inside braces, or a field of an unexpected JSON type) does it fall back to
    ``split_invalid_json`` and then to bisecting the batch to isolate the offending records.
    """
    transform = transform or (lambda lf: lf)
    flags = raw.select(_braced(pl.col("payload"))).to_series()
    candidates, rest = raw.filter(flags), raw.filter(~flags)
    # Whitespace around the braces is rare: strip only the rows that failed the cheap test.
    loose = rest.select(_braced(pl.col("payload").str.strip_chars())).to_series()
    candidates = pl.concat([candidates, rest.filter(loose)]) if loose.any() else candidates
    not_objects = quarantine(rest.filter(~loose), "record is not a JSON object; it was kept "
                             "as received", "invalid_json")
    decode = pl.col("payload").str.json_decode(dtype).alias("r")
    try:
        decoded = transform(candidates.lazy().with_columns(decode)).collect(engine="streaming")
        return decoded, not_objects
    except pl.exceptions.ComputeError:
        pass
    try:
        ok, bad = split_invalid_json(candidates, dtype)
        parts, bads = [ok], [bad]
    except pl.exceptions.ComputeError:
        parts, bads = _bisect_decode(candidates, decode)
    decoded_parts = pl.concat(parts) if parts else candidates.clear().with_columns(decode)
    decoded = transform(decoded_parts.filter(pl.col("r").is_not_null()).lazy()).collect()
    null_objects = [quarantine(p.filter(pl.col("r").is_null()).drop("r"), "record is not a JSON "
                               "object; it was kept as received", "invalid_json") for p in parts]
    return decoded, pl.concat([not_objects, *bads, *null_objects])


def _braced(text: pl.Expr) -> pl.Expr:
    return (text.str.starts_with("{") & text.str.ends_with("}")).fill_null(False)


def _bisect_decode(
    frame: pl.DataFrame, decode: pl.Expr,
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Decode halves recursively until each failing record stands alone, then say why."""
    try:
        return [frame.with_columns(decode)], []
    except pl.exceptions.ComputeError as exc:
        if frame.height > 1:
            mid = frame.height // 2
            left, right = _bisect_decode(frame[:mid], decode), _bisect_decode(frame[mid:], decode)
            return left[0] + right[0], left[1] + right[1]
        import json

        try:
            json.loads(frame["payload"][0])
        except (TypeError, ValueError):
            return [], [quarantine(frame, "record is not valid JSON; it was kept as received",
                                   "invalid_json")]
        detail = str(exc).splitlines()[0].removeprefix("error deserializing JSON: ")
        reason = f"a field of the record has an unexpected JSON type ({detail})"
        return [], [quarantine(frame, reason, "unexpected_shape")]


def split_numbers(
    df: pl.DataFrame, columns: Mapping[str, str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Like ``check_numbers`` but returns (good rows, quarantined rows), and builds the reason
    text only for the (few) bad rows."""
    mask = pl.any_horizontal([
        pl.col(f"__raw_{name}").is_not_null() & pl.col(name).is_null() for name in columns])
    flags = df.select(mask.fill_null(False)).to_series()
    if not flags.any():
        return df, empty_quarantine()
    _, bad = check_numbers(df.filter(flags), columns)
    return df.filter(~flags), quarantine(bad, pl.col("__reason"), "not_a_number")
