"""Spill files: parts of a large result parked on local disk until they are committed together.

A step that writes millions of rows parses or aggregates them part by part, spills each part
as Parquet under ``$WORKBENCH_HOME/tmp``, and commits all parts in one Iceberg transaction
(``Lake.replace``); memory holds one part at a time, and a retried commit re-reads the spill.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq


class Spill:
    """A folder of Arrow tables written in order and read back one at a time."""

    def __init__(self, root: Path, label: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
        self.files: list[Path] = []
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        path = self.path / f"part-{len(self.files):05d}.parquet"
        pq.write_table(table, path, compression="lz4")
        self.files.append(path)
        self.rows += table.num_rows

    def parts(self, transform: Callable[[pa.Table], pa.Table] | None = None,
              min_rows: int = 500_000) -> Iterator[pa.Table]:
        """The spilled tables in order, files concatenated up to ``min_rows`` per part (each
        Iceberg append in a transaction re-validates the metadata, so fewer parts commit faster)."""
        group: list[pa.Table] = []
        rows = 0
        for path in self.files:
            table = pq.read_table(path)
            group.append(transform(table) if transform else table)
            rows += group[-1].num_rows
            if rows >= min_rows:
                yield pa.concat_tables(group)
                group, rows = [], 0
        if group:
            yield pa.concat_tables(group)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
