"""Job locks: one holder per name across schedulers and processes, on every backend; a crashed
holder's lease expires (rows, Redis) or is dropped with its connection (PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select

from workbench.oltp.db import Oltp
from workbench.oltp.models import JobLock
from workbench.scheduler.locks import (
    REDIS_PREFIX,
    JobLocks,
    Lease,
    PostgresLocks,
    RedisLocks,
    RowLocks,
    advisory_key,
    hold,
    job_locks,
    lock_name,
)
from workbench.settings import load_settings

REDIS_URL = os.environ.get("WORKBENCH_TEST_REDIS", "redis://127.0.0.1:6379/0")
SPAWN = multiprocessing.get_context("spawn")
WAIT = 60.0  # generous bound for a spawned child to start and report on a loaded machine


class Backend(NamedTuple):
    kind: str  # "rows", "postgres" (advisory) or "redis"
    target: str  # the OLTP URL, or the Redis URL


def make_locks(backend: Backend, clock: Callable[[], dt.datetime] | None = None) -> JobLocks:
    """A fresh JobLocks on ``backend``: a separate instance stands for another scheduler."""
    if backend.kind == "redis":
        return RedisLocks(backend.target)
    db = Oltp(backend.target)
    if backend.kind == "postgres":
        return PostgresLocks(db.engine)
    return RowLocks(db, clock=clock) if clock else RowLocks(db)


def unique_name() -> str:
    return lock_name("acme", f"ingest-{secrets.token_hex(4)}")  # unique: the Redis server is shared


def eventually(fn: Callable[[], Any], what: str, seconds: float = WAIT) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def redis_url() -> str:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'workbench.db'}"
    db = Oltp(url)
    db.migrate()
    db.dispose()
    return url


@pytest.fixture
def migrated_pg_url(pg_url) -> str:
    db = Oltp(pg_url)
    db.migrate()
    db.dispose()
    return pg_url


ALL = [
    "rows",
    pytest.param("rows-pg", marks=pytest.mark.postgres),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]
ROWS = ["rows", pytest.param("rows-pg", marks=pytest.mark.postgres)]


@pytest.fixture(params=ALL)
def backend(request) -> Backend:
    kind = request.param
    if kind == "redis":
        return Backend("redis", request.getfixturevalue("redis_url"))
    if kind == "postgres":
        return Backend("postgres", request.getfixturevalue("pg_url"))
    return Backend("rows", request.getfixturevalue("migrated_pg_url" if kind == "rows-pg" else "sqlite_url"))


@pytest.fixture(params=ROWS)
def rows_url(request) -> str:
    return request.getfixturevalue("migrated_pg_url" if request.param == "rows-pg" else "sqlite_url")


@pytest.fixture
def pair(backend) -> Iterator[tuple[JobLocks, JobLocks]]:
    """Two schedulers' locks on the same backend."""
    first, second = make_locks(backend), make_locks(backend)
    yield first, second
    first.close()
    second.close()


# -- the contract, on every backend ----------------------------------------------------------------


def test_a_held_lock_is_refused_to_everyone_until_released(backend, pair):
    a, b = pair
    name, other = unique_name(), unique_name()
    lease = a.acquire(name, 30)
    assert lease is not None and lease.name == name and lease.backend == a.backend
    assert b.acquire(name, 30) is None
    assert a.acquire(name, 30) is None, "not re-entrant: a second run in the same process is refused too"
    other_lease = b.acquire(other, 30)
    assert other_lease is not None, "another job (or organisation) has its own lock"
    a.release(lease)
    again = b.acquire(name, 30)
    assert again is not None and again.token != lease.token
    assert a.acquire(name, 30) is None
    b.release(again)
    b.release(other_lease)


def test_renew_keeps_the_lease_and_fails_once_released(backend, pair):
    a, b = pair
    name = unique_name()
    lease = a.acquire(name, 30)
    assert lease is not None
    assert a.renew(lease, 30)
    assert b.acquire(name, 30) is None
    a.release(lease)
    assert not a.renew(lease, 30), "a released lease is gone"
    taken = b.acquire(name, 30)
    assert taken is not None
    b.release(taken)


def test_release_by_a_non_owner_frees_nothing(backend, pair):
    a, b = pair
    name = unique_name()
    lease = a.acquire(name, 30)
    assert lease is not None
    forged = Lease(name, "not-the-owner", lease.backend)
    b.release(forged)
    a.release(forged)
    assert not b.renew(forged, 30)
    assert b.acquire(name, 30) is None
    assert a.renew(lease, 30), "the real holder still has it"
    a.release(lease)


