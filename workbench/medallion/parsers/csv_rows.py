"""Parser of ``csv.performance_daily``: rows of a user's export file, mapped to canonical columns.

A bronze record is one CSV row as a JSON object (header -> cell text) plus two keys the connector
adds: ``__line``, the row's line number in the file, and ``__extra``, the cells beyond the header
when some are not blank. The connection settings (``ctx.settings``: mapping, platform, currency,
date_format, decimal) say how headers map to canonical columns. ``resolve_columns`` and
``column_problems`` hold the matching rules; the connector validates a file with the same two
functions, so a file the connector accepts is read the same way here.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from workbench.medallion.parsers.base import (
    LINEAGE,
    PERFORMANCE_SCHEMA,
    QUARANTINE_SCHEMA,
    ParseContext,
    ParseResult,
    conform,
    empty_quarantine,
    parse_date,
    split_invalid_json,
)

REQUIRED_COLUMNS = ("date", "spend", "impressions", "clicks")
CANONICAL_COLUMNS = (
    *REQUIRED_COLUMNS,
    "account_id", "account_name", "campaign_id", "campaign_name", "ad_group_id", "ad_group_name",
    "ad_id", "ad_name", "conversions", "conversion_value", "video_views", "reach", "currency",
    "platform",
)
AUTO_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d")

#: header spellings of common exports, normalised (see ``normalise_header``)
_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("day", "reportdate", "reportingstarts"),
    "spend": ("cost", "amountspent", "spent", "mediacost", "totalcost"),
    "impressions": ("impr", "imps", "impression"),
    "conversions": ("conv", "conversion"),
    "conversion_value": ("convvalue", "conversionsvalue", "totalconversionvalue", "revenue"),
    "video_views": ("views",),
    "account_id": ("customerid", "advertiserid"),
    "account_name": ("account", "advertiser", "advertisername"),
    "campaign_name": ("campaign",),
    "ad_group_id": ("adsetid", "lineitemid"),
    "ad_group_name": ("adgroup", "adset", "adsetname", "lineitem"),
    "ad_id": ("creativeid",),
    "ad_name": ("ad", "creative", "creativename"),
    "currency": ("currencycode",),
}
_FLOAT_COLUMNS = ("spend", "conversions", "conversion_value")
_INTEGER_COLUMNS = ("impressions", "clicks", "video_views", "reach")
_BLANKS = ("", "-", "--")
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_META_KEYS = ("__line", "__extra")


def normalise_header(text: str) -> str:
    """Lower case without spaces, underscores, dots, dashes or a trailing currency like '(EUR)'."""
    text = re.sub(r"\(\s*[A-Za-z]{3}\s*\)\s*$", "", text)
    return re.sub(r"[\s_.\-]+", "", text).lower()


def resolve_columns(
    headers: Sequence[str], mapping: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Canonical column -> file header, in file order, for every canonical column the file has.

    Mapping entries come first; other canonical columns match a header equal to their name or a
    common alias, ignoring case, spaces and underscores ("Campaign Name" -> campaign_name).
    """
    return _resolve(headers, mapping)[0]


