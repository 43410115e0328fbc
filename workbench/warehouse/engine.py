"""The query engine over gold: ``query(sql, params) -> polars.DataFrame`` in ClickHouse SQL.

Statements name lake tables (``gold.performance_daily``); one resolver maps each name to the
engine's source. The embedded engine is chDB in memory, reading the Iceberg tables with
``icebergLocal()``: one connection per process (a fresh one costs ~30 ms and loses caches), no
data folder, so any number of processes can read at once. Values are always bound as
``{name:Type}`` parameters, never formatted into SQL.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlparse

import polars as pl

from workbench.errors import QueryError
from workbench.lake.catalog import Lake
from workbench.lake.schemas import TABLES
from workbench.warehouse.guard import ORG_PARAM, check_params, check_statement, rewrite_tables

_CONN_LOCK = threading.Lock()
_CONN: Any = None


def _connection() -> Any:
    """The process's in-memory chDB connection (created on first use)."""
    global _CONN
    if _CONN is None:
        import chdb

        _CONN = chdb.connect(":memory:")
    return _CONN


@contextmanager
def _engine_cwd() -> Iterator[None]:
    """Run a statement with the process in ``/``, then return to where it was.

    Embedded ClickHouse checks at query time that an ``icebergLocal()`` path lies inside its
    user-files folder, which for chDB is the process's working directory (setting
    ``user_files_path`` does not change that check; measured with chDB 4.4). The warehouse lives
    under WORKBENCH_HOME, wherever the notebook or job was started, so statements run from
    ``/``. Only lake paths reach the engine: user SQL cannot name files (guard.py).
    """
    previous = os.getcwd()
    os.chdir("/")
    try:
        yield
    finally:
        os.chdir(previous)


_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0",
                          "\b": "\\b", "\f": "\\f"})


def _param_value(value: Any) -> Any:
    """A Python value as chDB expects a query parameter.

    ClickHouse reads parameter values in its escaped text format (as in TSV), so a backslash
    in a string would start an escape sequence ('Bra\\x6ed' would become 'Brand') and a newline
    would end the value: both are escaped, so every string means itself.
    """
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_array_item(v) for v in value) + "]"
    return value


def _array_item(value: Any) -> str:
    """One element of an array parameter, written as a ClickHouse literal (strings quoted)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_array_item(v) for v in value) + "]"
    text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else (
        value.isoformat() if isinstance(value, dt.date) else str(value))
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Warehouse(Protocol):
    """What every query-engine backend offers."""

    def query(self, sql: str, params: dict[str, Any] | None = None, *, org: str | None = None,
              trusted: bool = False) -> pl.DataFrame: ...


class TableResolver:
    """Maps a lake table name to the embedded engine's source for it."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def source(self, name: str, org_scoped: bool) -> str:
        location = self.lake.location(name)
        parsed = urlparse(location)
        if parsed.scheme in ("", "file"):
            path = parsed.path.replace("\\", "\\\\").replace("'", "\\'")
            fn = f"icebergLocal('{path}')"
        else:
            raise QueryError(f"the embedded engine reads local warehouses only; {name} is at "
                             f"{parsed.scheme}:// (configure a ClickHouse server for object storage)")
        if org_scoped and TABLES[name].org_scoped:
            return f"(SELECT * FROM {fn} WHERE org_id = {{{ORG_PARAM}:String}})"
        return f"(SELECT * FROM {fn})"


class ChdbWarehouse:
    """The embedded ClickHouse engine (chDB in memory) over the lake's Iceberg tables."""

    def __init__(self, lake: Lake) -> None:
        self.resolver = TableResolver(lake)

    def query(self, sql: str, params: dict[str, Any] | None = None, *, org: str | None = None,
              trusted: bool = False) -> pl.DataFrame:
        """Run ``sql`` and return a Polars frame.

        With ``org``, every lake table is reduced to that organisation's rows. ``trusted``
        statements (generated by the workbench itself) skip the user-SQL checks.
        """
        params = dict(params or {})
        if not trusted:
            check_params(params)
            check_statement(sql, set(TABLES))
            if org is None:
                raise QueryError("user SQL needs an organisation to run in")
        if org is not None:
            params[ORG_PARAM] = org
        final = rewrite_tables(sql, lambda name: self.resolver.source(name, org is not None)
                               if name in TABLES else "")
        with _CONN_LOCK, _engine_cwd():
            try:
                result = _connection().query(final, "ArrowTable",
                                             params={k: _param_value(v) for k, v in params.items()})
            except Exception as exc:  # chDB raises its own error type for every engine error
                message = str(exc).split("Stack trace")[0].strip()
                raise QueryError(f"the query engine refused the statement: {message}") from None
        return pl.from_arrow(result)  # type: ignore[return-value]
