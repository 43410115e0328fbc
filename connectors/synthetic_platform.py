"""The synthetic platforms' write side: what pause, resume and budget calls would do, recorded.

Until the Meta, DV360 and The Trade Desk writers exist (and always in tests), platform actions
run here. One SQLite file per organisation under the workbench home
(``synthetic_platform/<org>.sqlite``) holds, per platform, the entities' current state, every
write request it was asked (time, operation, entity, parameters, idempotency key, outcome,
before/after or error) and the faults queued by tests. Each write is one ``BEGIN IMMEDIATE``
transaction, so the CLI, the scheduler and a notebook see and change the same state, and two
calls with the same idempotency key apply once even when they race.

Where an entity's first state comes from: the organisation's ``silver.campaigns`` row (status,
budget, budget type, currency), read once and then owned here. Silver is what the rules saw,
holds every connection's campaigns whatever their flight, and needs no connection settings;
the synthetic world would have to be rebuilt from the connection's seed and ``as_of`` and
searched flight by flight. Ad groups and ads come from ``silver.ad_performance_daily`` and take
their campaign's status, with no budget of their own. ``seed_entity`` puts any state directly
(tests, demos). Reads are not recorded; only writes are "requests".
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from connectors.base import (
    WRITE_LEVELS,
    EntityState,
    PermanentWriteError,
    PlatformWriter,
    TransientWriteError,
    WriteError,
    WriteResult,
    money,
)

if TYPE_CHECKING:
    from workbench.lake.catalog import Lake
    from workbench.stores import Stores

PLATFORMS = ("meta", "dv360", "ttd")
_ORG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    platform TEXT NOT NULL, level TEXT NOT NULL, entity_id TEXT NOT NULL,
    status TEXT NOT NULL, budget TEXT, budget_type TEXT, currency TEXT,
    source TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (platform, level, entity_id));
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, platform TEXT NOT NULL,
    op TEXT NOT NULL, level TEXT NOT NULL, entity_id TEXT NOT NULL, params TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, outcome TEXT NOT NULL, before TEXT, after TEXT, error TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS requests_applied_key
    ON requests (platform, idempotency_key) WHERE outcome = 'applied';
CREATE TABLE IF NOT EXISTS faults (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, platform TEXT NOT NULL, kind TEXT NOT NULL,
    after_apply INTEGER NOT NULL, message TEXT NOT NULL);
"""


@dataclass(frozen=True)
class PlatformRequest:
    """One write the synthetic platform was asked: ``outcome`` applied / replayed / failed."""

    seq: int
    at: dt.datetime
    platform: str
    op: str
    level: str
    entity_id: str
    params: dict[str, Any]
    idempotency_key: str
    outcome: str
    before: EntityState | None
    after: EntityState | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["before"] = None if self.before is None else self.before.to_dict()
        out["after"] = None if self.after is None else self.after.to_dict()
        return out