def test_hold_releases_after_the_block_even_when_it_fails(backend, pair):
    a, b = pair
    name = unique_name()
    with hold(a, name, 30) as lease:
        assert lease is not None
        with hold(b, name, 30) as refused:
            assert refused is None
    with pytest.raises(RuntimeError, match="notebook failed"), hold(b, name, 30) as lease:
        assert lease is not None
        raise RuntimeError("notebook failed")
    after = a.acquire(name, 30)
    assert after is not None
    a.release(after)


def _race(backend: Backend, names: list[str], barrier: Any, results: Any) -> None:
    """One scheduler in its own process: for each name, start together with the other and try once."""
    locks = make_locks(backend)
    for name in names:
        barrier.wait(WAIT)
        lease = locks.acquire(name, 30)
        results.put((name, os.getpid(), lease is not None))
        barrier.wait(WAIT)  # the winner holds on until the loser has tried
        if lease is not None:
            locks.release(lease)
    locks.close()


def test_two_processes_started_at_once_exactly_one_gets_the_lock(backend):
    names = [unique_name() for _ in range(4)]
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    procs = [SPAWN.Process(target=_race, args=(backend, names, barrier, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=WAIT) for _ in range(2 * len(names))]
    for proc in procs:
        proc.join(WAIT)
        assert proc.exitcode == 0
    for name in names:
        winners = [pid for n, pid, won in outcomes if n == name and won]
        assert len(winners) == 1, f"{name}: {outcomes}"


def _hold_until_killed(backend: Backend, name: str, ttl: float, results: Any) -> None:
    """A run that takes the lock and then hangs until it is killed."""
    lease = make_locks(backend).acquire(name, ttl)
    results.put(lease is not None)
    time.sleep(10 * WAIT)


def test_a_killed_holders_lock_frees_itself(backend):
    name, ttl = unique_name(), 60.0
    results = SPAWN.Queue()
    proc = SPAWN.Process(target=_hold_until_killed, args=(backend, name, ttl, results))
    proc.start()
    try:
        assert results.get(timeout=WAIT) is True
    finally:
        proc.kill()  # SIGKILL: no finally blocks, no release
        proc.join(WAIT)
    locks = make_locks(backend)
    if backend.kind == "postgres":
        # The dead process's connection closes; PostgreSQL drops its session locks at once.
        lease = eventually(lambda: locks.acquire(name, ttl), "PostgreSQL kept a dead session's advisory lock")
    elif backend.kind == "redis":
        assert locks.acquire(name, ttl) is None, "the lease outlives its holder until the ttl"
        assert isinstance(locks, RedisLocks)
        assert 0 < locks.client.pttl(REDIS_PREFIX + name) <= ttl * 1000
        locks.client.pexpire(REDIS_PREFIX + name, 1)  # let the ttl run out without waiting a minute
        lease = eventually(lambda: locks.acquire(name, ttl), "the expired Redis lease was not taken over")
    else:
        assert locks.acquire(name, ttl) is None, "the lease outlives its holder until the ttl"
        later = make_locks(backend, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl + 1))
        lease = later.acquire(name, ttl)
    assert lease is not None
    locks.close()


# -- expiry and take-over --------------------------------------------------------------------------


def test_rows_a_lapsed_lease_is_taken_over_and_the_old_holder_loses_it(rows_url):
    t0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # any zone: stored as UTC
    now = [t0]
    db = Oltp(rows_url)
    a, b = RowLocks(db, clock=lambda: now[0]), RowLocks(db, clock=lambda: now[0])
    name = unique_name()
    lease = a.acquire(name, 60)
    assert lease is not None
    now[0] = t0 + dt.timedelta(seconds=59)
    assert b.acquire(name, 60) is None
    now[0] = t0 + dt.timedelta(seconds=61)
    assert not a.renew(lease, 60), "a lapsed lease cannot be renewed"
    taken = b.acquire(name, 60)
    assert taken is not None
    assert not a.renew(lease, 60)
    a.release(lease)  # the old holder finishing late must not free the new holder's lease
    assert a.acquire(name, 60) is None
    assert b.renew(taken, 60)
    with db.session() as s:
        assert s.scalar(select(JobLock.owner).where(JobLock.name == name)) == taken.token
    b.release(taken)
    with db.session() as s:
        assert s.scalar(select(JobLock).where(JobLock.name == name)) is None
    db.dispose()


