"""The shape every HTTP platform connector shares (Meta, DV360, The Trade Desk, HubSpot, Salesforce).

A platform module defines one ``PlatformConnector`` subclass (client, auth, streams, reading)
and, for ad platforms, one ``HttpPlatformWriter`` subclass (pause, resume, budgets). This base
builds the connection's ``ApiClient`` from its settings (``base_url``, retry policy, the
per-connection rate limiter), keeps refreshed tokens by handing them to the pipeline to store
encrypted, and records which account had rows on which day so the run can report gaps.
"""

from __future__ import annotations

import datetime as dt
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from connectors.base import (
    Account,
    ConnectionConfig,
    Connector,
    EntityState,
    Gap,
    PermanentWriteError,
    PlatformWriter,
    TransientWriteError,
    Window,
    WriteResult,
)
from connectors.http import ApiClient, Auth, RetryPolicy, limiter_for
from workbench.errors import ApiError, FinalApiError, TransientApiError, ValidationError


class Coverage:
    """Which account had report rows on which day, gathered while reading."""

    def __init__(self) -> None:
        self.days: dict[str, set[dt.date]] = defaultdict(set)

    def add(self, account_id: str, day: dt.date | None) -> None:
        if day is not None:
            self.days[str(account_id)].add(day)

    def gaps(self, window: Window) -> list[Gap]:
        """For every account with delivery in ``window``: the days from its first delivery day
        to the window's end that have no row (a skipped day, or a day the platform has not
        reported yet)."""
        out = []
        for account, days in sorted(self.days.items()):
            inside = {d for d in days if window.start <= d <= window.end}
            if not inside:
                continue
            first = min(inside)
            missing = [d for d in Window(first, window.end).dates() if d not in inside]
            if missing:
                out.append(Gap(account, tuple(missing)))
        return out


def chunks(window: Window, days: int) -> Iterator[Window]:
    """``window`` cut into consecutive windows of at most ``days`` days."""
    start = window.start
    while start <= window.end:
        end = min(window.end, start + dt.timedelta(days=max(1, days) - 1))
        yield Window(start, end)
        start = end + dt.timedelta(days=1)


class PlatformConnector(Connector):
    """Base of the connectors that call a platform's HTTP API.

    Subclasses set ``name``, ``streams``, ``default_base_url``, ``default_rate`` (requests per
    second the limiter allows; the platform's own signals slow it further), ``credential_fields``
    and implement ``make_auth``, ``read`` and ``accounts``; ``check`` reads platform-specific
    throttle signals from every response.
    """

    default_base_url: ClassVar[str]
    default_rate: ClassVar[float] = 5.0
    default_burst: ClassVar[int] = 5
    required_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        self.coverage = Coverage()
        self._client: ApiClient | None = None
        missing = [f.name for f in self.credential_fields
                   if f.required and not config.credentials.get(f.name)]
        if missing:
            raise ValidationError(
                f"connection '{config.connection_id}' ({self.name}) has no {', '.join(missing)}: "
                "add them with workbench connections add ... --update")
        absent = [s for s in self.required_settings if not config.settings.get(s)]
        if absent:
            raise ValidationError(f"connection '{config.connection_id}' ({self.name}) needs the "
                                  f"setting(s) {', '.join(absent)} (--setting {absent[0]}=...)")

    def number_setting(self, name: str, default: float, minimum: float = 0) -> float:
        """A numeric setting (``chunk_days``, ``poll_seconds``...), checked: a value that is not
        a number of at least ``minimum`` is a ``ValidationError`` naming the setting."""
        value = self.config.settings.get(name)
        value = default if value in (None, "") else value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not number >= minimum:
            raise ValidationError(f"connection '{self.config.connection_id}' ({self.name}): the setting {name} "
                                  f"must be a number of at least {minimum:g}, not {value!r}")
        return number

    # -- windows and state ---------------------------------------------------------------------

    def resolve_window(self, requested: Window | None, today: dt.date) -> Window:
        """The requested window, or by default: everything after the last run's window plus the
        restatement look-back (``lookback_days``) before it, up to today. A first run reads the
        look-back only, or from the ``start_date`` setting when one is set."""
        if requested is not None:
            return requested
        lookback = max(self.config.lookback_days, 1)
        start = today - dt.timedelta(days=lookback - 1)
        last = self.config.state.get("last_window_end")
        if last:
            start = min(start, dt.date.fromisoformat(str(last)) + dt.timedelta(days=1))
        elif self.config.settings.get("start_date"):
            start = min(start, dt.date.fromisoformat(str(self.config.settings["start_date"])))
        return Window(min(start, today), today)

    def next_state(self, window: Window) -> dict[str, Any]:
        """After a successful read: the window's end, kept per stream as well."""
        previous = dict(self.config.state.get("streams") or {})
        for spec in self.streams:
            previous[spec.name] = {"last_window_end": window.end.isoformat()}
        return {"last_window_end": window.end.isoformat(), "streams": previous}

    # -- the client --------------------------------------------------------------------------

    @property
    def setting(self) -> Any:
        return self.config.settings.get

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            self._client = self.make_client()
        return self._client

    def make_client(self) -> ApiClient:
        settings = self.config.settings
        limiter = limiter_for(self.config.connection_id,
                              float(settings.get("requests_per_second", self.default_rate)),
                              int(settings.get("burst", self.default_burst)))
        return ApiClient(self.name, str(settings.get("base_url") or self.default_base_url),
                         auth=self.make_auth(), limiter=limiter,
                         policy=RetryPolicy.from_settings(settings), check=self.check,
                         secrets=[v for f in self.credential_fields if f.secret
                                  for v in [self.config.credentials.get(f.name)] if v])

    @abstractmethod
    def make_auth(self) -> Auth:
        """The connection's credentials as an ``Auth``."""

    def check(self, response: Any) -> ApiError | None:
        """Platform signals in a response (usage headers, error codes); None to use the status."""
        return None

    def store_credentials(self, update: dict[str, str]) -> None:
        """Keep refreshed tokens: the pipeline stores them encrypted with the connection."""
        if self.config.on_credentials is not None:
            self.config.on_credentials(update)

    @property
    def api_calls(self) -> int:
        return self._client.calls if self._client is not None else 0

    def gaps(self, window: Window) -> list[Gap]:
        return self.coverage.gaps(window)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @abstractmethod
    def accounts(self) -> list[Account]:
        """The accounts (ad accounts, advertisers, portals, orgs) the credentials reach."""

    def writer(self, journal: WriteJournal) -> HttpPlatformWriter:
        """The write side of this connection (connectors with the "write" capability)."""
        raise PermanentWriteError(f"{self.name} connections cannot change entities on the platform")


