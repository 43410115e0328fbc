"""Display formatting driven by units: currency, percentages, thousands separators.

Values stay numbers in the frames ``ws.metrics`` returns; these helpers make the strings a
table, a dashboard or the CLI shows.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def format_value(value: Any, fmt: str, currency: str = "USD") -> str:
    """One value as text: ``format_value(1234.5, "currency", "EUR") == "€1,234.50"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if fmt == "currency":
        sign = "-" if value < 0 else ""
        symbol = _SYMBOLS.get(currency)
        amount = f"{abs(value):,.2f}"
        return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency}"
    if fmt == "percent":
        return f"{value * 100:,.2f}%"
    if fmt == "multiple":
        return f"{value:,.2f}x"
    if fmt == "integer":
        return f"{value:,.0f}"
    if fmt == "number":
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4g}"
    if fmt == "boolean":
        return "yes" if value else "no"
    if fmt == "date" and isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def format_frame(df: pl.DataFrame, formats: dict[str, str], currency: str = "USD") -> pl.DataFrame:
    """A copy of ``df`` with the columns in ``formats`` turned into display strings."""
    out = {}
    for name in df.columns:
        fmt = formats.get(name)
        if fmt is None:
            out[name] = df[name]
        else:
            out[name] = pl.Series(name, [format_value(v, fmt, currency) for v in df[name].to_list()], dtype=pl.String)
    return pl.DataFrame(out)
