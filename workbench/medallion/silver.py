"""Silver: parse bronze batches into the canonical tables, convert currency, quarantine the rest.

For each batch (oldest extraction first): bronze rows are read in chunks, each stream parsed by
its format's parser, every row checked, amounts converted to the organisation's currency with
the rate of the day; then one filtered overwrite per target replaces the batch's window
(performance) or the connection's entities (campaigns, deals), and the batch's quarantine rows
replace any earlier ones. Rows in = rows into silver + rows quarantined, per batch.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from workbench.lake.catalog import Lake
from workbench.lake.filters import all_of, between, eq
from workbench.lake.spill import Spill
from workbench.lake.schemas import (
    BRONZE_RAW, SILVER_CAMPAIGNS, SILVER_DEALS, SILVER_PERFORMANCE, SILVER_QUARANTINE,
)
from workbench.medallion import fx
from workbench.medallion.checks import CAMPAIGN_CHECKS, DEAL_CHECKS, PERFORMANCE_CHECKS, apply_checks
from workbench.medallion.parsers.base import QUARANTINE_SCHEMA, ParseContext, conform
from workbench.medallion.parsers.registry import parsers
from workbench.medallion.utm import resolve_deals

CHUNK_ROWS = 1_000_000
# campaign and ad group belong to the key: a campaign-level CSV has no ad ids at all; so does the
# breakdown (publisher platform, age...): distinct rows of one ad and day must not collapse
PERF_KEY = ("org_id", "platform", "account_id", "campaign_id", "ad_group_id", "ad_id", "date", "breakdown")


@dataclass
class BatchInfo:
    """What silver needs to know about a landed batch."""

    batch_id: str
    org_id: str
    source: str
    connection_id: str
    window_start: dt.date
    window_end: dt.date
    settings: dict
    lookback_days: int


@dataclass
class BatchOutcome:
    batch_id: str
    rows_in: int = 0
    rows_silver: int = 0
    rows_quarantined: int = 0
    performance_dates: set[dt.date] = field(default_factory=set)
    deal_dates: set[dt.date] = field(default_factory=set)


@dataclass
class _Parsed:
    """What the chunks of one batch produced: performance rows spilled to disk part by part
    (with their key hashes kept for the batch-wide dedup), small targets in memory."""

    perf: Spill
    perf_keys: list[pl.DataFrame] = field(default_factory=list)
    good: dict[str, list[pl.DataFrame]] = field(default_factory=lambda: defaultdict(list))
    bad: list[pl.DataFrame] = field(default_factory=list)
    rows_in: int = 0


def _bronze_chunks(lake: Lake, batch: BatchInfo) -> Iterator[pa.RecordBatch]:
    return lake.iter_batches(BRONZE_RAW.name, all_of(
        eq("org_id", batch.org_id), eq("source", batch.source), eq("batch_id", batch.batch_id)))


def _quarantine_from(rows: pl.DataFrame, raw: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows (with record_index, reason, check) joined back to their raw payloads."""
    keyed = rows.select("record_index", "reason", "check")
    return raw.join(keyed, on="record_index", how="inner").select(list(QUARANTINE_SCHEMA))


def _key_hashes(df: pl.DataFrame) -> pl.DataFrame:
    # two independent 64-bit hashes of the natural key: collisions are out of reach at any size
    key = pl.struct(list(PERF_KEY))
    return df.select(key.hash(11).alias("h1"), key.hash(29).alias("h2"), "record_index")


def _parse_chunk(lake: Lake, raw: pl.DataFrame, batch: BatchInfo, rates: pl.DataFrame,
                 org_currency: str, today: dt.date, out: _Parsed) -> None:
    first_bad = len(out.bad)
    _parse_streams(lake, raw, batch, rates, org_currency, today, out)
    # A filtered frame shares its strings' buffers with the chunk it came from: copy the few
    # quarantined rows out, or each kept frame pins a whole chunk of payloads in memory.
    out.bad[first_bad:] = [pl.from_arrow(b.to_arrow()) for b in out.bad[first_bad:]]  # type: ignore[misc]


