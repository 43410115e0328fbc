"""The connector interface: what every source of raw records implements.

A connector reads a reporting window from one configured connection and yields pages of raw
records, each tagged with its stream. Stream names are namespaced by the payload format they
carry (``meta.ad_insights_daily``, ``dv360.report_daily``, ``csv.performance_daily``...), so
the silver layer picks a parser by stream whatever connector produced the record: the synthetic
connector emits the same formats as the real platforms.

The write side (``PlatformWriter``) is separate: it changes one entity (pause, resume, budget)
on an ad platform, in canonical terms the connector translates to the platform's own.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from workbench.errors import TransientError, WorkbenchError


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
    on_credentials: Callable[[dict[str, str]], None] | None = None  # store refreshed tokens


@dataclass(frozen=True)
class CredentialField:
    """A credential a connection needs: asked for by ``workbench connections add``."""

    name: str
    prompt: str
    secret: bool = True
    required: bool = True


@dataclass(frozen=True)
class Account:
    """An account the credentials reach (ad account, advertiser, CRM portal or org)."""

    id: str
    name: str
    currency: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class Gap:
    """Days of a run's window without rows for an account that had delivery in it."""

    account_id: str
    days: tuple[dt.date, ...]

    def describe(self) -> str:
        return f"account {self.account_id}: no rows for {describe_days(self.days)}"


def describe_days(days: tuple[dt.date, ...] | list[dt.date]) -> str:
    """``2026-11-01..03, 2026-11-05``: runs of consecutive days."""
    runs: list[list[dt.date]] = []
    for d in sorted(days):
        if runs and (d - runs[-1][-1]).days == 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ", ".join(r[0].isoformat() if len(r) == 1 else f"{r[0].isoformat()}..{r[-1].day:02d}"
                     if r[0].month == r[-1].month else f"{r[0].isoformat()}..{r[-1].isoformat()}"
                     for r in runs)


class Connector(ABC):
    """Base class of every connector; subclasses set ``name`` and ``streams``."""

    name: ClassVar[str]
    streams: ClassVar[tuple[StreamSpec, ...]]
    default_lookback_days: ClassVar[int] = 0
    #: what the connector can do: "read", "write" (pause/resume/budgets), "async_reports"...
    capabilities: ClassVar[frozenset[str]] = frozenset({"read"})
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()

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

    def accounts(self) -> list[Account]:
        """The accounts this connection reaches (``workbench connections test``)."""
        return []

    def gaps(self, window: Window) -> list[Gap]:
        """Days without rows for accounts that had delivery in ``window`` (after ``read``)."""
        return []

    @property
    def api_calls(self) -> int:
        """Calls made to the platform so far (usage metering)."""
        return 0

    def close(self) -> None:  # noqa: B027 - most connectors hold nothing to release
        """Release network clients."""


# -- write-back ----------------------------------------------------------------------------

WRITE_LEVELS = ("campaign", "ad_group", "ad")
"""Canonical levels a writer acts on: ``campaign`` (Meta campaign, DV360 insertion order, TTD
campaign), ``ad_group`` (Meta ad set, DV360 line item, TTD ad group) and ``ad`` (status only)."""

CENT = Decimal("0.01")


def money(value: Any) -> Decimal:
    """``value`` as a Decimal rounded half-up to cents (how budgets are compared and stored)."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class EntityState:
    """What a platform says about one entity, in canonical terms.

    ``status`` is ``active`` / ``paused`` / ``archived``; ``budget`` is in major units of
    ``currency`` (the account's currency; Meta's minor units and DV360's micros are the
    connector's business), ``None`` with ``budget_type`` ``None`` when the entity has no
    budget of its own (an ad, an ad set under a campaign budget).
    """

    status: str
    budget: Decimal | None = None
    budget_type: str | None = None  # daily / lifetime
    currency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the budget as a number)."""
        budget = None if self.budget is None else float(self.budget)
        return {"status": self.status, "budget": budget, "budget_type": self.budget_type,
                "currency": self.currency}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EntityState:
        budget = data.get("budget")
        return cls(data["status"], None if budget is None else money(budget),
                   data.get("budget_type"), data.get("currency"))


@dataclass(frozen=True)
class WriteResult:
    """The entity before and after a write; ``replayed`` when a retry returned the first result."""

    before: EntityState
    after: EntityState
    replayed: bool = False


class WriteError(WorkbenchError):
    """A platform write failed. ``retry_after`` is the platform's own back-off hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientWriteError(WriteError, TransientError):
    """Worth retrying with the same idempotency key: throttled, timed out, 5xx. The write may
    or may not have been applied; a retry with the same key never applies it twice."""


class PermanentWriteError(WriteError):
    """Retrying cannot help: unknown entity, a change the platform does not allow, a bad value."""


class PlatformWriter(ABC):
    """The write side of one ad platform for one organisation.

    Every write takes an ``idempotency_key``: a call repeated with a key that already succeeded
    returns the first result (``replayed=True``) and changes nothing, so callers retry freely.
    Writes raise ``PermanentWriteError`` or ``TransientWriteError``.
    """

    platform: str

    @abstractmethod
    def read(self, level: str, entity_id: str) -> EntityState:
        """The entity's current state; ``PermanentWriteError`` when it does not exist."""

    @abstractmethod
    def pause(self, level: str, entity_id: str, idempotency_key: str) -> WriteResult:
        """Stop delivery (status ``paused``)."""

    @abstractmethod
    def resume(self, level: str, entity_id: str, idempotency_key: str) -> WriteResult:
        """Restart delivery (status ``active``)."""

    @abstractmethod
    def set_budget(self, level: str, entity_id: str, amount: Decimal,
                   idempotency_key: str) -> WriteResult:
        """Set the entity's budget (same budget type) to ``amount`` major currency units."""