def column_problems(headers: Sequence[str], settings: Mapping[str, Any]) -> list[str]:
    """Everything that stops a file with ``headers`` loading with ``settings``, as sentences."""
    columns, problems = _resolve(headers, settings.get("mapping"))
    currency = settings.get("currency")
    if currency is not None and not (
            isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{3}", currency.strip())):
        problems.append(f"setting currency {currency!r} is not a 3-letter ISO code such as EUR")
    elif "currency" not in columns and currency is None:
        problems.append(
            "the file has no currency column and the connection has no `currency` setting: set "
            "`currency` to the ISO code the amounts are in (e.g. EUR), or map the currency column")
    if settings.get("decimal", ".") not in (".", ","):
        problems.append(f"setting decimal {settings['decimal']!r} must be '.' or ','")
    for key in ("platform", "date_format"):
        if settings.get(key) is not None and not isinstance(settings[key], str):
            problems.append(f"setting {key} must be text, not {settings[key]!r}")
    return problems


def parse_date_text(text: str | None, date_format: str | None = None) -> dt.date | None:
    """One date cell, by the rules the parser applies to the column; None when it does not parse."""
    if text is None:
        return None
    value = text.strip() if date_format else text.strip()[:10]
    for fmt in (date_format,) if date_format else AUTO_DATE_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


def parse_performance(raw: pl.DataFrame, ctx: ParseContext) -> ParseResult:
    """Bronze rows of ``csv.performance_daily`` -> ``PERFORMANCE_SCHEMA`` rows and quarantine."""
    goods = [pl.DataFrame(schema=PERFORMANCE_SCHEMA)]
    bads = [empty_quarantine()]
    # a batch is one file: its rows share headers, other batches may not
    for batch in raw.partition_by("batch_id", maintain_order=True) if raw.height else []:
        good, bad = _parse_batch(batch, ctx.settings)
        goods.append(good)
        bads.append(bad)
    return ParseResult(pl.concat(goods), pl.concat(bads))


def _parse_batch(
    batch: pl.DataFrame, settings: Mapping[str, Any],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    headers = _headers(batch["payload"])
    problems = column_problems(headers, settings)
    if problems:
        reason = "the file cannot be mapped: " + "; ".join(problems)
        return pl.DataFrame(schema=PERFORMANCE_SCHEMA), _quarantined(batch.with_columns(
            pl.lit(reason).alias("__reason"), pl.lit("csv_mapping").alias("__check")))
    columns = resolve_columns(headers, settings.get("mapping"))
    dtype = pl.Struct({**{h: pl.String() for h in columns.values()},
                       "__line": pl.Int64(), "__extra": pl.List(pl.String())})
    decoded, bad_json = split_invalid_json(batch, dtype)
    rows = decoded.with_columns(
        pl.coalesce(pl.col("r").struct.field("__line"), pl.col("record_index") + 2).alias("__line"),
        pl.col("r").struct.field("__extra"),
        *[pl.col("r").struct.field(h).alias(f"__raw_{c}") for c, h in columns.items()],
    )
    checks = _checks(columns, settings)
    reasons = [reason for _, reason in checks]
    rows = rows.with_columns(
        pl.when(pl.any_horizontal([r.is_not_null() for r in reasons]))
        .then(pl.concat_str(reasons, separator="; ", ignore_nulls=True)).alias("__reason"),
        pl.coalesce([pl.when(r.is_not_null()).then(pl.lit(check)) for check, r in checks])
        .alias("__check"),
    )
    good = rows.filter(pl.col("__reason").is_null()).select(_canonical(columns, settings))
    bad = _quarantined(rows.filter(pl.col("__reason").is_not_null()))
    return conform(good, PERFORMANCE_SCHEMA), pl.concat([bad, conform(bad_json, QUARANTINE_SCHEMA)])


def _headers(payload: pl.Series, sample: int = 50) -> list[str]:
    """The headers of a batch: the keys of its first records (every row of a file has the same)."""
    headers: dict[str, None] = {}
    for text in payload.head(sample):
        try:
            record = json.loads(text) if text is not None else None
        except ValueError:
            continue
        if isinstance(record, dict):
            headers.update(dict.fromkeys(k for k in record if k not in _META_KEYS))
    return list(headers)


def _raw(canonical: str) -> pl.Expr:
    return pl.col(f"__raw_{canonical}")


def _blank(canonical: str) -> pl.Expr:
    return _raw(canonical).str.strip_chars().is_in(_BLANKS)


def _number(canonical: str, decimal: str) -> pl.Expr:
    """The cell as a number, without currency symbols or codes and thousands separators."""
    text = (_raw(canonical).str.strip_chars()
            .str.replace_all(r"[\s\u00a0\u202f$€£¥₹₩₽¢]", "")
            .str.replace(r"^[A-Z]{3}|[A-Z]{3}$", ""))
    if decimal == ",":
        text = text.str.replace_all(r"[.']", "").str.replace(",", ".", literal=True)
    else:
        text = text.str.replace_all(r"[,']", "")
    # accounting notation: (12.50) is -12.50
    text = (pl.when(text.str.contains(r"^\(.*\)$"))
            .then(pl.lit("-") + text.str.strip_chars("()")).otherwise(text))
    return pl.when(text.str.contains(_NUMBER)).then(text.cast(pl.Float64, strict=False))


def _date(date_format: str | None) -> pl.Expr:
    text = _raw("date").str.strip_chars()
    if date_format:
        return text.str.strptime(pl.Date, date_format, strict=False)
    return parse_date(text, AUTO_DATE_FORMATS)


def _checks(columns: Mapping[str, str], settings: Mapping[str, Any]) -> list[tuple[str, pl.Expr]]:
    """(check name, reason or null) per problem a row can have, in the order they are reported."""
    line = pl.format("line {}", pl.col("__line"))
    date_format = settings.get("date_format")

    def field(c: str) -> pl.Expr:
        return pl.lit(f"column '{columns[c]}' ({c})")

    missing = [pl.when(_raw(c).is_null()).then(field(c)) for c in columns]
    checks: list[tuple[str, pl.Expr]] = [
        ("csv_row", pl.when(pl.col("__extra").list.len() > 0).then(pl.format(
            "{} has more cells than the header (extra: {}); a value probably contains the "
            "delimiter without quotes", line, pl.col("__extra").list.join(" | ")))),
        ("csv_row", pl.when(pl.any_horizontal([m.is_not_null() for m in missing])).then(pl.format(
            "{} has fewer cells than the header: no value for {}", line,
            pl.concat_str(missing, separator=", ", ignore_nulls=True)))),
    ]
    expected = (f"expected format '{date_format}'" if date_format else
                "expected YYYY-MM-DD or YYYY/MM/DD, or set date_format for other layouts "
                "(e.g. '%d/%m/%Y' for 31/12/2024)")
    checks.append(("invalid_date", pl.when(_blank("date"))
                   .then(pl.format("{}: {} is empty", line, field("date")))
                   .when(_raw("date").is_not_null() & _date(date_format).is_null())
                   .then(pl.format("{}: {} is not a date: '{}'; {}", line, field("date"),
                                   _raw("date"), pl.lit(expected)))))
    for c in [c for c in (*_FLOAT_COLUMNS, *_INTEGER_COLUMNS) if c in columns]:
        value = _number(c, settings.get("decimal", "."))
        unreadable = _raw(c).is_not_null() & ~_blank(c) & value.is_null()
        fraction = value != value.round(0) if c in _INTEGER_COLUMNS else pl.lit(False)
        checks.append(("invalid_number", pl.when(unreadable)
                       .then(pl.format("{}: {} is not a number: '{}'", line, field(c), _raw(c)))
                       .when(fraction)
                       .then(pl.format("{}: {} is not a whole number: '{}'", line, field(c),
                                       _raw(c)))))
    if "currency" in columns:
        currency = _currency(columns, settings)
        absent = _raw("currency").is_not_null() & currency.is_null()
        checks.append(("invalid_currency", pl.when(absent)
                       .then(pl.format("{}: {} is empty and the connection has no currency setting",
                                       line, field("currency")))
                       .when(~currency.str.contains(r"^[A-Z]{3}$"))
                       .then(pl.format("{}: {} is not a 3-letter ISO code: '{}'", line,
                                       field("currency"), _raw("currency")))))
    return checks


def _currency(columns: Mapping[str, str], settings: Mapping[str, Any]) -> pl.Expr:
    setting = settings.get("currency")
    fallback = pl.lit(setting.strip().upper() if setting else None, pl.String)
    if "currency" not in columns:
        return fallback
    return (pl.when(_blank("currency")).then(fallback)
            .otherwise(_raw("currency").str.strip_chars().str.to_uppercase()))


def _text(columns: Mapping[str, str], *candidates: str) -> pl.Expr:
    """The first non-blank cell among the canonical columns ``candidates`` that the file has."""
    cells = [pl.when(_blank(c)).then(None).otherwise(_raw(c).str.strip_chars())
             for c in candidates if c in columns]
    return pl.coalesce(cells) if cells else pl.lit(None, pl.String)


def _canonical(columns: Mapping[str, str], settings: Mapping[str, Any]) -> list[pl.Expr]:
    platform = (settings.get("platform") or "csv").strip().lower()

    def measure(c: str) -> pl.Expr:
        if c not in columns:
            return pl.lit(None, pl.Float64)
        value = _number(c, settings.get("decimal", "."))
        # exports leave a measure blank when it is zero; optional measures stay unknown instead
        return value.fill_null(0.0) if c in REQUIRED_COLUMNS else value

    def level(id_column: str, name_column: str, default: str) -> pl.Expr:
        # a file without ids identifies by name; one without the level at all gets the default
        return pl.coalesce(_text(columns, id_column, name_column), pl.lit(default)).alias(id_column)

    return [
        pl.col("org_id"),
        pl.coalesce(_text(columns, "platform").str.to_lowercase(), pl.lit(platform))
        .alias("platform"),
        _date(settings.get("date_format")).alias("date"),
        level("account_id", "account_name", "csv"),
        _text(columns, "account_name").alias("account_name"),
        level("campaign_id", "campaign_name", ""),
        _text(columns, "campaign_name").alias("campaign_name"),
        level("ad_group_id", "ad_group_name", ""),
        _text(columns, "ad_group_name").alias("ad_group_name"),
        level("ad_id", "ad_name", ""),
        _text(columns, "ad_name").alias("ad_name"),
        _currency(columns, settings).alias("currency"),
        *[measure(c).alias(c) for c in (*_FLOAT_COLUMNS, *_INTEGER_COLUMNS)],
        *[expr.alias(name) for name, expr in LINEAGE.items()],
    ]


def _quarantined(rows: pl.DataFrame) -> pl.DataFrame:
    return conform(rows.with_columns(
        pl.col("__reason").alias("reason"), pl.col("__check").alias("check")), QUARANTINE_SCHEMA)


def _resolve(
    headers: Sequence[str], mapping: Mapping[str, Any] | None,
) -> tuple[dict[str, str], list[str]]:
    mapping = mapping or {}
    columns: dict[str, str] = {}
    problems: list[str] = []
    found = f"headers found: {', '.join(repr(h) for h in headers) or 'none'}"
    for canonical, header in mapping.items():
        if canonical not in CANONICAL_COLUMNS:
            problems.append(
                f"the mapping names '{canonical}', which is not a canonical column"
                f"{_suggest(canonical, CANONICAL_COLUMNS)}; canonical columns are "
                f"{', '.join(CANONICAL_COLUMNS)}")
        elif not isinstance(header, str) or not header.strip():
            problems.append(f"the mapping of '{canonical}' must be a column header, not {header!r}")
        elif (match := _find(header, headers)) is None:
            kind = "required column" if canonical in REQUIRED_COLUMNS else "column"
            problems.append(f"{kind} '{canonical}' is mapped to '{header}', which is not a column "
                            f"of the file{_suggest(header, headers)}; {found}")
        else:
            columns[canonical] = match
    by_name: dict[str, str] = {}
    for header in headers:
        by_name.setdefault(normalise_header(header), header)
    unmapped = [c for c in CANONICAL_COLUMNS if c not in mapping]
    # exact canonical names first, so that an alias never takes a header naming another column
    for spellings_of in ({c: (normalise_header(c),) for c in unmapped}, _ALIASES):
        for canonical, spellings in spellings_of.items():
            if canonical not in unmapped or canonical in columns:
                continue
            for spelling in spellings:
                header = by_name.get(spelling)
                if header is not None and header not in columns.values():
                    columns[canonical] = header
                    break
    for canonical in REQUIRED_COLUMNS:
        if canonical in unmapped and canonical not in columns:
            close = _suggest((canonical, *_ALIASES.get(canonical, ())), headers)
            problems.append(
                f"required column '{canonical}' not found: no header matches it and the mapping "
                f"does not name one{close}; {found}; add it to the mapping, e.g. "
                f"mapping: {{{canonical}: '<header>'}}")
    position = {h: i for i, h in reversed(list(enumerate(headers)))}
    return dict(sorted(columns.items(), key=lambda item: position[item[1]])), problems


def _find(header: str, headers: Sequence[str]) -> str | None:
    """``header`` in ``headers``: exactly, else the one header equal to it once normalised."""
    if header in headers:
        return header
    matches = [h for h in headers if normalise_header(h) == normalise_header(header)]
    return matches[0] if len(matches) == 1 else None


def _suggest(wanted: str | Sequence[str], options: Sequence[str]) -> str:
    """A hint naming the option closest to ``wanted``; empty when none is close."""
    spellings = [wanted] if isinstance(wanted, str) else list(wanted)
    best, score = None, 0.6
    for option in options:
        for spelling in spellings:
            ratio = difflib.SequenceMatcher(
                None, normalise_header(spelling), normalise_header(option)).ratio()
            if ratio > score:
                best, score = option, ratio
    return f" (closest: '{best}')" if best is not None else ""