def _parse_streams(lake: Lake, raw: pl.DataFrame, batch: BatchInfo, rates: pl.DataFrame,
                   org_currency: str, today: dt.date, out: _Parsed) -> None:
    out.rows_in += raw.height
    ctx = ParseContext(org_id=batch.org_id, settings=batch.settings)
    for (stream,), part in raw.group_by("stream"):
        spec = parsers.get(str(stream))
        result = spec.parser(part, ctx)
        out.bad.append(result.bad.select(list(QUARANTINE_SCHEMA)))
        good = result.good
        if spec.target == "performance":
            good = good.with_columns(pl.lit(batch.window_start).alias("__window_start"),
                                     pl.lit(batch.window_end).alias("__window_end"))
            good, failed = apply_checks(good, PERFORMANCE_CHECKS)
            good = good.with_columns(pl.col(c).fill_null(0) for c in
                                     ("spend", "impressions", "clicks", "conversions", "conversion_value"))
            good = fx.convert(good, rates, org_currency,
                              {"spend": "spend_org", "conversion_value": "conversion_value_org"})
            no_rate = good.filter(pl.col("fx_rate").is_null())
            if no_rate.height:
                out.bad.append(_quarantine_from(no_rate.with_columns(
                    fx.missing_rate_reason(org_currency).alias("reason"),
                    pl.lit("missing_fx_rate").alias("check")), part))
                good = good.filter(pl.col("fx_rate").is_not_null())
            settled_before = today - dt.timedelta(days=batch.lookback_days)
            good = good.with_columns(pl.lit(org_currency).alias("org_currency"),
                                     (pl.col("date") < settled_before).alias("settled"))
            out.perf_keys.append(_key_hashes(good))
            out.perf.add(lake.to_arrow(SILVER_PERFORMANCE.name,
                                       good.sort("org_id", "date", "platform", "account_id", "campaign_id")))
        elif spec.target == "campaigns":
            good, failed = apply_checks(good, CAMPAIGN_CHECKS)
        else:
            good, failed = apply_checks(good, DEAL_CHECKS)
            good = good.with_columns(
                pl.coalesce(pl.col("closed_at"), pl.col("created_at")).dt.date().alias("date"))
            good = fx.convert(good, rates, org_currency, {"amount": "amount_org"})
            # A deal without a rate keeps its amount in its own currency only; it is still a deal.
            good = good.drop("date", "fx_rate_date")
        if failed.height:
            out.bad.append(_quarantine_from(failed, part))
        if spec.target != "performance":
            out.good[spec.target].append(good)


