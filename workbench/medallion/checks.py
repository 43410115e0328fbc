"""Checks every canonical row passes before it reaches silver (after the format's parser).

Each check is a (machine name, condition that marks a bad row, reason expression) triple in
one ordered tuple; the first failing check names the row's reason.
"""

from __future__ import annotations

import polars as pl

MONEY_AND_COUNTS = ("spend", "impressions", "clicks", "conversions", "conversion_value", "video_views")

PERFORMANCE_CHECKS: tuple[tuple[str, pl.Expr, pl.Expr], ...] = (
    ("missing_date", pl.col("date").is_null(),
     pl.lit("the record has no reporting date (or it is not a date); fix the export or mapping")),
    ("missing_id", pl.any_horizontal(pl.col("account_id", "campaign_id", "ad_id").is_null()),
     pl.format("the record lacks an id (account '{}', campaign '{}', ad '{}'); every row needs "
               "all three", pl.col("account_id").fill_null("?"), pl.col("campaign_id").fill_null("?"),
               pl.col("ad_id").fill_null("?"))),
    ("date_outside_window",
     (pl.col("date") < pl.col("__window_start")) | (pl.col("date") > pl.col("__window_end")),
     pl.format("date {} lies outside the extracted window {}..{}; the source returned a day "
               "that was not asked for", pl.col("date"), pl.col("__window_start"), pl.col("__window_end"))),
    ("bad_currency", ~pl.col("currency").fill_null("").str.contains(r"^[A-Z]{3}$"),
     pl.format("currency '{}' is not a 3-letter ISO code; set the account currency or the "
               "connection's currency setting", pl.col("currency").fill_null(""))),
    ("negative_value", pl.any_horizontal([pl.col(c).fill_null(0) < 0 for c in MONEY_AND_COUNTS]),
     pl.concat_str([pl.when(pl.col(c) < 0).then(pl.format(f"{c} is negative ({{}})", pl.col(c)))
                    for c in MONEY_AND_COUNTS], separator="; ", ignore_nulls=True)
     + pl.lit("; performance figures cannot be negative")),
)

CAMPAIGN_CHECKS: tuple[tuple[str, pl.Expr, pl.Expr], ...] = (
    ("missing_id", pl.col("campaign_id").is_null() | pl.col("account_id").is_null(),
     pl.lit("the campaign record has no campaign or account id")),
    ("negative_value", pl.col("budget_amount").fill_null(0) < 0,
     pl.format("budget {} is negative", pl.col("budget_amount"))),
)

DEAL_CHECKS: tuple[tuple[str, pl.Expr, pl.Expr], ...] = (
    ("missing_id", pl.col("deal_id").is_null(), pl.lit("the deal record has no id")),
    ("missing_date", pl.col("created_at").is_null(),
     pl.lit("the deal has no creation date (or it is not a date)")),
    ("negative_value", pl.col("amount").fill_null(0) < 0,
     pl.format("deal amount {} is negative", pl.col("amount"))),
)


def apply_checks(df: pl.DataFrame, checks: tuple[tuple[str, pl.Expr, pl.Expr], ...]
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``df`` into rows passing every check and failing rows with ``reason`` and ``check``."""
    if df.is_empty():
        return df, df.with_columns(pl.lit(None, pl.String).alias("reason"),
                                   pl.lit(None, pl.String).alias("check"))
    check_expr = pl.lit(None, pl.String)
    reason_expr = pl.lit(None, pl.String)
    for name, cond, reason in reversed(checks):
        hit = cond.fill_null(False)
        check_expr = pl.when(hit).then(pl.lit(name)).otherwise(check_expr)
        reason_expr = pl.when(hit).then(reason).otherwise(reason_expr)
    tagged = df.with_columns(check_expr.alias("check"), reason_expr.alias("reason"))
    bad_mask = pl.col("check").is_not_null()
    return tagged.filter(~bad_mask).drop("check", "reason"), tagged.filter(bad_mask)
