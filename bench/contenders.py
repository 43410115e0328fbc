"""The contenders of ``bench/pipeline.py``: bronze -> silver -> gold three ways.

Each runs in a process of its own so that its peak memory is that process's maximum RSS:

    python bench/contenders.py generate  ROWS CACHE_DIR RESULT.json PROFILE
    python bench/contenders.py setup     BRONZE.parquet WORKDIR RESULT.json
    python bench/contenders.py workbench BRONZE.parquet WORKDIR RESULT.json [--sample]
    python bench/contenders.py floor     BRONZE.parquet WORKDIR RESULT.json
    python bench/contenders.py pandas    BRONZE.parquet WORKDIR RESULT.json

``setup`` lands the bronze file in a fresh workbench home (untimed); ``workbench`` then times
``workbench.medallion.pipeline.transform`` on it. ``floor`` is the hand-written Polars
pipeline of the stack facts and ``pandas`` the same steps written plainly with pandas; both
write silver, quarantine and gold to Iceberg tables with the lake's schemas (a SqlCatalog of
their own), so every contender pays for the same commits. The result file holds the seconds,
the row counts and the gold totals that ``pipeline.py`` compares.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
import types
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import meta_bronze  # noqa: E402

#: the conversion action types the Meta parser counts by default
CONVERSION_TYPES = ("offsite_conversion.fb_pixel_purchase",)
LOOKBACK_DAYS = 3
PERF_KEY = ["account_id", "ad_id", "date"]
GOLD_GRAIN = ["org_id", "date", "platform", "account_id", "campaign_id", "ad_group_id", "ad_id"]
CAMPAIGN_GRAIN = ["org_id", "date", "platform", "account_id", "campaign_id"]
SUMS = ["spend", "spend_org", "impressions", "clicks", "conversions", "conversion_value",
        "conversion_value_org", "video_views"]
NAMES = ["account_name", "campaign_name", "ad_group_name", "ad_name", "currency", "org_currency"]


class Stages:
    """Wall seconds and RSS at the end of each named stage of a contender."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.marks: list[dict[str, Any]] = []

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks.append({"stage": name, "seconds": round(now - self.last, 3),
                           "rss_gib": round(_rss_bytes() / 2**30, 2)})
        self.last = now


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the workbench ---------------------------------------------------------------------------

def _import_pipeline() -> list[str]:
    """Import the medallion pipeline; parser modules of other platforms that do not exist yet
    are replaced by placeholders (this benchmark reads Meta rows only). Returns their names."""
    import importlib

    stubbed = []
    for name in ("meta", "dv360", "ttd", "hubspot", "salesforce", "csv_rows"):
        module = f"workbench.medallion.parsers.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            if name == "meta":
                raise SystemExit("workbench/medallion/parsers/meta.py does not exist yet") from None
            stub = types.ModuleType(module)

            def missing(*_a: Any, _n: str = name, **_k: Any) -> Any:
                raise NotImplementedError(f"parser module {_n} is not written yet")

            stub.__getattr__ = lambda attr, f=missing: f  # type: ignore[method-assign]
            sys.modules[module] = stub
            setattr(sys.modules["workbench.medallion.parsers"], name, stub)
            stubbed.append(name)
    importlib.import_module("workbench.medallion.pipeline")
    return stubbed


def _settings(workdir: Path) -> Any:
    from workbench.settings import load_settings

    return load_settings(home=workdir / "home", progress=False)