def test_rows_a_lapsed_lease_goes_to_exactly_one_of_two_contenders(sqlite_url):
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    now = [t0]
    db = Oltp(sqlite_url)
    a, b, c = (RowLocks(db, clock=lambda: now[0]) for _ in range(3))
    name = unique_name()
    assert a.acquire(name, 10) is not None
    now[0] = t0 + dt.timedelta(seconds=11)
    assert [b.acquire(name, 10) is not None, c.acquire(name, 10) is not None] == [True, False]
    db.dispose()


@pytest.mark.redis
def test_redis_a_lapsed_lease_is_taken_over_and_the_old_holder_loses_it(redis_url):
    a, b = RedisLocks(redis_url), RedisLocks(redis_url)
    name = unique_name()
    lease = a.acquire(name, 0.2)
    assert lease is not None
    assert 0 < a.client.pttl(REDIS_PREFIX + name) <= 200, "the key carries the ttl in milliseconds"
    taken = eventually(lambda: b.acquire(name, 30), "the lapsed Redis lease was never taken over")
    assert not a.renew(lease, 30)
    a.release(lease)
    assert a.client.get(REDIS_PREFIX + name) == taken.token.encode(), "the old holder freed the new holder's lease"
    assert b.renew(taken, 30)
    b.release(taken)
    assert a.client.exists(REDIS_PREFIX + name) == 0
    a.close()
    b.close()


def test_hold_heartbeat_renews_a_long_run(sqlite_url):
    db = Oltp(sqlite_url)
    locks = RowLocks(db)
    name = unique_name()

    def expiry() -> dt.datetime | None:
        with db.session() as s:
            return s.scalar(select(JobLock.expires_at).where(JobLock.name == name))

    with hold(locks, name, 0.3) as lease:
        assert lease is not None
        first = expiry()
        assert first is not None
        eventually(lambda: (e := expiry()) is not None and e > first, "the heartbeat never renewed the lease")
    assert expiry() is None
    db.dispose()


# -- choosing a backend, and misuse ----------------------------------------------------------------


def test_job_locks_picks_redis_then_postgres_then_rows(tmp_path, sqlite_url):
    sqlite_db = Oltp(sqlite_url)
    plain = load_settings(home=tmp_path / "home", progress=False)
    with_redis = load_settings(home=tmp_path / "home", progress=False, redis_url=REDIS_URL)
    assert isinstance(job_locks(plain, sqlite_db), RowLocks)
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    now = [t0]
    clocked = job_locks(plain, sqlite_db, clock=lambda: now[0])
    assert clocked.acquire("acme/ingest", 60) is not None
    now[0] = t0 + dt.timedelta(seconds=61)
    assert job_locks(plain, sqlite_db, clock=lambda: now[0]).acquire("acme/ingest", 60) is not None, "clock ignored"
    redis_locks = job_locks(with_redis, sqlite_db)
    assert isinstance(redis_locks, RedisLocks)
    redis_locks.close()
    pg_db = Oltp("postgresql+psycopg://nobody@127.0.0.1:1/none")  # nothing connects until a lock is taken
    pg_locks = job_locks(plain, pg_db)
    assert isinstance(pg_locks, PostgresLocks)
    pg_locks.close()
    assert isinstance(job_locks(with_redis, pg_db), RedisLocks)
    sqlite_db.dispose()
    pg_db.dispose()


def test_misuse_is_refused_with_a_clear_message(sqlite_url):
    db = Oltp(sqlite_url)
    locks = RowLocks(db)
    with pytest.raises(ValueError, match="positive number of seconds"):
        locks.acquire("acme/ingest", 0)
    with pytest.raises(ValueError, match="1..200 characters"):
        locks.acquire("", 30)
    with pytest.raises(ValueError, match="came from the redis locks"):
        locks.release(Lease("acme/ingest", "token", "redis"))
    with pytest.raises(ValueError, match="naive datetime"):
        RowLocks(db, clock=lambda: dt.datetime(2026, 1, 1)).acquire("acme/ingest", 30)
    with pytest.raises(ValueError, match="needs a PostgreSQL engine"):
        PostgresLocks(db.engine)
    with pytest.raises(ValueError, match="an organisation and a job"):
        lock_name("", "ingest")
    db.dispose()


def test_advisory_keys_are_stable_signed_64_bit_and_distinct():
    # Pinned: a changed derivation would let old and new schedulers lock different keys at once.
    assert advisory_key("acme/ingest") == -9050210969523870765
    keys = {advisory_key(lock_name(org, job)) for org in ("acme", "globex") for job in ("ingest", "transform")}
    assert len(keys) == 4
    assert all(-(2**63) <= key < 2**63 for key in keys)
