"""The CSV connector: lands the rows of a user's performance export file in bronze.

The file is checked before any row is read: it exists, is not empty, decodes with its encoding,
and its headers map to the canonical columns (the rules live with the parser, in
``workbench.medallion.parsers.csv_rows``). Each record is the row as a JSON object of all its
columns as text (header -> cell), plus ``__line``, the row's line number in the file, and
``__extra``, the cells beyond the header when some are not blank. The mapping is not repeated
per row: the parser reads it from the connection settings.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from connectors.base import ConnectionConfig, Connector, Page, StreamSpec, Window
from workbench.errors import ValidationError
from workbench.medallion.parsers.csv_rows import column_problems, parse_date_text, resolve_columns

STREAM = "csv.performance_daily"
PAGE_SIZE = 5_000
_SAMPLE_CHARS = 64 * 1024


class CsvMappingError(ValidationError, ValueError):
    """The file or the connection settings cannot be read as a performance export.

    ``problems`` holds one sentence per problem; ``path`` is the file.
    """

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        if len(problems) == 1:
            message = f"cannot load {self.path}: {problems[0]}"
        else:
            message = f"cannot load {self.path}:\n" + "\n".join(f"- {p}" for p in problems)
        super().__init__(message)


@dataclass(frozen=True)
class CsvSettings:
    """The settings of a CSV connection (the parser reads the same keys)."""

    path: Path  #: the export file
    mapping: dict[str, str] = field(default_factory=dict)  #: canonical column -> file header
    platform: str = "csv"  #: platform of the rows when the file has no platform column
    currency: str | None = None  #: ISO code of the amounts when the file has no currency column
    date_format: str | None = None  #: strptime format; default YYYY-MM-DD or YYYY/MM/DD
    delimiter: str | None = None  #: default: detected among comma, semicolon and tab
    encoding: str | None = None  #: default utf-8-sig, or utf-16 when the file starts with its BOM
    decimal: str = "."  #: decimal mark of numbers: '.' or ','

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> CsvSettings:
        path = settings.get("path")
        if not isinstance(path, (str, Path)) or not str(path).strip():
            raise CsvMappingError("(no path)", ["the connection needs a `path` setting"])
        mapping = settings.get("mapping") or {}
        if not isinstance(mapping, Mapping):
            raise CsvMappingError(path, ["setting `mapping` must map canonical names to headers"])
        delimiter = settings.get("delimiter")
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            message = f"setting `delimiter` must be one character, not {delimiter!r}"
            raise CsvMappingError(path, [message])
        return cls(
            Path(path).expanduser(), dict(mapping), settings.get("platform") or "csv",
            settings.get("currency"), settings.get("date_format"), delimiter,
            settings.get("encoding"), settings.get("decimal") or ".",
        )


@dataclass(frozen=True)
class _FileInfo:
    """What the checks found out about the file."""

    encoding: str
    delimiter: str
    headers: list[str]
    columns: dict[str, str]
    sha256: str
    size: int

    @property
    def date_index(self) -> int:
        return self.headers.index(self.columns["date"])


class CsvConnector(Connector):
    """Reads one CSV export file; its only stream is ``csv.performance_daily``."""

    name: ClassVar[str] = "csv"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec(STREAM, "rows of a performance export file, one record per row"),
    )

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        self.settings = CsvSettings.from_mapping(config.settings)
        self._info: _FileInfo | None = None
        self._counts: dict[str, int] = {}
        self._dates: dict[str, dt.date | None] = {}

    def resolve_window(self, requested: Window | None, today: dt.date) -> Window:
        """The requested window, or else the first to the last date found in the file."""
        if requested is not None:
            return requested
        dates: set[dt.date] = set()
        examples: list[str] = []
        rows = 0
        for _, row in self._rows():
            rows += 1
            text, date = self._row_date(row)
            if date is not None:
                dates.add(date)
            elif text.strip() and len(examples) < 3:
                examples.append(text)
        if not rows:
            raise CsvMappingError(self.settings.path, ["the file has a header but no data rows"])
        if not dates:
            column = self._check().columns["date"]
            values = ", ".join(repr(e) for e in examples) or "none"
            expected = (
                f"format '{self.settings.date_format}'" if self.settings.date_format else
                "YYYY-MM-DD or YYYY/MM/DD; set date_format for other layouts, e.g. '%d/%m/%Y' "
                "for 31/12/2024 or '%m/%d/%Y' for 12/31/2024")
            message = (f"no row has a readable date in column '{column}' (values such as "
                       f"{values}); expected {expected}")
            raise CsvMappingError(self.settings.path, [message])
        return Window(min(dates), max(dates))

    def read(self, window: Window) -> Iterator[Page]:
        """Yield the file's rows in pages of at most ``PAGE_SIZE`` records.

        Rows whose date parses and lies outside ``window`` are skipped, which only happens when
        a window was requested explicitly: the default window spans all the file's dates. Rows
        whose date does not parse are landed, for the parser to quarantine with a reason. Blank
        rows are not records.
        """
        headers = self._check().headers
        page: list[dict[str, Any]] = []
        counts = {"data": 0, "landed": 0, "skipped": 0}
        for line, row in self._rows():
            counts["data"] += 1
            _, date = self._row_date(row)
            if date is not None and not window.start <= date <= window.end:
                counts["skipped"] += 1
                continue
            record: dict[str, Any] = dict(zip(headers, row, strict=False))  # short rows are quarantined later
            record["__line"] = line
            extra = row[len(headers):]
            if any(cell.strip() for cell in extra):
                record["__extra"] = extra
            page.append(record)
            counts["landed"] += 1
            if len(page) == PAGE_SIZE:
                yield Page(STREAM, page)
                page = []
        if page:
            yield Page(STREAM, page)
        self._counts = counts

    def next_state(self, window: Window) -> dict[str, Any]:
        """The window end, the file's sha256 and size, and the row counts of the last read."""
        info = self._check()
        counts = {f"{k}_rows": v for k, v in self._counts.items()}
        return {**super().next_state(window), "file_sha256": info.sha256,
                "file_size": info.size, **counts}

    def _check(self) -> _FileInfo:
        """Validate the file and the settings, once, before anything is read into bronze."""
        if self._info is None:
            self._info = _inspect(self.settings, self.config.settings)
        return self._info

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of every data row that is not blank."""
        info = self._check()
        with self.settings.path.open(encoding=info.encoding, newline="") as f:
            reader = csv.reader(f, delimiter=info.delimiter)
            next(reader, None)
            start = reader.line_num + 1
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield start, row
                start = reader.line_num + 1

    def _row_date(self, row: list[str]) -> tuple[str, dt.date | None]:
        """The date cell of ``row`` and its date (None when it does not parse)."""
        index = self._check().date_index
        text = row[index] if index < len(row) else ""
        # dates repeat on many rows: parse each distinct text once
        if text not in self._dates:
            self._dates[text] = parse_date_text(text, self.settings.date_format)
        return text, self._dates[text]


def _inspect(settings: CsvSettings, raw_settings: Mapping[str, Any]) -> _FileInfo:
    path = settings.path
    if not path.exists():
        raise CsvMappingError(path, ["the file does not exist; check the `path` setting"])
    if not path.is_file():
        raise CsvMappingError(path, ["the path is not a file"])
    with path.open("rb") as f:
        head = f.read(4)
    encoding = settings.encoding or (
        "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig")
    sha256, sample = _scan(path, encoding)
    if not sample.strip():
        raise CsvMappingError(path, ["the file is empty: it has no header row and no data"])
    delimiter = settings.delimiter or _sniff_delimiter(sample)
    header_row = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    if not any(h.strip() for h in header_row):
        raise CsvMappingError(path, ["the first line is blank; it must hold the column headers"])
    headers = _unique(header_row)
    problems = column_problems(headers, raw_settings)
    columns = resolve_columns(headers, settings.mapping)
    problems += [
        f"the file has several columns named '{header}' (used for {canonical}); rename them so "
        "that each header is unique"
        for canonical, header in columns.items() if f"{header} (2)" in headers]
    if problems:
        raise CsvMappingError(path, problems)
    return _FileInfo(encoding, delimiter, headers, columns, sha256, path.stat().st_size)


def _scan(path: Path, encoding: str) -> tuple[str, str]:
    """The file's sha256 and its first characters, having checked that all of it decodes."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise CsvMappingError(path, [f"unknown encoding {encoding!r}"]) from None
    sha, sample, offset = hashlib.sha256(), io.StringIO(), 0
    hint = "set the `encoding` setting, e.g. 'latin-1', 'cp1252' or 'utf-16'"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as e:
                message = f"the file is not valid {encoding} (byte {offset + e.start}); {hint}"
                raise CsvMappingError(path, [message]) from None
            if sample.tell() < _SAMPLE_CHARS:
                sample.write(text[:_SAMPLE_CHARS])
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        message = f"the file is not valid {encoding} at its end; {hint}"
        raise CsvMappingError(path, [message]) from None
    return sha.hexdigest(), sample.getvalue()


def _sniff_delimiter(sample: str) -> str:
    """Comma, semicolon or tab: what csv.Sniffer finds, else the most frequent in the header."""
    header = sample.splitlines()[0]
    try:
        found = csv.Sniffer().sniff(sample[:16_384], delimiters=",;\t").delimiter
        if found in header:
            return found
    except csv.Error:
        pass
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _unique(headers: list[str]) -> list[str]:
    """Headers usable as JSON keys: blank ones named by position, repeated ones numbered."""
    seen: dict[str, int] = {}
    out = []
    for i, header in enumerate(headers):
        name = header if header.strip() else f"(column {i + 1})"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out
