"""Job locks: one lease per job and organisation, held across processes.

Two schedulers (ticks from cron, workers, an orchestrator) may find the same job due at the same
moment; the lease decides which one runs it. Three backends, chosen by :func:`job_locks`:

- :class:`RedisLocks` when ``redis_url`` is set: ``SET NX PX``; a crashed holder's key expires.
- :class:`PostgresLocks` when the OLTP store is PostgreSQL: a session advisory lock on a connection
  kept open for the lease; a crashed holder's connection closes and PostgreSQL drops the lock.
- :class:`RowLocks` otherwise (SQLite, or any SQL store): a ``job_locks`` row with an expiry.

Acquiring never blocks: ``None`` means another holder has the lease and the caller should skip.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import logging
import math
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, create_engine, delete, insert, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from workbench.errors import ConfigError, TransientError
from workbench.oltp.db import Oltp
from workbench.oltp.models import JobLock
from workbench.settings import Settings

log = logging.getLogger(__name__)

REDIS_PREFIX = "wb:lock:"
MAX_NAME = 200  # the width of job_locks.name

# Renew-by-script so a holder whose key lapsed and was taken over never extends or deletes the
# new holder's lease: the token comparison and the write are one atomic step in Redis.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    """A held lock: its name, the holder's random token and the backend that granted it."""

    name: str
    token: str
    backend: str


def lock_name(org_id: str, job: str) -> str:
    """The lock name of ``job`` for organisation ``org_id`` (``"<org>/<job>"``)."""
    if not org_id or not job:
        raise ValueError(f"a job lock needs an organisation and a job, got org={org_id!r} job={job!r}")
    return f"{org_id}/{job}"


def _check(name: str, ttl: float) -> None:
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"lock names must be 1..{MAX_NAME} characters, got {name!r}")
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"a lock ttl must be a positive number of seconds, got {ttl!r}")


def _token() -> str:
    return secrets.token_hex(16)


class JobLocks(abc.ABC):
    """Non-blocking, cross-process leases by name. Not re-entrant: a second ``acquire`` of a held
    name is refused even in the same process."""

    backend: str

    @abc.abstractmethod
    def acquire(self, name: str, ttl: float) -> Lease | None:
        """Take the lease ``name`` for ``ttl`` seconds; ``None`` when someone else holds it."""

    @abc.abstractmethod
    def renew(self, lease: Lease, ttl: float) -> bool:
        """Extend ``lease`` to ``ttl`` seconds from now; False when it has been lost."""

    @abc.abstractmethod
    def release(self, lease: Lease) -> None:
        """Give ``lease`` up; does nothing when it is no longer ours (never frees another holder's)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Free client resources (held leases of connection-bound backends are released)."""

    def _own(self, lease: Lease) -> None:
        if lease.backend != self.backend:
            raise ValueError(f"lease {lease.name!r} came from the {lease.backend} locks, not {self.backend}; "
                             "renew and release it through the JobLocks that acquired it")


# -- Redis -----------------------------------------------------------------------------------------


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError("redis_url is set but the redis client is not installed: pip install "
                          "'workbench[redis]' (or unset redis_url to lock through the OLTP store)") from None
    return redis


def _where(url: str) -> str:
    parts = urlsplit(url)  # host and port only: the URL may carry a password
    return f"{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


class RedisLocks(JobLocks):
    """Leases as Redis keys ``prefix + name`` holding the owner's token, expiring after the ttl."""

    backend = "redis"

    def __init__(self, url: str, *, prefix: str = REDIS_PREFIX, timeout: float = 5.0) -> None:
        redis = _redis_module()
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix = prefix
        self._where = _where(url)
        self._error: type[Exception] = redis.RedisError
        self._renew = self.client.register_script(_RENEW_LUA)
        self._release = self.client.register_script(_RELEASE_LUA)

    def acquire(self, name: str, ttl: float) -> Lease | None:
        _check(name, ttl)
        token = _token()
        taken = self._call(lambda: self.client.set(self.prefix + name, token, nx=True, px=_ms(ttl)))
        return Lease(name, token, self.backend) if taken else None

    def renew(self, lease: Lease, ttl: float) -> bool:
        self._own(lease)
        _check(lease.name, ttl)
        return bool(self._call(lambda: self._renew(keys=[self.prefix + lease.name], args=[lease.token, _ms(ttl)])))

    def release(self, lease: Lease) -> None:
        self._own(lease)
        self._call(lambda: self._release(keys=[self.prefix + lease.name], args=[lease.token]))

    def close(self) -> None:
        self.client.close()

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._error as exc:
            # Not "held by someone else": the caller must not run the job unlocked, nor skip it silently.
            raise TransientError(f"job locks are unavailable: Redis at {self._where} failed ({exc}); start Redis "
                                 "or fix the redis_url setting, then tick again") from None


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


