"""The connector interface: what every source of raw records implements.

A connector reads a reporting window from one configured connection and yields pages of raw
records, each tagged with its stream. Stream names are namespaced by the payload format they
carry (``meta.ad_insights_daily``, ``dv360.report_daily``, ``csv.performance_daily``...), so
the silver layer picks a parser by stream whatever connector produced the record: the synthetic
connector emits the same formats as the real platforms.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Window:
    """An inclusive range of reporting dates."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]


@dataclass(frozen=True)
class StreamSpec:
    """A stream a connector can produce: its name, and whether rows are dated per day."""

    name: str
    description: str
    daily: bool = True


@dataclass
class Page:
    """A page of raw records of one stream, exactly as the source returned them.

    A record is a dict (serialised to JSON text in bronze) or already JSON text.
    """

    stream: str
    records: list[Any]


@dataclass
class ConnectionConfig:
    """Everything a connector instance needs about the connection it reads."""

    org_id: str
    connection_id: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)
    lookback_days: int = 0
    org_currency: str = "USD"
    org_timezone: str = "UTC"


class Connector(ABC):
    """Base class of every connector; subclasses set ``name`` and ``streams``."""

    name: ClassVar[str]
    streams: ClassVar[tuple[StreamSpec, ...]]
    default_lookback_days: ClassVar[int] = 0

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config

    def resolve_window(self, requested: Window | None, today: dt.date) -> Window:
        """The window to read: the requested one, or by default the look-back days up to today."""
        if requested is not None:
            return requested
        days = max(self.config.lookback_days, 1)
        return Window(today - dt.timedelta(days=days - 1), today)

    @abstractmethod
    def read(self, window: Window) -> Iterator[Page]:
        """Yield pages of raw records for the window."""

    def next_state(self, window: Window) -> dict[str, Any]:
        """Incremental state to store after a successful read of ``window``."""
        return {"last_window_end": window.end.isoformat()}
