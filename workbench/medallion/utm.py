"""Attribute CRM deals to ad platforms and campaigns from their UTM values."""

from __future__ import annotations

import polars as pl

#: utm_source values (lower-case) -> canonical platform
UTM_SOURCES: dict[str, str] = {
    "facebook": "meta", "fb": "meta", "meta": "meta", "instagram": "meta", "ig": "meta",
    "dv360": "dv360", "dbm": "dv360", "google_dv360": "dv360", "display_video_360": "dv360",
    "ttd": "ttd", "thetradedesk": "ttd", "tradedesk": "ttd", "the_trade_desk": "ttd",
}


def _slug(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "_").str.strip_chars("_")


def resolve_deals(deals: pl.DataFrame, campaigns: pl.DataFrame) -> pl.DataFrame:
    """Add ``platform`` and ``campaign_id`` to ``deals`` (null when the UTM values match nothing).

    ``utm_campaign`` matches a campaign id, or a campaign name compared case- and
    punctuation-insensitively; ``utm_source`` picks the platform, and when it is unknown a
    campaign match that is unique across platforms decides.
    """
    deals = deals.with_columns(
        pl.col("utm_source").str.to_lowercase().str.strip_chars()
        .replace_strict(UTM_SOURCES, default=None, return_dtype=pl.String).alias("__src_platform"),
        _slug(pl.col("utm_campaign")).alias("__utm_slug"),
        pl.int_range(pl.len()).alias("__row"),
    )
    if campaigns.is_empty():
        return deals.with_columns(pl.col("__src_platform").alias("platform"),
                                  pl.lit(None, pl.String).alias("campaign_id")
                                  ).drop("__src_platform", "__utm_slug", "__row")
    keys = pl.concat([
        campaigns.select("platform", "campaign_id", pl.col("campaign_id").alias("__key"), pl.lit(0).alias("__rank")),
        campaigns.select("platform", "campaign_id", _slug(pl.col("name")).alias("__key"), pl.lit(1).alias("__rank")),
    ]).unique()
    by_id = deals.join(keys, left_on=pl.col("utm_campaign"), right_on="__key", how="inner")
    by_id = by_id.filter(pl.col("__rank") == 0)
    by_name = deals.join(keys.filter(pl.col("__rank") == 1), left_on="__utm_slug", right_on="__key", how="inner")
    candidates = pl.concat([by_id.select("__row", "platform", "campaign_id", "__rank", "__src_platform"),
                            by_name.select("__row", "platform", "campaign_id", "__rank", "__src_platform")])
    candidates = candidates.filter(pl.col("__src_platform").is_null()
                                   | (pl.col("__src_platform") == pl.col("platform")))
    # Prefer an id match to a name match; an ambiguous match (two campaigns) resolves to nothing.
    best = (candidates.filter(pl.col("__rank") == pl.col("__rank").min().over("__row"))
            .group_by("__row").agg(pl.col("platform").first(), pl.col("campaign_id").first(),
                                   pl.len().alias("__n"))
            .filter(pl.col("__n") == 1).drop("__n"))
    out = deals.join(best, on="__row", how="left")
    return out.with_columns(pl.coalesce("platform", "__src_platform").alias("platform")
                            ).drop("__src_platform", "__utm_slug", "__row").sort("deal_id")