# -- PostgreSQL advisory locks ---------------------------------------------------------------------


def advisory_key(name: str) -> int:
    """The signed 64-bit advisory-lock key of ``name``: stable across processes and Python versions
    (unlike ``hash()``), and namespaced so it does not collide with other advisory-lock users."""
    digest = hashlib.blake2b(f"{REDIS_PREFIX}{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLocks(JobLocks):
    """Session advisory locks, each on its own connection kept open while the lease is held.

    The ttl is not used: the lease lasts as long as the connection, so a crashed holder's lock is
    dropped by PostgreSQL as soon as its connection closes, and a live holder never loses it.
    """

    backend = "postgres"

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"PostgresLocks needs a PostgreSQL engine, got {engine.dialect.name}; "
                             "use RowLocks (or job_locks()) for other stores")
        # Own unpooled connections: a lease pins its connection, which must neither eat the
        # application's pool nor go back to it (with the lock) when the lease ends.
        self._engine = create_engine(engine.url, poolclass=NullPool)
        self._held: dict[str, Connection] = {}
        self._mutex = threading.Lock()

    def acquire(self, name: str, ttl: float) -> Lease | None:
        _check(name, ttl)
        # Autocommit: the connection stays idle (not idle in transaction) for the whole lease, so
        # it holds back no vacuum and idle_in_transaction_session_timeout does not end it.
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(name)}).scalar_one()
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            return None
        lease = Lease(name, _token(), self.backend)
        with self._mutex:
            self._held[lease.token] = conn
        return lease

    def renew(self, lease: Lease, ttl: float) -> bool:
        self._own(lease)
        _check(lease.name, ttl)
        with self._mutex:
            conn = self._held.get(lease.token)
        if conn is None:
            return False
        key = advisory_key(lease.name)
        try:
            # A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits).
            held = conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND granted AND objsubid = 1 AND classid = :hi AND objid = :lo"),
                {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalar_one()
        except SQLAlchemyError:
            held = 0  # the connection broke, and with it the lock
        if not held:
            self._drop(lease.token)
        return bool(held)

    def release(self, lease: Lease) -> None:
        self._own(lease)
        self._drop(lease.token, unlock=lease.name)

    def close(self) -> None:
        with self._mutex:
            tokens = list(self._held)
        for token in tokens:
            self._drop(token)
        self._engine.dispose()

    def _drop(self, token: str, unlock: str | None = None) -> None:
        with self._mutex:
            conn = self._held.pop(token, None)
        if conn is None:
            return
        try:
            if unlock is not None:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(unlock)})
        except SQLAlchemyError as exc:
            log.warning("could not unlock %s (%s); closing its connection frees it", unlock, exc)
        finally:
            conn.close()  # unpooled: this ends the session, which frees any lock left on it


