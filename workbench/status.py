"""What `workbench status` shows: tables, freshness, quarantine and last runs of one organisation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from workbench.lake.schemas import TABLES
from workbench.oltp import repo

if TYPE_CHECKING:
    from workbench.workspace import Workspace


def workspace_status(ws: Workspace) -> dict[str, pl.DataFrame]:
    lake, db, org = ws.stores.lake, ws.stores.db, ws.org.id
    tables = []
    for name, tdef in TABLES.items():
        lf = lake.scan(name)
        if tdef.org_scoped:
            lf = lf.filter(pl.col("org_id") == org)
        aggs = [pl.len().alias("rows")]
        if "date" in tdef.column_names:
            aggs += [pl.col("date").min().alias("first_date"), pl.col("date").max().alias("last_date")]
        else:
            aggs += [pl.lit(None, pl.Date).alias("first_date"), pl.lit(None, pl.Date).alias("last_date")]
        row = lf.select(aggs).collect().to_dicts()[0]
        tables.append({"table": name, **row, "snapshot_id": lake.snapshot_id(name)})
    conns = {c.id: c for c in repo.list_connections(db, org)}
    fresh = []
    for b in repo.list_batches(db, org):
        fresh.append({"connection": conns[b.connection_id].name if b.connection_id in conns else b.connection_id,
                      "source": b.source, "extracted_at": b.extracted_at, "window_end": b.window_end,
                      "status": b.status, "rows_in": b.rows_in, "rows_silver": b.rows_silver,
                      "rows_quarantined": b.rows_quarantined})
    freshness_schema: dict[str, Any] = {"connection": pl.String, "source": pl.String,
                        "extracted_at": pl.Datetime("us", "UTC"), "window_end": pl.Date,
                        "status": pl.String, "rows_in": pl.Int64, "rows_silver": pl.Int64,
                        "rows_quarantined": pl.Int64}
    freshness = (pl.DataFrame(fresh, schema=freshness_schema)
                 .group_by("connection", "source")
                 .agg(pl.col("extracted_at").max().alias("last_extracted_at"),
                      pl.col("window_end").max().alias("data_through"),
                      pl.len().alias("batches"),
                      (pl.col("status") == "landed").sum().alias("pending_batches"))
                 .sort("connection"))
    quarantine = (lake.scan("silver.quarantine").filter(pl.col("org_id") == org)
                  .group_by("source", "stream", "check").agg(pl.len().alias("rows"))
                  .sort("rows", descending=True).collect())
    runs = pl.DataFrame([{"job": r.job, "status": r.status, "started_at": r.started_at,
                          "finished_at": r.finished_at, "error": r.error}
                         for r in repo.last_runs(db, org)],
                        schema={"job": pl.String, "status": pl.String,
                                "started_at": pl.Datetime("us", "UTC"),
                                "finished_at": pl.Datetime("us", "UTC"), "error": pl.String})
    return {"tables": pl.DataFrame(tables), "freshness": freshness, "quarantine": quarantine,
            "runs": runs}