def _latest_wins(df: pl.DataFrame, key: list[str], what: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``df`` into the last record per key in the batch and the earlier duplicates, as
    quarantine rows (record_index, reason, check) still without their payloads."""
    ranked = df.with_columns(pl.col("record_index").max().over(key).alias("__kept"))
    kept = pl.col("record_index") == pl.col("__kept")
    dupes = ranked.filter(~kept).select("record_index", pl.format(
        f"duplicate {what}: record {{}} of this batch has the same key and was kept instead",
        pl.col("__kept")).alias("reason"), pl.lit("duplicate_key").alias("check"))
    return ranked.filter(kept).drop("__kept"), dupes


def transform_batch(lake: Lake, batch: BatchInfo, rates: pl.DataFrame, org_currency: str,
                    today: dt.date) -> BatchOutcome:
    """Parse one landed batch into silver (idempotent: a rerun writes identical rows).

    Memory holds one chunk of bronze at a time: parsed performance rows are spilled to local
    disk and committed together in one transaction with the window's delete.
    """
    with Spill(lake.settings.home / "tmp", f"silver-{batch.batch_id}") as spill:
        return _transform(lake, batch, rates, org_currency, today, _Parsed(perf=spill))


def _transform(lake: Lake, batch: BatchInfo, rates: pl.DataFrame, org_currency: str,
               today: dt.date, parsed: _Parsed) -> BatchOutcome:
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending_rows:
            raw = pl.from_arrow(pa.Table.from_batches(pending))
            assert isinstance(raw, pl.DataFrame)
            _parse_chunk(lake, raw, batch, rates, org_currency, today, parsed)
        pending, pending_rows = [], 0

    for record_batch in _bronze_chunks(lake, batch):
        pending.append(record_batch)
        pending_rows += record_batch.num_rows
        if pending_rows >= CHUNK_ROWS:
            flush()
    flush()

    def raw_lookup(indexes: list[int]) -> pl.DataFrame:
        # One more streamed pass over the batch, keeping only the wanted records: an Iceberg
        # filter with thousands of literals is far slower, and a join would load every payload.
        wanted = pa.array(indexes, pa.int64())
        found = [rb.filter(pc.is_in(rb.column("record_index"), value_set=wanted))
                 for rb in _bronze_chunks(lake, batch)]
        table = pa.Table.from_batches([rb for rb in found if rb.num_rows], schema=BRONZE_RAW.arrow_schema())
        return pl.from_arrow(table)  # type: ignore[return-value]

    outcome = BatchOutcome(batch.batch_id, rows_in=parsed.rows_in)
    bad = list(parsed.bad)
    duplicates: list[pl.DataFrame] = []
    if parsed.good.get("campaigns"):
        campaigns, dupes = _latest_wins(pl.concat(parsed.good["campaigns"], how="diagonal_relaxed"),
                                        ["org_id", "platform", "account_id", "campaign_id"], "campaign")
        duplicates.append(dupes)
        _merge_entities(lake, SILVER_CAMPAIGNS.name, campaigns, batch,
                        ["platform", "account_id", "campaign_id"])
        outcome.rows_silver += campaigns.height
    if parsed.good.get("deals"):
        deals, dupes = _latest_wins(pl.concat(parsed.good["deals"], how="diagonal_relaxed"),
                                    ["org_id", "crm", "deal_id"], "deal")
        duplicates.append(dupes)
        campaigns_now = lake.scan(SILVER_CAMPAIGNS.name).filter(pl.col("org_id") == batch.org_id).collect()
        deals = resolve_deals(deals, campaigns_now)
        replaced = _merge_entities(lake, SILVER_DEALS.name, deals, batch, ["crm", "deal_id"])
        outcome.rows_silver += deals.height
        outcome.deal_dates = _deal_dates(deals) | _deal_dates(replaced)
    if parsed.perf_keys:
        _, dupes = _latest_wins(pl.concat(parsed.perf_keys), ["h1", "h2"], "row for this ad and date")
        duplicates.append(dupes)
        loser_set = pa.array(dupes["record_index"].to_list(), pa.int64())

        def keep_winners(table: pa.Table) -> pa.Table:
            if not len(loser_set):
                return table
            return table.filter(pc.invert(pc.is_in(table["record_index"], value_set=loser_set)))

        outcome.rows_silver += lake.replace(
            SILVER_PERFORMANCE.name,
            all_of(eq("org_id", batch.org_id), eq("connection_id", batch.connection_id),
                   between("date", batch.window_start, batch.window_end)),
            lambda: parsed.perf.parts(keep_winners))
        outcome.performance_dates = {batch.window_start + dt.timedelta(days=i) for i in
                                     range((batch.window_end - batch.window_start).days + 1)}
    dupe_rows = pl.concat(duplicates) if duplicates else pl.DataFrame()
    if dupe_rows.height:  # one more pass over the batch fetches every duplicate's payload
        bad.append(_quarantine_from(dupe_rows, raw_lookup(dupe_rows["record_index"].to_list())))
    quarantined = pl.concat([b for b in bad if b.height], how="vertical_relaxed") if any(
        b.height for b in bad) else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    quarantined = quarantined.with_columns(
        pl.lit(dt.datetime.now(dt.UTC)).cast(pl.Datetime("us", "UTC")).alias("quarantined_at"))
    lake.overwrite(SILVER_QUARANTINE.name, quarantined, all_of(
        eq("org_id", batch.org_id), eq("source", batch.source), eq("batch_id", batch.batch_id)))
    outcome.rows_quarantined = quarantined.height
    return outcome


def _merge_entities(lake: Lake, table: str, new: pl.DataFrame, batch: BatchInfo,
                    key: list[str]) -> pl.DataFrame:
    """Replace the connection's entities with ``new`` where keys match; return replaced rows."""
    where = all_of(eq("org_id", batch.org_id), eq("connection_id", batch.connection_id))
    existing = lake.scan(table).filter(
        (pl.col("org_id") == batch.org_id) & (pl.col("connection_id") == batch.connection_id)).collect()
    new = new.with_columns(pl.col(c).cast(existing.schema[c]) for c in new.columns
                           if c in existing.columns and c in ("budget_amount", "amount", "amount_org"))
    replaced = existing.join(new.select(key), on=key, how="semi")
    kept = existing.join(new.select(key), on=key, how="anti")
    merged = pl.concat([kept, conform(new, dict(existing.schema))], how="vertical_relaxed")
    lake.overwrite(table, merged, where)
    return replaced


def _deal_dates(deals: pl.DataFrame) -> set[dt.date]:
    if deals.is_empty():
        return set()
    dates = pl.concat([deals["created_at"].dt.date(), deals["closed_at"].dt.date()]).drop_nulls()
    return set(dates.unique().to_list())