class HttpPlatformWriter(PlatformWriter):
    """Write-back through a ``PlatformConnector``'s client, with an idempotency journal.

    Subclasses implement ``read`` and ``apply`` (send the change, return the state after).
    Each write reads the entity first (the ``before``), skips the call when the entity already
    has the wanted value (a retry after a lost answer changes nothing), and records the result
    under its idempotency key so a repeated key returns the first result.
    """

    def __init__(self, connector: PlatformConnector, journal: WriteJournal) -> None:
        self.connector = connector
        self.journal = journal
        self.platform = connector.name

    @property
    def client(self) -> ApiClient:
        return self.connector.client

    @abstractmethod
    def apply(self, level: str, entity_id: str, before: EntityState, change: dict[str, Any]) -> EntityState:
        """Send ``change`` (``{"status": ...}`` or ``{"budget": Decimal}``); return the state after."""

    def pause(self, level: str, entity_id: str, idempotency_key: str) -> WriteResult:
        return self._write(level, entity_id, {"status": "paused"}, idempotency_key)

    def resume(self, level: str, entity_id: str, idempotency_key: str) -> WriteResult:
        return self._write(level, entity_id, {"status": "active"}, idempotency_key)

    def set_budget(self, level: str, entity_id: str, amount: Decimal,
                   idempotency_key: str) -> WriteResult:
        if amount <= 0:
            raise PermanentWriteError(f"a budget must be positive, not {amount}")
        return self._write(level, entity_id, {"budget": amount}, idempotency_key)

    def _write(self, level: str, entity_id: str, change: dict[str, Any], key: str) -> WriteResult:
        entry = self.journal.get(key, level, entity_id, change)
        if entry is not None and entry.done:
            return WriteResult(entry.result.before, entry.result.after, replayed=True)
        try:
            current = self.read(level, entity_id)
            # a pending entry is an attempt whose answer never came: its ``before`` is the true one
            before = entry.result.before if entry is not None else current
            if "budget" in change and current.budget is None:
                raise PermanentWriteError(
                    f"{self.platform} {level} {entity_id} has no budget of its own to change")
            if entry is None:
                self.journal.put(key, level, entity_id, change, WriteResult(before, before), done=False)
            wanted = (current.status == change["status"]) if "status" in change else (
                current.budget == change["budget"])
            after = current if wanted else self.apply(level, entity_id, current, change)
        except TransientApiError as exc:
            raise TransientWriteError(str(exc), retry_after=exc.retry_after) from None
        except FinalApiError as exc:
            raise PermanentWriteError(str(exc)) from None
        result = WriteResult(before, after)
        self.journal.put(key, level, entity_id, change, result, done=True)
        return result


@dataclass(frozen=True)
class JournalEntry:
    """A journalled write: ``done`` once the platform confirmed it; pending while in flight."""

    result: WriteResult
    done: bool


class WriteJournal:
    """Results of platform writes by idempotency key (the OLTP ``platform_writes`` table).

    A write is journalled as pending (with the state before it) before it is sent, and done
    after; a retry of a pending key keeps the first ``before``, so a change whose answer was
    lost still reports what the entity was before it."""

    def __init__(self, db: Any, org_id: str, platform: str) -> None:
        self.db, self.org_id, self.platform = db, org_id, platform

    def get(self, key: str, level: str, entity_id: str, change: dict[str, Any]) -> JournalEntry | None:
        """The entry of ``key``; an error when the key was used for another change."""
        from workbench.oltp.models import PlatformWrite

        with self.db.session() as s:
            row = s.get(PlatformWrite, (self.org_id, key))
            if row is None:
                return None
            if (row.platform, row.level, row.entity_id, row.change) != (
                    self.platform, level, entity_id, {k: str(v) for k, v in change.items()}):
                raise PermanentWriteError(
                    f"idempotency key '{key}' was already used for another change "
                    f"({row.platform} {row.level} {row.entity_id} {row.change}); use a new key")
            return JournalEntry(WriteResult(EntityState.from_dict(row.before), EntityState.from_dict(row.after)),
                                row.status == "done")

    def put(self, key: str, level: str, entity_id: str, change: dict[str, Any], result: WriteResult,
            *, done: bool) -> None:
        from workbench.oltp.models import PlatformWrite

        with self.db.session() as s:
            s.merge(PlatformWrite(org_id=self.org_id, idempotency_key=key, platform=self.platform,
                                  level=level, entity_id=entity_id,
                                  change={k: str(v) for k, v in change.items()},
                                  before=result.before.to_dict(), after=result.after.to_dict(),
                                  status="done" if done else "pending"))