class SyntheticPlatform(PlatformWriter):
    """The synthetic ``platform`` (meta, dv360, ttd) of one organisation, persisted in ``path``."""

    def __init__(self, path: Path | str, org_id: str, platform: str, lake: Lake | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        if platform not in PLATFORMS:
            raise PermanentWriteError(f"the synthetic platform has no '{platform}'; choose from "
                                      f"{', '.join(PLATFORMS)}")
        self.path, self.org_id, self.platform, self.lake = Path(path), org_id, platform, lake
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
        finally:
            conn.close()

    @classmethod
    def for_stores(cls, platform: str, stores: Stores, org_id: str) -> SyntheticPlatform:
        """The organisation's synthetic ``platform``, stored under the workbench home."""
        if not _ORG.match(org_id):
            raise PermanentWriteError(f"'{org_id}' is not an organisation id")
        path = stores.settings.home / "synthetic_platform" / f"{org_id}.sqlite"
        return cls(path, org_id, platform, stores.lake)

    # -- the PlatformWriter interface --------------------------------------------------------

    def read(self, level: str, entity_id: str) -> EntityState:
        self._ensure(level, entity_id)
        with self._tx() as conn:
            state = self._state(conn, level, entity_id)
        if state is None:
            raise self._unknown(level, entity_id)
        return state

    def pause(self, level: str, entity_id: str, idempotency_key: str) -> WriteResult:
        return self._write("pause", level, entity_id, idempotency_key, {},
                           lambda s: _with_status(s, "paused"))

    def resume(self, level: str, entity_id: str, idempotency_key: str) -> WriteResult:
        return self._write("resume", level, entity_id, idempotency_key, {},
                           lambda s: _with_status(s, "active"))

    def set_budget(self, level: str, entity_id: str, amount: Decimal,
                   idempotency_key: str) -> WriteResult:
        target = money(amount)
        return self._write("set_budget", level, entity_id, idempotency_key,
                           {"amount": str(target)}, lambda s: _with_budget(s, level, target))

    # -- for tests and for showing what happened --------------------------------------------

    def seed_entity(self, level: str, entity_id: str, state: EntityState) -> None:
        """Put an entity's state directly (no request is recorded)."""
        _check_level(level)
        with self._tx() as conn:
            self._put(conn, level, entity_id, state, "seeded", replace=True)

    def fail_next(self, kind: Literal["transient", "permanent"] = "transient", *,
                  message: str | None = None, times: int = 1, after_apply: bool = False) -> None:
        """Make the next ``times`` writes fail. ``after_apply``: apply the write, then fail
        transiently (a timeout after the platform acted, the ambiguous case retries must handle)."""
        if kind not in ("transient", "permanent"):
            raise ValueError("kind is 'transient' or 'permanent'")
        text = message or ("injected fault: the platform timed out" if kind == "transient"
                           else "injected fault: the platform refused the change")
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO faults (platform, kind, after_apply, message) VALUES (?, ?, ?, ?)",
                [(self.platform, kind, int(after_apply), text)] * times)

    def requests(self) -> list[PlatformRequest]:
        """Every write this platform was asked, oldest first."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM requests WHERE platform = ? ORDER BY seq",
                                (self.platform,)).fetchall()
        return [PlatformRequest(
            r["seq"], dt.datetime.fromisoformat(r["at"]), r["platform"], r["op"], r["level"],
            r["entity_id"], json.loads(r["params"]), r["idempotency_key"], r["outcome"],
            _state_json(r["before"]), _state_json(r["after"]), r["error"]) for r in rows]

    # -- internals ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def _write(self, op: str, level: str, entity_id: str, key: str, params: dict[str, Any],
               change: Callable[[EntityState], EntityState]) -> WriteResult:
        _check_level(level)
        if not key:
            raise PermanentWriteError("a write needs an idempotency key")
        self._ensure(level, entity_id)
        error: WriteError | None = None
        result: WriteResult | None = None
        with self._tx() as conn:
            fault = conn.execute("SELECT * FROM faults WHERE platform = ? ORDER BY seq LIMIT 1",
                                 (self.platform,)).fetchone()
            if fault is not None:
                conn.execute("DELETE FROM faults WHERE seq = ?", (fault["seq"],))
            record = _Recorder(conn, self, op, level, entity_id, params, key)
            prior = conn.execute(
                "SELECT * FROM requests WHERE platform = ? AND idempotency_key = ? "
                "AND outcome = 'applied'", (self.platform, key)).fetchone()
            state = self._state(conn, level, entity_id)
            if fault is not None and not fault["after_apply"]:
                error = (TransientWriteError if fault["kind"] == "transient"
                         else PermanentWriteError)(fault["message"])
            elif prior is not None:
                if (prior["op"], prior["level"], prior["entity_id"], json.loads(prior["params"])) != (
                        op, level, entity_id, params):
                    error = PermanentWriteError(
                        f"idempotency key {key} was already used for {prior['op']} of "
                        f"{prior['level']} {prior['entity_id']}; a new request needs a new key")
                else:
                    before, after = _state_json(prior["before"]), _state_json(prior["after"])
                    assert before is not None and after is not None
                    result = WriteResult(before, after, replayed=True)
            elif state is None:
                error = self._unknown(level, entity_id)
            else:
                try:
                    new = change(state)
                except PermanentWriteError as exc:
                    error = exc
                else:
                    self._put(conn, level, entity_id, new, "written", replace=True)
                    result = WriteResult(state, new)
            if fault is not None and result is not None:
                error = TransientWriteError(fault["message"])
            record(result, error)
        if error is not None:
            raise error
        assert result is not None
        return result

    def _state(self, conn: sqlite3.Connection, level: str, entity_id: str) -> EntityState | None:
        row = conn.execute("SELECT * FROM entities WHERE platform = ? AND level = ? AND entity_id = ?",
                           (self.platform, level, entity_id)).fetchone()
        if row is None:
            return None
        return EntityState(row["status"], None if row["budget"] is None else Decimal(row["budget"]),
                           row["budget_type"], row["currency"])

    def _put(self, conn: sqlite3.Connection, level: str, entity_id: str, state: EntityState,
             source: str, *, replace: bool) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        budget = None if state.budget is None else str(money(state.budget))
        conn.execute(f"{verb} INTO entities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (self.platform, level, entity_id, state.status, budget, state.budget_type,
                      state.currency, source, self.clock().isoformat()))

    def _ensure(self, level: str, entity_id: str) -> None:
        """Load an entity seen for the first time from silver (outside the write lock)."""
        _check_level(level)
        with self._tx() as conn:
            if self._state(conn, level, entity_id) is not None:
                return
        state = self._from_silver(level, entity_id)
        if state is not None:
            with self._tx() as conn:
                self._put(conn, level, entity_id, state, "silver", replace=False)

    def _from_silver(self, level: str, entity_id: str) -> EntityState | None:
        if self.lake is None:
            return None
        import polars as pl

        org, plat = pl.col("org_id") == self.org_id, pl.col("platform") == self.platform
        campaign_id = entity_id
        if level != "campaign":
            column = "ad_group_id" if level == "ad_group" else "ad_id"
            found = (self.lake.scan("silver.ad_performance_daily")
                     .filter(org & plat & (pl.col(column) == entity_id))
                     .select("campaign_id").head(1).collect())
            if found.is_empty():
                return None
            campaign_id = found.item()
        rows = (self.lake.scan("silver.campaigns")
                .filter(org & plat & (pl.col("campaign_id") == campaign_id))
                .sort("updated_at", nulls_last=False).tail(1).collect())
        if rows.is_empty():
            return EntityState("active") if level != "campaign" else None
        row = rows.row(0, named=True)
        if level != "campaign":
            return EntityState(row["status"] or "active")
        budget = row["budget_amount"]
        return EntityState(row["status"] or "active", None if budget is None else money(budget),
                           row["budget_type"] if budget is not None else None, row["currency"])

    def _unknown(self, level: str, entity_id: str) -> PermanentWriteError:
        return PermanentWriteError(
            f"{self.platform} has no {level} '{entity_id}' for '{self.org_id}' (not in silver; "
            "ingest the connection first, or seed it)")


class _Recorder:
    """Writes the request row of one write call."""

    def __init__(self, conn: sqlite3.Connection, platform: SyntheticPlatform, op: str, level: str,
                 entity_id: str, params: dict[str, Any], key: str) -> None:
        self.conn, self.p = conn, platform
        self.values = (op, level, entity_id, json.dumps(params, sort_keys=True), key)

    def __call__(self, result: WriteResult | None, error: WriteError | None) -> None:
        # A result with an error: applied (or replayed), then the caller was told it timed out.
        outcome = "failed" if result is None else "replayed" if result.replayed else "applied"
        before = None if result is None else json.dumps(result.before.to_dict())
        after = None if result is None else json.dumps(result.after.to_dict())
        self.conn.execute(
            "INSERT INTO requests (at, platform, op, level, entity_id, params, idempotency_key, "
            "outcome, before, after, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.p.clock().isoformat(), self.p.platform, *self.values, outcome, before, after,
             None if error is None else str(error)))


def _check_level(level: str) -> None:
    if level not in WRITE_LEVELS:
        raise PermanentWriteError(f"level '{level}' cannot be changed; platform actions apply to "
                                  f"{', '.join(WRITE_LEVELS)}")


def _state_json(text: str | None) -> EntityState | None:
    return None if text is None else EntityState.from_dict(json.loads(text))


def _writable(state: EntityState) -> None:
    if state.status == "archived":
        raise PermanentWriteError("the entity is archived; archived entities cannot be changed")


def _with_status(state: EntityState, status: str) -> EntityState:
    _writable(state)
    return EntityState(status, state.budget, state.budget_type, state.currency)


def _with_budget(state: EntityState, level: str, amount: Decimal) -> EntityState:
    _writable(state)
    if state.budget_type is None:
        raise PermanentWriteError(f"this {level} has no budget of its own"
                                  + ("" if level == "ad" else " (its budget is set on its parent)"))
    if amount <= 0:
        raise PermanentWriteError(f"a budget must be more than 0, not {amount}")
    return EntityState(state.status, amount, state.budget_type, state.currency)
