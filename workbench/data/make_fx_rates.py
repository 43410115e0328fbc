"""Generate ``fx_rates.csv``, the default exchange rates shipped with the workbench.

No real rates can be downloaded where the workbench is built, so the file is synthetic: each
currency starts near its early-2024 level against USD and follows a seeded, mean-reverting random
walk. Good for demos and tests, not for reporting; organisations load their own rates. Run
``python workbench/data/make_fx_rates.py`` to rewrite the file; the output is deterministic.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from pathlib import Path

START, END = dt.date(2024, 1, 1), dt.date(2027, 12, 31)
#: units of each currency per USD at the start, and daily volatility of its log rate
LEVELS = {
    "USD": (1.0, 0.0), "EUR": (0.92, 0.004), "GBP": (0.79, 0.004), "JPY": (150.0, 0.005),
    "CAD": (1.36, 0.003), "AUD": (1.52, 0.005), "CHF": (0.88, 0.004), "SEK": (10.5, 0.005),
    "BRL": (5.0, 0.008), "INR": (83.0, 0.002),
}
REVERSION = 0.01  # daily pull of the log rate back to its starting level


def rows(seed: int = 20240101) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    logs = {quote: math.log(level) for quote, (level, _) in LEVELS.items()}
    out = []
    for day in range((END - START).days + 1):
        date = (START + dt.timedelta(days=day)).isoformat()
        for quote, (level, sigma) in LEVELS.items():
            if day:
                logs[quote] += REVERSION * (math.log(level) - logs[quote]) + rng.gauss(0.0, sigma)
            out.append((date, "USD", quote, f"{math.exp(logs[quote]):.6g}"))
    return out


def main() -> None:
    target = Path(__file__).with_name("fx_rates.csv")
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("date", "base", "quote", "rate"))
        writer.writerows(rows())


if __name__ == "__main__":
    main()
