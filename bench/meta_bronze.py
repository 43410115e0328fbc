"""Meta-like bronze rows for the benchmarks, built with vectorised Polars string formatting.

Each payload is a Meta Insights record at ``level=ad, time_increment=1`` with the field names
``connectors.synthetic.meta_insight`` emits (string numbers; ``actions``, ``action_values`` and
``video_thruplay_watched_actions`` as ``{action_type, value}`` lists), serialised compactly as
``bronze.land`` stores it. About 3% of the rows are re-extracted duplicates of an earlier
(ad, date) key in the same batch with restated figures; 12 accounts in USD, EUR and GBP;
90 reporting days; one record in 2,000 malformed (truncated JSON, a number "12,3x", no date,
a negative impression count), like the synthetic connector's malformed records.

``python bench/meta_bronze.py ROWS FOLDER [PROFILE]`` writes the file; ``ensure(rows, folder)``
returns a cached file, generating it once per size.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ORG_ID = "bench"
SOURCE = "synthetic"
STREAM = "meta.ad_insights_daily"
CONNECTION_ID = "bench-connection"
BATCH_ID = "bench-batch"
ORG_CURRENCY = "USD"
WINDOW_START = dt.date(2026, 8, 1)
DAYS = 90
WINDOW_END = WINDOW_START + dt.timedelta(days=DAYS - 1)
EXTRACTED_AT = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC)
DUPLICATE_SHARE = 0.03
MALFORMED_RATE = 0.0005
ACCOUNTS = 12
ADS_PER_ADSET = 4
ADSETS_PER_CAMPAIGN = 5
CURRENCIES = ("USD", "EUR", "GBP")
REGIONS = ("US", "EU", "UK")
# the synthetic connector's vocabularies, so bench records read like its records
from connectors.synthetic_world import AUDIENCES, BRANDS, FORMATS, THEMES  # noqa: E402
#: (action_type, column) pairs per payload profile: "full" is every action type the synthetic
#: connector writes (records of ~750 bytes); "compact" (the default, ~525 bytes, nearer the
#: stack-facts yardstick's 395) keeps the link clicks and the pixel conversions.
COMPACT_ACTIONS = (("link_click", "link_clicks"),
                   ("offsite_conversion.fb_pixel_purchase", "purchases"))
FULL_ACTIONS = (("link_click", "link_clicks"), ("landing_page_view", "lpv"),
           ("page_engagement", "clicks"), ("post_engagement", "clicks"),
           ("offsite_conversion.fb_pixel_lead", "leads"), ("lead", "leads"),
           ("offsite_conversion.fb_pixel_purchase", "purchases"), ("omni_purchase", "purchases"))
PROFILES = {
    "compact": (COMPACT_ACTIONS, ("offsite_conversion.fb_pixel_purchase",)),
    "full": (FULL_ACTIONS, ("offsite_conversion.fb_pixel_purchase", "omni_purchase")),
}


def _cat(*parts: str | pl.Expr) -> pl.Expr:
    """Text pieces and expressions joined (``pl.format`` reads braces as placeholders)."""
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p.cast(pl.String) for p in parts])


def _pick(options: tuple[str, ...], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(options)).gather(index % len(options))


def _action_list(pairs: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """``[{"action_type":...,"value":"..."}, ...]`` of the pairs whose value is positive,
    or null when none is."""
    items = [pl.when(value.cast(pl.Float64) > 0).then(
        _cat('{"action_type":"' + kind + '","value":"', value, '"}')) for kind, value in pairs]
    joined = pl.concat_str(items, separator=",", ignore_nulls=True)
    return pl.when(joined.str.len_bytes() > 0).then(_cat("[", joined, "]"))


def _money(expr: pl.Expr) -> pl.Expr:
    """A float as Meta writes money: two decimals, as text."""
    cents = (expr * 100).round(0).cast(pl.Int64)
    return _cat(cents // 100, ".", (cents % 100).cast(pl.String).str.zfill(2))


def _figures(rows: int, seed: int, profile: str) -> pl.DataFrame:
    """One row per bronze record: entity numbers, day and figures (no text yet)."""
    rng = np.random.default_rng(seed)
    dupes = round(rows * DUPLICATE_SHARE)
    unique = rows - dupes
    ads = max(1, -(-unique // DAYS))
    # Row order: the original rows by key (day-major, as a date-paged extraction returns them);
    # each duplicate lands a little later than the row it re-extracts.
    key = np.concatenate([np.arange(unique), rng.integers(0, unique, dupes)])
    version = np.concatenate([np.zeros(unique, np.int64), np.ones(dupes, np.int64)])
    position = key.astype(np.float64) + version * rng.uniform(1, 50_000, rows)
    order = np.argsort(position, kind="stable")
    key, version = key[order], version[order]
    del position, order
    ad = key % ads
    adset = ad // ADS_PER_ADSET
    campaign = adset // ADSETS_PER_CAMPAIGN
    # figures: drawn per row, restated a little upwards on re-extraction
    base = np.random.default_rng(seed + 1)
    spend = np.round(base.lognormal(2.5, 1.0, rows) * (1 + 0.02 * version), 2)
    impressions = np.floor(spend / base.uniform(2, 15, rows) * 1000).astype(np.int64) + 1
    clicks = base.binomial(impressions, 0.012)
    link_clicks = base.binomial(clicks, 0.8)
    lpv = base.binomial(link_clicks, 0.75)
    conversions = base.binomial(clicks, 0.02)
    leads = base.binomial(conversions, 0.3)
    purchases = conversions - leads
    value = np.round(purchases * base.uniform(40, 250, rows), 2)
    video = (campaign % (10 if profile == "compact" else 5)) == 0
    views = np.where(video, base.binomial(impressions, 0.25), 0)
    reach = np.ceil(impressions / base.uniform(1.2, 2.5, rows)).astype(np.int64)
    malformed = np.where(base.random(rows) < MALFORMED_RATE, base.integers(1, 5, rows), 0)
    return pl.DataFrame({
        "account": campaign % ACCOUNTS, "campaign": campaign, "adset": adset, "ad": ad,
        "day": key // ads, "spend": spend, "impressions": impressions, "clicks": clicks,
        "link_clicks": link_clicks, "lpv": lpv, "leads": leads, "purchases": purchases,
        "value": value, "views": views, "reach": reach, "malformed": malformed.astype(np.int8),
    }).with_row_index("record_index")


def _payload(profile: str) -> pl.Expr:
    """The JSON text of a record from the columns of ``_figures``."""
    currency = _pick(CURRENCIES, pl.col("account"))
    date = (pl.lit(WINDOW_START) + pl.duration(days=pl.col("day"))).dt.to_string("%Y-%m-%d")

    def meta_id(prefix: str, col: str, salt: int) -> pl.Expr:
        scrambled = (pl.col(col) * 7_919 + salt) % 10**15
        return _cat(prefix, scrambled.cast(pl.String).str.zfill(15))

    action_types, value_types = PROFILES[profile]
    actions = _action_list([(kind, pl.col(col)) for kind, col in action_types])
    values = _action_list([(kind, _money(pl.col("value"))) for kind in value_types])
    views_list = _action_list([("video_view", pl.col("views"))])
    return pl.concat_str([
        _cat('{"account_id":"', meta_id("1", "account", 11), '","account_name":"',
             _pick(BRANDS, pl.col("account")), " ", _pick(REGIONS, pl.col("account")), " ",
             pl.col("account") + 1, '","account_currency":"', currency, '",'),
        _cat('"campaign_id":"', meta_id("120", "campaign", 13), '","campaign_name":"',
             _pick(BRANDS, pl.col("account")), " | ", _pick(THEMES, pl.col("campaign")),
             " | Aug 2026 #", pl.col("campaign") % 7, '",'),
        _cat('"adset_id":"', meta_id("120", "adset", 17), '","adset_name":"',
             _pick(AUDIENCES, pl.col("adset")), " #", pl.col("adset") % ADSETS_PER_CAMPAIGN + 1,
             '",'),
        _cat('"ad_id":"', meta_id("120", "ad", 19), '","ad_name":"', _pick(FORMATS, pl.col("ad")),
             " v", pl.col("ad") % ADS_PER_ADSET + 1, '",'),
        _cat('"spend":"', _money(pl.col("spend")), '","impressions":"', pl.col("impressions"),
             '","clicks":"', pl.col("clicks"), '","reach":"', pl.col("reach"), '",'),
        _cat('"date_start":"', date, '","date_stop":"', date, '"'),
        pl.when(actions.is_not_null()).then(_cat(',"actions":', actions)).otherwise(pl.lit("")),
        pl.when(values.is_not_null()).then(_cat(',"action_values":', values)).otherwise(pl.lit("")),
        pl.when(views_list.is_not_null())
        .then(_cat(',"video_thruplay_watched_actions":', views_list)).otherwise(pl.lit("")),
        pl.lit("}"),
    ])


def _broken(payload: pl.Expr, kind: pl.Expr) -> pl.Expr:
    """The four kinds of malformed record of the synthetic connector (kind 0: intact)."""
    return (pl.when(kind == 1).then(payload.str.slice(0, payload.str.len_chars() // 2))
            .when(kind == 2).then(payload.str.replace(r'"spend":"[^"]*"', '"spend":"12,3x"'))
            .when(kind == 3).then(
                payload.str.replace(r',"date_start":"[^"]*","date_stop":"[^"]*"', ""))
            .when(kind == 4).then(
                payload.str.replace('"impressions":"', '"impressions":"-', literal=True))
            .otherwise(payload))


def _bronze(figures: pl.DataFrame, profile: str) -> pl.DataFrame:
    return figures.lazy().select(
        pl.lit(ORG_ID).alias("org_id"), pl.lit(SOURCE).alias("source"),
        pl.lit(STREAM).alias("stream"), pl.lit(CONNECTION_ID).alias("connection_id"),
        pl.lit(BATCH_ID).alias("batch_id"),
        pl.lit(EXTRACTED_AT).cast(pl.Datetime("us", "UTC")).alias("extracted_at"),
        pl.lit(WINDOW_START).alias("window_start"), pl.lit(WINDOW_END).alias("window_end"),
        pl.col("record_index").cast(pl.Int64),
        _broken(_payload(profile), pl.col("malformed")).alias("payload"),
    ).collect(engine="streaming")


def generate(rows: int, seed: int = 7, profile: str = "compact") -> pl.DataFrame:
    """``rows`` bronze rows (bronze.raw_records columns), record_index 0..rows-1."""
    return _bronze(_figures(rows, seed, profile), profile)


def write(rows: int, path: Path, seed: int = 7, profile: str = "compact",
          chunk: int = 1_000_000) -> None:
    """Write ``generate(rows)`` to a parquet file chunk by chunk (bounded memory)."""
    import pyarrow.parquet as pq

    figures = _figures(rows, seed, profile)
    writer = None
    try:
        for offset in range(0, rows, chunk):
            table = _bronze(figures.slice(offset, chunk), profile).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=250_000)
    finally:
        if writer is not None:
            writer.close()


def ensure(rows: int, folder: Path, profile: str = "compact") -> Path:
    """The cached bronze file of ``rows`` rows under ``folder`` (generated on first use)."""
    path = folder / f"bronze_meta_{profile}_{rows}.parquet"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write(rows, tmp, profile=profile)
        tmp.rename(path)
    return path


def main() -> None:
    rows, out = int(sys.argv[1]), Path(sys.argv[2])
    profile = sys.argv[3] if len(sys.argv) > 3 else "compact"
    start = time.perf_counter()
    path = ensure(rows, out, profile)
    sample = pl.read_parquet(path, n_rows=1000)["payload"]
    print(json.dumps({"path": str(path), "seconds": round(time.perf_counter() - start, 2),
                      "mean_payload_bytes": round(sample.str.len_bytes().mean(), 1)}))


if __name__ == "__main__":
    main()