def setup(bronze: Path, workdir: Path) -> dict[str, Any]:
    """A workbench home with the bronze file landed as one batch of a synthetic connection."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workbench.lake.schemas import BRONZE_RAW
    from workbench.oltp import repo
    from workbench.oltp.models import Batch
    from workbench.settings import new_id
    from workbench.stores import init

    start = time.perf_counter()
    settings = _settings(workdir)
    stores = init(settings)
    org = repo.create_org(stores.db, meta_bronze.ORG_ID, "Benchmark", currency="USD",
                          timezone="UTC")
    conn = repo.upsert_connection(stores.db, settings.credentials_key, org.id, "meta-bench",
                                  "synthetic", {"platforms": ["meta"], "crms": []},
                                  lookback_days=LOOKBACK_DAYS)
    batch_id = new_id()
    target = BRONZE_RAW.arrow_schema()
    batches = []
    for rb in pq.ParquetFile(bronze).iter_batches(batch_size=250_000):
        rb = rb.set_column(rb.schema.get_field_index("connection_id"), "connection_id",
                           pa.array([conn.id] * rb.num_rows, pa.large_string()))
        rb = rb.set_column(rb.schema.get_field_index("batch_id"), "batch_id",
                           pa.array([batch_id] * rb.num_rows, pa.large_string()))
        batches.append(pa.Table.from_batches([rb]).cast(target))
    table = pa.concat_tables(batches)
    del batches
    stores.lake.append(BRONZE_RAW.name, table)  # one commit, as bronze.land makes
    rows = table.num_rows
    repo.record_batch(stores.db, Batch(
        id=batch_id, org_id=org.id, connection_id=conn.id, source=meta_bronze.SOURCE,
        window_start=meta_bronze.WINDOW_START, window_end=meta_bronze.WINDOW_END,
        extracted_at=meta_bronze.EXTRACTED_AT, rows_in=rows,
        streams={meta_bronze.STREAM: rows}, status="landed"))
    return {"seconds": time.perf_counter() - start, "rows": rows, "batch_id": batch_id}


class StackSampler:
    """A sampling profiler for the main thread: every ``interval`` seconds it notes the
    innermost workbench frame (file:line function) and the process RSS, so time and memory can
    be attributed to lines of the pipeline (Polars and pyarrow release the GIL while they work,
    so samples land while native code runs)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.main = threading.main_thread().ident
        self.samples: Counter[str] = Counter()
        self.stacks: Counter[str] = Counter()
        self.peak: dict[str, int] = defaultdict(int)
        self.timeline: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StackSampler:
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self.main)
            chain = []
            while frame is not None:
                code = frame.f_code
                if "/workbench/" in code.co_filename and "/site-packages/" not in code.co_filename:
                    rel = code.co_filename.split("/workbench/", 1)[1]
                    chain.append(f"{rel}:{frame.f_lineno} {code.co_name}")
                frame = frame.f_back
            where = chain[0] if chain else "(outside workbench)"
            rss = _rss_bytes()
            self.samples[where] += 1
            self.stacks[" < ".join(chain)] += 1
            self.peak[where] = max(self.peak[where], rss)
            self.timeline.append((round(time.perf_counter() - self.t0, 2), rss, where))

    def report(self, top: int = 15) -> dict[str, Any]:
        total = sum(self.samples.values()) or 1
        return {
            "interval_s": self.interval,
            "lines": [{"where": k, "seconds": round(n * self.interval, 2),
                       "share": round(n / total, 3), "peak_rss_gib": round(self.peak[k] / 2**30, 2)}
                      for k, n in self.samples.most_common(top)],
            "stacks": [{"stack": k, "seconds": round(n * self.interval, 2)}
                       for k, n in self.stacks.most_common(top)],
            "timeline": self.timeline[:: max(1, len(self.timeline) // 400)],
        }


def run_workbench(bronze: Path, workdir: Path, sample: bool = False) -> dict[str, Any]:
    """Time ``pipeline.transform`` on the home ``setup`` prepared."""
    stubbed = _import_pipeline()
    import polars as pl

    from workbench.medallion import pipeline
    from workbench.oltp import repo
    from workbench.stores import init

    settings = _settings(workdir)
    stores = init(settings)
    org = repo.get_org(stores.db, meta_bronze.ORG_ID)
    sampler = StackSampler() if sample else None
    start = time.perf_counter()
    if sampler is not None:
        with sampler:
            result = pipeline.transform(settings, stores.db, stores.lake, org, show_progress=False)
    else:
        result = pipeline.transform(settings, stores.db, stores.lake, org, show_progress=False)
    seconds = time.perf_counter() - start
    rss_after = _rss_bytes()
    lake = stores.lake
    gold = lake.scan("gold.performance_daily").select(
        pl.col("spend_org").sum(), pl.col("conversions").sum(), pl.len().alias("rows")).collect()
    checks = (lake.scan("silver.quarantine").group_by("check").agg(pl.len()).collect()
              .sort("check").rows())
    out: dict[str, Any] = {
        "seconds": seconds, "rows_in": result.rows_in, "rows_silver": result.rows_silver,
        "rows_quarantined": result.rows_quarantined, "gold_rows": result.gold_rows,
        "gold_spend_org": gold["spend_org"][0], "gold_conversions": gold["conversions"][0],
        "quarantine_by_check": dict(checks), "rss_after_gib": rss_after / 2**30,
        "stubbed_parsers": stubbed,
    }
    if sampler is not None:
        out["sample"] = sampler.report()
    return out


# -- the floor: hand-written Polars --------------------------------------------------------------

class IcebergSink:
    """Silver and gold tables (the lake's schemas and partitioning) in a SqlCatalog of its own."""

    TABLES = ("silver.ad_performance_daily", "silver.quarantine", "gold.performance_daily",
              "gold.campaign_daily")

    def __init__(self, workdir: Path) -> None:
        from pyiceberg.catalog.sql import SqlCatalog

        from workbench.lake.schemas import TABLES

        warehouse = workdir / "warehouse"
        warehouse.mkdir(parents=True, exist_ok=True)
        self.defs = TABLES
        self.catalog = SqlCatalog("bench", uri=f"sqlite:///{workdir / 'catalog.db'}",
                                  warehouse=warehouse.as_uri())
        for ns in ("silver", "gold"):
            self.catalog.create_namespace_if_not_exists(ns)
        for name in self.TABLES:
            tdef = TABLES[name]
            schema = tdef.schema()
            self.catalog.create_table_if_not_exists(
                name, schema=schema, partition_spec=tdef.partition_spec(schema),
                sort_order=tdef.sort_order(schema),
                properties={"write.parquet.compression-codec": "zstd"})

    def sink(self, name: str, frame: Any) -> None:
        """Stream a Polars LazyFrame into the table (``sink_iceberg``), cast to its schema."""
        import polars as pl

        target = pl.from_arrow(self.defs[name].arrow_schema().empty_table()).schema
        frame.select([(pl.col(c) if c in frame.collect_schema() else pl.lit(None)).cast(t).alias(c)
                      for c, t in target.items()]).sink_iceberg(
            self.catalog.load_table(name), mode="append")

    def count(self, name: str) -> int:
        import polars as pl

        return pl.scan_iceberg(self.catalog.load_table(name)).select(pl.len()).collect().item()

    def append(self, name: str, table: Any) -> None:
        self.catalog.load_table(name).append(table.select(
            self.defs[name].column_names).cast(self.defs[name].arrow_schema()))


def _fx_to(org: str, currencies: list[str], first: dt.date, last: dt.date) -> Any:
    """(currency, date, fx_rate) for every day of [first, last]: the latest rate on or before
    the date, from the shipped USD-based rate file (rate C -> org = (USD -> org) / (USD -> C))."""
    import polars as pl

    from workbench.medallion.fx import default_fx_path

    usd = (pl.read_csv(default_fx_path(), schema_overrides={"rate": pl.Float64})
           .with_columns(pl.col("date").str.to_date()).filter(pl.col("base") == "USD"))
    to_org = usd.filter(pl.col("quote") == org).select("date", pl.col("rate").alias("org_rate"))
    rates = (usd.join(to_org, on="date")
             .select(pl.col("quote").alias("currency"), "date",
                     (pl.col("org_rate") / pl.col("rate")).alias("fx_rate"),
                     pl.col("date").alias("fx_rate_date"))
             .filter(pl.col("currency").is_in(currencies)).sort("date"))
    grid = pl.DataFrame({"currency": currencies}).join(
        pl.date_range(first, last, eager=True).alias("date").to_frame(), how="cross").sort("date")
    return grid.join_asof(rates, on="date", by="currency", strategy="backward",
                          check_sortedness=False)


def floor(bronze: Path, workdir: Path) -> dict[str, Any]:
    """Bronze -> silver -> gold in hand-written Polars: one streaming pass decodes, normalises,
    checks and joins the rates; then latest-wins dedup, and silver, quarantine and gold
    streamed into Iceberg with ``sink_iceberg``."""
    import polars as pl

    from workbench.medallion.parsers.meta import INSIGHTS_DTYPE

    sink = IcebergSink(workdir)
    start = time.perf_counter()
    stages = Stages()
    org_currency = meta_bronze.ORG_CURRENCY
    payload, r = pl.col("payload"), pl.col("r")
    braced = payload.str.starts_with("{") & payload.str.ends_with("}")
    bronze_scan = pl.scan_parquet(bronze)
    window = bronze_scan.select(pl.col("window_start").min(), pl.col("window_end").max()).collect()
    rates = _fx_to(org_currency, list(meta_bronze.CURRENCIES), window["window_start"][0],
                   window["window_end"][0])

    def listsum(field: str, kinds: tuple[str, ...] | None) -> pl.Expr:
        value = pl.element().struct.field("value").cast(pl.Float64, strict=False)
        if kinds is not None:
            value = value.filter(pl.element().struct.field("action_type").is_in(list(kinds)))
        return r.struct.field(field).list.eval(value).list.sum()

    def text(field: str) -> pl.Expr:
        return r.struct.field(field)

    numbers = {"spend": pl.Float64(), "impressions": pl.Int64(), "clicks": pl.Int64(),
               "reach": pl.Int64()}
    measures = ("spend", "impressions", "clicks", "conversions", "conversion_value", "video_views")
    not_a_number = pl.any_horizontal(text(c).is_not_null() & text(c).cast(t, strict=False).is_null()
                                     for c, t in numbers.items())
    check = (
        pl.when(pl.col("not_a_number")).then(pl.lit("not_a_number"))
        .when(pl.col("date").is_null()).then(pl.lit("missing_date"))
        .when(pl.any_horizontal(pl.col("account_id", "campaign_id", "ad_id").is_null()))
        .then(pl.lit("missing_id"))
        .when((pl.col("date") < pl.col("window_start")) | (pl.col("date") > pl.col("window_end")))
        .then(pl.lit("date_outside_window"))
        .when(~pl.col("currency").fill_null("").str.contains(r"^[A-Z]{3}$"))
        .then(pl.lit("bad_currency"))
        .when(pl.any_horizontal(pl.col(c).fill_null(0) < 0 for c in measures))
        .then(pl.lit("negative_value"))
        .when(pl.col("fx_rate").is_null()).then(pl.lit("missing_fx_rate"))
    )
    parsed = (
        bronze_scan.filter(braced)
        .with_columns(payload.str.json_decode(INSIGHTS_DTYPE).alias("r"))
        .select(
            "org_id", pl.col("source").alias("connector"), "connection_id",
            pl.col("batch_id").alias("source_batch_id"), "extracted_at", "record_index",
            "window_start", "window_end",
            text("account_id"), text("account_name"), text("campaign_id"), text("campaign_name"),
            text("adset_id").alias("ad_group_id"), text("adset_name").alias("ad_group_name"),
            text("ad_id"), text("ad_name"), text("account_currency").alias("currency"),
            text("date_start").str.to_date("%Y-%m-%d", strict=False).alias("date"),
            *(text(c).cast(t, strict=False).alias(c) for c, t in numbers.items()),
            not_a_number.alias("not_a_number"),
            listsum("actions", CONVERSION_TYPES).fill_null(0.0).alias("conversions"),
            listsum("action_values", CONVERSION_TYPES).fill_null(0.0).alias("conversion_value"),
            listsum("video_thruplay_watched_actions", None).cast(pl.Int64).alias("video_views"),
        )
        .join(rates.lazy(), on=["currency", "date"], how="left", maintain_order="left")
        .with_columns(check.alias("check"))
        .drop("not_a_number", "window_start", "window_end")
    )
    not_json = bronze_scan.filter(~braced).select(
        "record_index", pl.lit("invalid_json").alias("check"))
    parsed_rows, not_json_rows = pl.collect_all([parsed, not_json], engine="streaming")
    stages.mark("read + decode + normalise + checks + fx")
    # Rows are in record order, so the last of each key is the latest extraction; the key is
    # null on rows that failed a check, which keeps them out of silver.
    if not parsed_rows["record_index"].is_sorted():
        parsed_rows = parsed_rows.sort("record_index")
    ok = pl.col("check").is_null()
    parsed_rows = parsed_rows.with_columns(
        (ok & pl.when(ok).then(pl.struct(PERF_KEY)).is_last_distinct()).alias("latest"))
    bad = pl.concat([
        parsed_rows.filter(~ok | ~pl.col("latest")).select(
            "record_index", pl.coalesce("check", pl.lit("duplicate_key")).alias("check")),
        not_json_rows])
    settled_before = dt.date.today() - dt.timedelta(days=LOOKBACK_DAYS)
    silver = (
        parsed_rows.lazy().filter(pl.col("latest"))
        .with_columns(
            pl.lit("meta").alias("platform"), pl.lit(org_currency).alias("org_currency"),
            (pl.col("spend") * pl.col("fx_rate")).alias("spend_org"),
            (pl.col("conversion_value") * pl.col("fx_rate")).alias("conversion_value_org"),
            (pl.col("date") < settled_before).alias("settled"))
        .with_columns(pl.col(c).round(6) for c in
                      ("spend", "conversion_value", "spend_org", "conversion_value_org"))
        .drop("check", "latest")
        .sort("date", "account_id", "campaign_id")
        .collect()
    )
    del parsed_rows
    stages.mark("dedup")
    sink.sink("silver.ad_performance_daily", silver.lazy())
    stages.mark("silver commit")
    quarantine_rows = bad
    sink.sink("silver.quarantine", bronze_scan.join(
        quarantine_rows.lazy(), on="record_index", how="inner").select(
        "org_id", "source", "stream", "batch_id", "record_index", "payload",
        pl.format("record failed check {}", pl.col("check")).alias("reason"), "check",
        pl.lit(dt.datetime.now(dt.UTC)).alias("quarantined_at")))
    stages.mark("quarantine lookup + commit")
    gold = (
        silver.lazy().group_by(GOLD_GRAIN)
        .agg(*[pl.col(c).first() for c in NAMES], *[pl.col(c).sum() for c in SUMS],
             pl.col("reach").max(), pl.col("settled").all())
        .sort("org_id", "date", "platform", "campaign_id").collect(engine="streaming"))
    del silver
    stages.mark("gold group")
    sink.sink("gold.performance_daily", gold.lazy())
    stages.mark("gold commit")
    campaign = (
        gold.lazy().group_by(CAMPAIGN_GRAIN)
        .agg(*[pl.col(c).first() for c in ("account_name", "campaign_name", "currency",
                                            "org_currency")],
             *[pl.col(c).sum() for c in SUMS], pl.col("settled").all())
        .sort("org_id", "date", "platform", "campaign_id"))
    sink.sink("gold.campaign_daily", campaign)
    stages.mark("campaign rollup + commit")
    seconds = time.perf_counter() - start
    counts = dict(quarantine_rows.group_by("check").len().sort("check").rows())
    rows_silver = gold.height  # the gold grain is silver's here: one ad, one account, one day
    return {
        "seconds": seconds, "rows_in": bronze_scan.select(pl.len()).collect().item(),
        "rows_silver": sink.count("silver.ad_performance_daily"),
        "rows_quarantined": sink.count("silver.quarantine"),
        "gold_rows": {"gold.performance_daily": rows_silver,
                      "gold.campaign_daily": sink.count("gold.campaign_daily")},
        "gold_spend_org": gold["spend_org"].sum(), "gold_conversions": gold["conversions"].sum(),
        "quarantine_by_check": counts, "stages": stages.marks,
    }


# -- plain pandas ------------------------------------------------------------------------------

def _sum_actions(actions: Any, kinds: tuple[str, ...] | None) -> float:
    if not isinstance(actions, list):
        return 0.0
    return sum(float(a["value"]) for a in actions if kinds is None or a["action_type"] in kinds)


def pandas(bronze: Path, workdir: Path) -> dict[str, Any]:
    """The same steps written the way a pandas notebook would: ``json.loads`` per row."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    sink = IcebergSink(workdir)
    start = time.perf_counter()
    org_currency = meta_bronze.ORG_CURRENCY
    raw = pd.read_parquet(bronze)

    def load(text: str) -> Any:
        try:
            value = json.loads(text)
            return value if isinstance(value, dict) else None
        except ValueError:
            return None

    records = [load(p) for p in raw["payload"]]
    bad_json = np.array([r is None for r in records])
    df = pd.DataFrame.from_records([r if r is not None else {} for r in records])
    del records
    df["record_index"] = raw["record_index"].to_numpy()
    df["bad_json"] = bad_json
    for c in ("org_id", "source", "connection_id", "batch_id", "extracted_at",
              "window_start", "window_end"):
        df[c] = raw[c]
    df = df.rename(columns={"adset_id": "ad_group_id", "adset_name": "ad_group_name",
                            "account_currency": "currency"})
    df["date"] = pd.to_datetime(df["date_start"], format="%Y-%m-%d", errors="coerce").astype(
        "datetime64[ns]")
    number_bad = np.zeros(len(df), bool)
    for c in ("spend", "impressions", "clicks", "reach"):
        parsed = pd.to_numeric(df[c], errors="coerce")
        number_bad |= (df[c].notna() & parsed.isna()).to_numpy()
        df[c] = parsed
    df["conversions"] = df["actions"].apply(_sum_actions, kinds=CONVERSION_TYPES)
    df["conversion_value"] = df["action_values"].apply(_sum_actions, kinds=CONVERSION_TYPES)
    views = df.get("video_thruplay_watched_actions", pd.Series([None] * len(df)))
    df["video_views"] = [_sum_actions(v, None) if isinstance(v, list) else np.nan for v in views]
    ws = pd.to_datetime(df["window_start"])
    we = pd.to_datetime(df["window_end"])
    measures = ["spend", "impressions", "clicks", "conversions", "conversion_value", "video_views"]
    conditions = [
        ("invalid_json", df["bad_json"].to_numpy()),
        ("not_a_number", number_bad),
        ("missing_date", df["date"].isna().to_numpy()),
        ("missing_id", df[["account_id", "campaign_id", "ad_id"]].isna().any(axis=1).to_numpy()),
        ("date_outside_window", ((df["date"] < ws) | (df["date"] > we)).to_numpy()),
        ("bad_currency", ~df["currency"].fillna("").str.fullmatch(r"[A-Z]{3}").to_numpy(bool)),
        ("negative_value", (df[measures].fillna(0) < 0).any(axis=1).to_numpy()),
    ]
    df["check"] = np.select([c for _, c in conditions], [n for n, _ in conditions], default="")
    bad = df.loc[df["check"] != "", ["record_index", "check"]]
    good = df.loc[df["check"] == ""].copy()
    del df
    fx = pd.read_csv(Path(__file__).resolve().parents[1] / "workbench/data/fx_rates.csv")
    fx["date"] = pd.to_datetime(fx["date"], format="%Y-%m-%d").astype("datetime64[ns]")
    usd = fx[fx["base"] == "USD"]
    to_org = usd[usd["quote"] == org_currency][["date", "rate"]].rename(columns={"rate": "org"})
    rates = usd.merge(to_org, on="date")
    rates["fx_rate"] = rates["org"] / rates["rate"]
    rates = rates.rename(columns={"quote": "currency"})[["date", "currency", "fx_rate"]]
    rates["fx_rate_date"] = rates["date"]
    good = pd.merge_asof(good.sort_values("date"), rates.sort_values("date"), on="date",
                         by="currency", direction="backward")
    no_rate = good.loc[good["fx_rate"].isna(), ["record_index"]].assign(check="missing_fx_rate")
    good = good[good["fx_rate"].notna()].sort_values("record_index")
    dup = good.duplicated(subset=PERF_KEY, keep="last")
    dupes = good.loc[dup, ["record_index"]].assign(check="duplicate_key")
    silver = good[~dup].copy()
    del good
    silver["platform"] = "meta"
    silver["org_currency"] = org_currency
    silver["spend_org"] = silver["spend"] * silver["fx_rate"]
    silver["conversion_value_org"] = silver["conversion_value"] * silver["fx_rate"]
    settled_before = pd.Timestamp(dt.date.today() - dt.timedelta(days=LOOKBACK_DAYS))
    silver["settled"] = silver["date"] < settled_before
    silver["connector"] = silver["source"]
    silver["source_batch_id"] = silver["batch_id"]
    silver["breakdown"] = None  # the bench's Meta-like rows are not broken down
    silver["date"] = silver["date"].dt.date
    silver["fx_rate_date"] = silver["fx_rate_date"].dt.date
    for c in ("spend", "conversion_value", "spend_org", "conversion_value_org"):
        silver[c] = silver[c].round(6)
    silver = silver.sort_values(["date", "account_id", "campaign_id"])
    silver_cols = list(sink.defs["silver.ad_performance_daily"].column_names)
    sink.append("silver.ad_performance_daily",
                pa.Table.from_pandas(silver[silver_cols], preserve_index=False))
    q = pd.concat([bad, no_rate, dupes]).merge(
        raw[["org_id", "source", "stream", "batch_id", "record_index", "payload"]],
        on="record_index")
    del raw
    q["reason"] = "record failed check " + q["check"]
    q["quarantined_at"] = pd.Timestamp.now(tz="UTC")
    sink.append("silver.quarantine", pa.Table.from_pandas(q, preserve_index=False))
    gold = silver.groupby(GOLD_GRAIN, as_index=False, sort=False).agg(
        **{c: (c, "last") for c in NAMES}, **{c: (c, "sum") for c in SUMS},
        reach=("reach", "max"), settled=("settled", "all"))
    gold["campaign_status"] = None
    gold["campaign_labels"] = None
    gold = gold.sort_values(["org_id", "date", "platform", "campaign_id"])
    sink.append("gold.performance_daily", pa.Table.from_pandas(gold, preserve_index=False))
    campaign = gold.groupby(CAMPAIGN_GRAIN, as_index=False, sort=True).agg(
        **{c: (c, "first") for c in ("account_name", "campaign_name", "currency",
                                     "org_currency")},
        **{c: (c, "sum") for c in SUMS}, settled=("settled", "all"))
    for c in ("campaign_status", "objective", "budget_type", "budget_amount",
              "budget_amount_org", "start_date", "end_date"):
        campaign[c] = None
    sink.append("gold.campaign_daily", pa.Table.from_pandas(campaign, preserve_index=False))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds, "rows_in": len(bad_json), "rows_silver": len(silver),
        "rows_quarantined": len(q),
        "gold_rows": {"gold.performance_daily": len(gold), "gold.campaign_daily": len(campaign)},
        "gold_spend_org": float(gold["spend_org"].sum()),
        "gold_conversions": float(gold["conversions"].sum()),
        "quarantine_by_check": {k: int(v) for k, v in q["check"].value_counts().sort_index().items()},
    }


def main() -> None:
    kind = sys.argv[1]
    if kind == "generate":
        rows, cache, result_path, profile = (int(sys.argv[2]), Path(sys.argv[3]),
                                             Path(sys.argv[4]), sys.argv[5])
        start = time.perf_counter()
        path = meta_bronze.ensure(rows, cache, profile)
        import polars as pl

        sizes = pl.scan_parquet(path).head(100_000).select(
            pl.col("payload").str.len_bytes().mean()).collect().item()
        result = {"path": str(path), "seconds": time.perf_counter() - start,
                  "mean_payload_bytes": sizes, "file_bytes": path.stat().st_size}
    else:
        bronze, workdir, result_path = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
        workdir.mkdir(parents=True, exist_ok=True)
        if kind == "setup":
            result = setup(bronze, workdir)
        elif kind == "workbench":
            result = run_workbench(bronze, workdir, sample="--sample" in sys.argv)
        elif kind == "floor":
            result = floor(bronze, workdir)
        elif kind == "pandas":
            result = pandas(bronze, workdir)
        else:
            raise SystemExit(f"unknown contender {kind}")
    result_path.write_text(json.dumps(result, default=str, indent=1))


if __name__ == "__main__":
    main()
