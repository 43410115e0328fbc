"""The lake: an Iceberg SQL catalog with namespaces bronze, silver and gold.

Every write is one Iceberg commit (append, or a filtered overwrite that deletes and adds in one
snapshot), so readers see the previous state or the new one, never a mix. A commit that loses an
optimistic-concurrency race to another process is retried on a freshly loaded table; when the
retries run out nothing was written and the caller gets a ``TransientError``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import polars as pl
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.table import Table
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from workbench.errors import NotFoundError, TransientError
from workbench.lake.schemas import TABLES
from workbench.settings import Settings

log = logging.getLogger(__name__)
NAMESPACES = ("bronze", "silver", "gold")


class Lake:
    """The Iceberg catalog of one workbench, with table creation and retried commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        props: dict[str, str] = {"uri": settings.catalog_uri_resolved,
                                 "warehouse": settings.warehouse_resolved}
        if settings.warehouse_resolved.startswith("s3://"):
            props.update({"s3.region": settings.s3_region, "s3.path-style-access": "true"})
            if settings.s3_endpoint:
                props["s3.endpoint"] = settings.s3_endpoint
            if settings.s3_access_key_id:
                props["s3.access-key-id"] = settings.s3_access_key_id
            if settings.s3_secret_access_key:
                props["s3.secret-access-key"] = settings.s3_secret_access_key.get_secret_value()
        else:
            Path(urlparse(settings.warehouse_resolved).path).mkdir(parents=True, exist_ok=True)
        self.catalog = SqlCatalog("workbench", **props)
        self._tables: dict[str, Table] = {}

    # -- tables ---------------------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Create the namespaces and every table of the data contract (idempotent)."""
        for ns in NAMESPACES:
            try:
                self.catalog.create_namespace(ns)
            except NamespaceAlreadyExistsError:
                pass
        for tdef in TABLES.values():
            schema = tdef.schema()
            table = self.catalog.create_table_if_not_exists(
                tdef.name, schema=schema, partition_spec=tdef.partition_spec(schema),
                sort_order=tdef.sort_order(schema),
                properties={"write.parquet.compression-codec": "zstd"})
            missing = set(tdef.column_names) - {f.name for f in table.schema().fields}
            if missing:  # a lake made by an earlier release: add the new columns (nulls in old files)
                with table.update_schema() as update:
                    update.union_by_name(schema)

    def table(self, name: str, refresh: bool = False) -> Table:
        """The Iceberg table ``name`` (``namespace.table``), loaded once per lake and refreshable."""
        if name not in TABLES:
            raise NotFoundError(f"unknown lake table '{name}'; tables: {', '.join(sorted(TABLES))}")
        if refresh or name not in self._tables:
            try:
                self._tables[name] = self.catalog.load_table(name)
            except NoSuchTableError:
                raise NotFoundError(f"table '{name}' does not exist yet; run `workbench init`") from None
        return self._tables[name]

    def location(self, name: str) -> str:
        return self.table(name).location()

    # -- reads ----------------------------------------------------------------------------

    def scan(self, name: str) -> pl.LazyFrame:
        """A lazy Polars scan of the table's current snapshot (filters push down into Iceberg)."""
        return pl.scan_iceberg(self.table(name, refresh=True))

    def read(self, name: str, row_filter: BooleanExpression | str | None = None) -> pl.DataFrame:
        """The rows of a small table (rates, campaigns) matching ``row_filter`` (all by default)."""
        table = self.table(name, refresh=True)
        arrow = table.scan(row_filter=row_filter if row_filter is not None else AlwaysTrue()).to_arrow()
        return pl.from_arrow(arrow)  # type: ignore[return-value]

    def iter_batches(self, name: str, row_filter: BooleanExpression,
                     batch_size: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows matching ``row_filter`` file by file, row group by row group.

        pyiceberg's own batch reader materialises whole files (several at once), which for a
        10M-record bronze batch means gigabytes; files without delete files are read here with
        pyarrow directly, so memory holds one row group. The filter prunes files by their
        statistics and is applied again to each batch.
        """
        import pyarrow.parquet as pq
        from pyiceberg.expressions.visitors import bind
        from pyiceberg.io.pyarrow import expression_to_pyarrow

        table = self.table(name, refresh=True)
        scan = table.scan(row_filter=row_filter)
        tasks = list(scan.plan_files())
        if any(task.delete_files for task in tasks):
            yield from scan.to_arrow_batch_reader()
            return
        columns = list(TABLES[name].column_names)
        predicate = expression_to_pyarrow(bind(table.schema(), scan.row_filter, case_sensitive=True))
        for task in tasks:
            with table.io.new_input(task.file.file_path).open() as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=batch_size, columns=columns):
                    yield from pa.Table.from_batches([batch]).filter(predicate).to_batches()

    def snapshot_id(self, name: str) -> int | None:
        snap = self.table(name, refresh=True).current_snapshot()
        return snap.snapshot_id if snap else None

    # -- writes ---------------------------------------------------------------------------

    def to_arrow(self, name: str, df: pl.DataFrame) -> pa.Table:
        """``df`` as an Arrow table with exactly the lake table's columns and types."""
        tdef = TABLES[name]
        target = tdef.arrow_schema()
        missing = [c for c in tdef.column_names if c not in df.columns]
        if missing:
            raise ValueError(f"frame for {name} lacks columns {missing}")
        casts = []
        for f in target:
            col = pl.col(f.name)
            if pa.types.is_decimal(f.type):
                col = col.cast(pl.Float64).round(f.type.scale).cast(pl.Decimal(f.type.precision, f.type.scale))
            casts.append(col)
        return df.select(casts).to_arrow().cast(target)

    def append(self, name: str, df: pl.DataFrame | pa.Table) -> None:
        data = df if isinstance(df, pa.Table) else self.to_arrow(name, df)
        self._commit(name, lambda t: t.append(data))

    def overwrite(self, name: str, df: pl.DataFrame, where: BooleanExpression) -> None:
        """Replace the rows matching ``where`` with ``df`` in one commit."""
        data = self.to_arrow(name, df)
        self._commit(name, lambda t: t.overwrite(data, overwrite_filter=where))

    def replace(self, name: str, where: BooleanExpression, parts: Callable[[], Iterable[pa.Table]]) -> int:
        """Delete the rows matching ``where`` and append every part, all in one commit.

        ``parts`` is called again on a retry, so it must be re-iterable (a spill, not a stream):
        only one part is in memory at a time. Returns the rows appended.
        """
        appended = 0

        def op(table: Table) -> None:
            nonlocal appended
            appended = 0
            tx = table.transaction()
            tx.delete(delete_filter=where)
            for part in parts():
                if part.num_rows:
                    tx.append(part)
                    appended += part.num_rows
            tx.commit_transaction()

        self._commit(name, op)
        return appended

    def _commit(self, name: str, op: Callable[[Table], Any]) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.commit_retries),
            wait=wait_random_exponential(multiplier=0.05, max=2),
            retry=retry_if_exception_type((CommitFailedException, OperationalError)),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt, warnings.catch_warnings():
                    # an overwrite of a window that holds no rows yet is normal, not news
                    warnings.filterwarnings("ignore", "Delete operation did not match any records")
                    op(self.table(name, refresh=attempt.retry_state.attempt_number > 1))
        except (CommitFailedException, OperationalError) as exc:
            raise TransientError(
                f"writing {name} lost {self.settings.commit_retries} concurrent commit races "
                f"({type(exc).__name__}); nothing was written, run the step again") from exc
        self.table(name, refresh=True)