# -- rows in the OLTP store ------------------------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RowLocks(JobLocks):
    """Leases as ``job_locks`` rows (name, owner, acquired_at, expires_at), for SQLite or any SQL
    store. An expired row is taken over atomically by the next acquirer."""

    backend = "rows"

    def __init__(self, db: Oltp, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.db = db
        self._clock = clock

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the RowLocks clock returned a naive datetime; return an aware one (UTC)")
        # Always UTC: SQLite stores datetimes as text without the zone, and expiry is a text
        # comparison there, so every value written and compared must be in the same zone.
        return now.astimezone(dt.UTC)

    def acquire(self, name: str, ttl: float) -> Lease | None:
        _check(name, ttl)
        now = self._now()
        token = _token()
        expires = now + dt.timedelta(seconds=ttl)
        try:
            with self.db.engine.begin() as conn:
                conn.execute(insert(JobLock).values(name=name, owner=token, acquired_at=now, expires_at=expires))
            return Lease(name, token, self.backend)
        except IntegrityError:
            pass  # a row exists: a live holder, or a crashed one whose lease has lapsed
        # A separate transaction: on PostgreSQL the failed insert aborted the first one. The WHERE
        # makes the take-over atomic: of several acquirers of a lapsed lease one updates the row.
        with self.db.engine.begin() as conn:
            taken = conn.execute(
                update(JobLock).where(JobLock.name == name, JobLock.expires_at < now)
                .values(owner=token, acquired_at=now, expires_at=expires)).rowcount
        return Lease(name, token, self.backend) if taken == 1 else None

    def renew(self, lease: Lease, ttl: float) -> bool:
        self._own(lease)
        _check(lease.name, ttl)
        now = self._now()
        # A lapsed lease is lost even if nobody took it yet: the same rule as an expired Redis key.
        with self.db.engine.begin() as conn:
            renewed = conn.execute(
                update(JobLock).where(JobLock.name == lease.name, JobLock.owner == lease.token,
                                      JobLock.expires_at >= now)
                .values(expires_at=now + dt.timedelta(seconds=ttl))).rowcount
        return renewed == 1

    def release(self, lease: Lease) -> None:
        self._own(lease)
        with self.db.engine.begin() as conn:
            conn.execute(delete(JobLock).where(JobLock.name == lease.name, JobLock.owner == lease.token))


# -- choosing and holding --------------------------------------------------------------------------


def job_locks(settings: Settings, db: Oltp, *, clock: Callable[[], dt.datetime] | None = None) -> JobLocks:
    """The locks for this deployment: Redis when ``redis_url`` is set, PostgreSQL advisory locks when
    the OLTP store is PostgreSQL, else ``job_locks`` rows in the OLTP store. ``clock`` (aware
    datetimes) only affects the rows: Redis and PostgreSQL expire leases on their own time."""
    if settings.redis_url:
        return RedisLocks(settings.redis_url)
    if db.engine.dialect.name == "postgresql":
        return PostgresLocks(db.engine)
    return RowLocks(db, clock=clock or _utcnow)


@contextmanager
def hold(locks: JobLocks, name: str, ttl: float, *, heartbeat: bool = True) -> Iterator[Lease | None]:
    """Hold the lease ``name`` for the block (``None`` when someone else holds it: skip the work).

    With ``heartbeat`` a background thread renews the lease every ``ttl / 3`` seconds, so a run
    longer than ``ttl`` keeps it while a crashed run's lease still lapses ``ttl`` after its last beat.
    """
    lease = locks.acquire(name, ttl)
    if lease is None:
        yield None
        return
    stop = threading.Event()
    beat = None
    if heartbeat:
        beat = threading.Thread(target=_beat, args=(locks, lease, ttl, stop), name=f"lock-heartbeat {name}",
                                daemon=True)
        beat.start()
    try:
        yield lease
    finally:
        stop.set()
        if beat is not None:
            beat.join()
        try:
            locks.release(lease)
        except (TransientError, SQLAlchemyError) as exc:
            # Not worth failing a finished run over: the lease lapses on its own after the ttl.
            log.warning("could not release job lock %s (%s); it expires within %ss", name, exc, ttl)


def _beat(locks: JobLocks, lease: Lease, ttl: float, stop: threading.Event) -> None:
    while not stop.wait(ttl / 3):
        try:
            if not locks.renew(lease, ttl):
                log.warning("job lock %s was lost (it lapsed before it could be renewed); another "
                            "scheduler may now run the same job", lease.name)
                return
        except (TransientError, SQLAlchemyError) as exc:
            # Keep trying: a brief outage need not cost the lease if it ends within the ttl.
            log.warning("could not renew job lock %s (%s); retrying", lease.name, exc)
