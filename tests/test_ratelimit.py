"""Rate limits: token arithmetic in process (injected clock), atomicity across processes in Redis,
plans files, error messages and failing closed."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from workbench.errors import ConfigError, TransientError
from workbench.ratelimit import (
    BUILTIN_PLANS,
    KEY_PREFIX,
    Decision,
    Limit,
    MemoryRateLimiter,
    Plans,
    RateLimitedError,
    RedisRateLimiter,
    check_login,
    enforce,
    load_plans,
    login_succeeded,
    rate_limiter,
)
from workbench.settings import load_settings

REDIS_URL = os.environ.get("WORKBENCH_TEST_REDIS", "redis://127.0.0.1:6379/0")
NOWHERE = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock)


# -- in-process buckets ---------------------------------------------------------------------------


def test_a_fresh_bucket_allows_its_burst_then_says_when_to_retry(memory, clock):
    limit = Limit(rate=4, burst=3)
    assert [memory.take("k", limit) for _ in range(3)] == [
        Decision(True, 2, 0), Decision(True, 1, 0), Decision(True, 0, 0)]
    assert memory.take("k", limit) == Decision(False, 0, 0.25)
    clock.advance(0.125)
    assert memory.take("k", limit) == Decision(False, 0.5, 0.125)
    clock.advance(0.125)
    assert memory.take("k", limit) == Decision(True, 0, 0)


def test_refill_is_capped_at_the_burst(memory, clock):
    limit = Limit(rate=2, burst=5)
    for _ in range(5):
        assert memory.take("k", limit).allowed
    clock.advance(1.5)  # 3 tokens back
    assert memory.take("k", limit) == Decision(True, 2, 0)
    clock.advance(3600)
    assert memory.take("k", limit) == Decision(True, 4, 0)


def test_a_cost_takes_several_tokens_and_waits_for_all_of_them(memory, clock):
    limit = Limit(rate=4, burst=3)
    assert memory.take("k", limit, cost=2) == Decision(True, 1, 0)
    assert memory.take("k", limit, cost=2) == Decision(False, 1, 0.25)
    assert memory.take("k", limit, cost=1) == Decision(True, 0, 0)


@pytest.mark.parametrize("cost", [0, -1, math.nan, math.inf])
def test_a_cost_must_be_positive(memory, cost):
    with pytest.raises(ValueError, match="positive number"):
        memory.take("k", Limit(1, 5), cost=cost)


def test_a_cost_above_the_burst_is_refused_outright(memory):
    with pytest.raises(ValueError, match="cost 6 can never be allowed by bucket 'k', which holds at most 5"):
        memory.take("k", Limit(1, 5), cost=6)


def test_take_many_takes_from_every_bucket_or_from_none(memory):
    user, org = Limit(rate=1, burst=5), Limit(rate=1, burst=1)
    assert memory.take_many([("u", user), ("o", org)]) == [Decision(True, 4, 0), Decision(True, 0, 0)]
    refused = memory.take_many([("u", user), ("o", org)])
    assert refused == [Decision(False, 4, 0), Decision(False, 0, 1)]
    assert memory.take("u", user) == Decision(True, 3, 0)  # the refused request did not use the user's token


def test_reset_fills_the_bucket_again(memory):
    limit = Limit(rate=1, burst=2)
    memory.take("k", limit, cost=2)
    memory.reset("k")
    assert memory.take("k", limit) == Decision(True, 1, 0)


def test_takes_from_many_threads_hand_out_each_token_once(memory):
    limit = Limit(rate=1, burst=500)  # the clock stands still: no refill
    results: list[Decision] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        mine = [memory.take("shared", limit) for _ in range(100)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allowed = [d for d in results if d.allowed]
    assert len(results) == 800
    assert sorted(d.remaining for d in allowed) == list(range(500))  # no token handed out twice


def test_buckets_that_are_full_again_are_forgotten(memory, clock):
    memory.take("fast", Limit(rate=10, burst=10))  # full again after 0.1 s
    memory.take("slow", Limit(rate=0.01, burst=10))  # after 100 s
    clock.advance(1)
    memory.sweep()
    assert len(memory) == 1
    memory.SWEEP_EVERY = 3
    clock.advance(100)
    memory.take("a", Limit(rate=1, burst=1))  # the third take since the start: sweeps "slow"
    assert len(memory) == 1
    memory.take("b", Limit(rate=1, burst=1))
    assert len(memory) == 2


# -- limits and plans ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rate", "shown"), [
    ("10/s", 10, "10/s"), ("30/min", 0.5, "30/min"), ("5/5min", 1 / 60, "1/min"),
    ("1000/day", 1000 / 86400, "1000/day"), ("3 / hours", 3 / 3600, "3/h"), (2.5, 2.5, "2.5/s"),
])
def test_rates_are_numbers_or_texts(text, rate, shown):
    limit = Limit(text, 7)
    assert limit.rate == pytest.approx(rate)
    assert str(limit) == f"{shown}, burst 7"


@pytest.mark.parametrize(("rate", "burst", "problem"), [
    ("ten per second", 1, "is not a number of tokens per second nor a text like"),
    ("5/0min", 1, "divides by zero"), (0, 1, "greater than 0"), (1, 0, "greater than or equal to 1"),
])
def test_bad_limits_are_refused(rate, burst, problem):
    with pytest.raises(pydantic.ValidationError, match=problem):
        Limit(rate, burst)


def test_without_a_file_the_built_in_plans_apply(settings):
    plans = load_plans(settings)
    assert plans is BUILTIN_PLANS
    standard = plans.limits("standard")
    assert (standard.user, standard.org, standard.login) == (Limit(10, 20), Limit(50, 100), Limit("5/5min", 5))
    enterprise = plans.limits("enterprise")
    assert enterprise.user.rate > standard.user.rate and enterprise.org.burst > standard.org.burst


def test_a_plans_file_overrides_kinds_and_adds_plans(tmp_path):
    path = tmp_path / "limits.yaml"
    path.write_text("plans:\n"
                    "  gold:\n    org: {rate: 1000/min, burst: 300}\n    login: {rate: 3/10min, burst: 3}\n"
                    "  standard:\n    user: {rate: 2, burst: 4}\n")
    plans = load_plans(load_settings(home=tmp_path / "h", rate_limits_file=path))
    assert plans.limits("standard").user == Limit(2, 4)
    assert plans.limits("standard").org == BUILTIN_PLANS.limits("standard").org  # omitted: built-in kept
    gold = plans.limits("gold")
    assert gold.org == Limit(1000 / 60, 300) and gold.login == Limit(0.005, 3)
    assert gold.user == Limit(2, 4)  # a new plan starts from standard as the file sets it, listed before or after
    assert gold.login_address == BUILTIN_PLANS.limits("standard").login_address
    assert plans.limits("enterprise") == BUILTIN_PLANS.limits("enterprise")

    path.write_text("plans:\n  standard:\n    user: {rate: 3, burst: 6}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse file systems
    assert load_plans(load_settings(home=tmp_path / "h", rate_limits_file=path)).limits("standard").user == Limit(3, 6)


@pytest.mark.parametrize(("text", "problem"), [
    ("plans:\n  standard:\n    user: {rate: 2, burst: 0}\n", "plans.standard.user.burst: Input should be greater than or equal to 1"),
    ("plans:\n  standard:\n    usr: {rate: 2, burst: 2}\n", "plans.standard.usr: Extra inputs are not permitted"),
    ("plans:\n  gold:\n    login: {rate: often, burst: 2}\n", "plans.gold.login.rate: Value error, rate 'often' is not"),
    ("plans:\n  gold:\n    login: {rate: 1, burst: 2, every: 3}\n", "plans.gold.login.every: Unexpected keyword"),
    ("plans:\n  gold: 5\n", "plans.gold: Input should be a valid dictionary"),
    ("plans:\n  gold: {}\n  standard: [1]\n", "plans.standard: Input should be a valid dictionary"),
    ("plans: {}\ndefaults: {}\n", "defaults: Extra inputs are not permitted"),
    ("- standard\n", "expected a 'plans' mapping"),
    ("plans: [\n", "cannot be read"),
])
def test_a_bad_plans_file_names_the_bad_key(tmp_path, text, problem):
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"rate_limits_file {path}") as err:
        load_plans(load_settings(home=tmp_path / "h", rate_limits_file=path))
    assert problem in str(err.value)


def test_a_missing_plans_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="rate_limits_file .*nope.yaml cannot be read .*unset the setting"):
        load_plans(load_settings(home=tmp_path / "h", rate_limits_file=tmp_path / "nope.yaml"))


def test_an_unknown_plan_names_the_plans_there_are(memory):
    with pytest.raises(ConfigError, match="rate-limit plan 'gold' is not defined; plans: enterprise, standard"):
        enforce(memory, BUILTIN_PLANS, plan="gold", user="user:ana@example.com", org_id="acme")


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "subject", "limit", "retry", "message"), [
    ("user", "user:ana@example.com", Limit(10, 20), 1.35,
     "too many requests for user ana@example.com (limit 10/s, burst 20): retry in 1.4 s"),
    ("user", "token:7f3a", Limit(10, 20), 0.01, "too many requests for API token 7f3a (limit 10/s, burst 20): retry in 0.1 s"),
    ("user", "bob", Limit(10, 20), 0.1, "too many requests for user bob (limit 10/s, burst 20): retry in 0.1 s"),
    ("org", "acme", Limit(50, 100), 0.02, "too many requests for organisation acme (limit 50/s, burst 100): retry in 0.1 s"),
    ("login", "ana@example.com", Limit("5/5min", 5), 47.2,
     "too many login attempts for ana@example.com (limit 1/min, burst 5): retry in 48 s"),
    ("login_address", "10.0.0.7", Limit("20/5min", 20), 170,
     "too many login attempts from 10.0.0.7 (limit 4/min, burst 20): retry in 3 min"),
])
def test_the_error_says_who_which_limit_and_when_to_retry(kind, subject, limit, retry, message):
    err = RateLimitedError(kind, subject, limit, retry)
    assert str(err) == message
    assert (err.kind, err.subject, err.limit, err.retry_after) == (kind, subject, limit, retry)


# -- enforce and logins ---------------------------------------------------------------------------


def test_enforce_refuses_a_user_over_the_limit_with_the_retry_time(memory, clock):
    for _ in range(20):
        enforce(memory, BUILTIN_PLANS, plan="standard", user="user:ana@example.com", org_id="acme")
    with pytest.raises(RateLimitedError) as err:
        enforce(memory, BUILTIN_PLANS, plan="standard", user="user:ana@example.com", org_id="acme")
    assert err.value.kind == "user" and err.value.retry_after == pytest.approx(0.1)
    assert str(err.value) == "too many requests for user ana@example.com (limit 10/s, burst 20): retry in 0.1 s"
    # Other users of the organisation are not held back by Ana.
    assert enforce(memory, BUILTIN_PLANS, plan="standard", user="user:bob@example.com", org_id="acme").allowed
    clock.advance(0.1)
    assert enforce(memory, BUILTIN_PLANS, plan="standard", user="user:ana@example.com", org_id="acme").allowed


def test_enforce_refuses_an_organisation_over_its_limit_without_using_the_users_tokens(memory):
    for i in range(100):
        enforce(memory, BUILTIN_PLANS, plan="standard", user=f"user:u{i}", org_id="acme")
    with pytest.raises(RateLimitedError, match="too many requests for organisation acme .*retry in 0.1 s") as err:
        enforce(memory, BUILTIN_PLANS, plan="standard", user="user:late", org_id="acme")
    assert err.value.kind == "org"
    assert memory.take("user:user:late", Limit(10, 20)).remaining == 19  # nothing was taken from the user
    # Another organisation is not affected, and the plan decides the size.
    decision = enforce(memory, BUILTIN_PLANS, plan="enterprise", user="user:other", org_id="globex", cost=5)
    assert decision == Decision(True, 95, 0)  # the fuller of user (100 - 5) and organisation (1000 - 5)


def test_enforce_with_nobody_to_limit_allows_without_a_bucket(memory):
    assert enforce(memory, BUILTIN_PLANS, plan="standard", user=None, org_id=None) == Decision(True, math.inf, 0)
    assert len(memory) == 0


def test_login_attempts_are_limited_per_login_name_whatever_the_case(memory, clock):
    for login in ["ana@example.com", "ANA@example.com", " Ana@Example.com", "ana@example.com", "ana@EXAMPLE.com"]:
        check_login(memory, BUILTIN_PLANS, login=login, address=None)
    with pytest.raises(RateLimitedError) as err:
        check_login(memory, BUILTIN_PLANS, login="Ana@example.com", address=None)
    assert err.value.kind == "login" and err.value.retry_after == pytest.approx(60)
    assert str(err.value) == "too many login attempts for Ana@example.com (limit 1/min, burst 5): retry in 60 s"
    assert check_login(memory, BUILTIN_PLANS, login="bob@example.com", address=None).allowed
    clock.advance(60)
    assert check_login(memory, BUILTIN_PLANS, login="ana@example.com", address=None).allowed


def test_a_successful_login_gives_the_attempts_back(memory):
    for _ in range(5):
        check_login(memory, BUILTIN_PLANS, login="ana@example.com", address="10.0.0.7")
    login_succeeded(memory, login="Ana@Example.com")
    assert check_login(memory, BUILTIN_PLANS, login="ana@example.com", address="10.0.0.7") == Decision(True, 4, 0)


def test_login_attempts_are_limited_per_client_address_across_login_names(memory):
    for i in range(20):
        check_login(memory, BUILTIN_PLANS, login=f"user{i}@example.com", address="10.0.0.7")
    with pytest.raises(RateLimitedError, match="too many login attempts from 10.0.0.7 .*retry in 15 s") as err:
        check_login(memory, BUILTIN_PLANS, login="new@example.com", address="10.0.0.7")
    assert err.value.kind == "login_address"
    assert check_login(memory, BUILTIN_PLANS, login="new@example.com", address="10.0.0.8") == Decision(True, 4, 0)


# -- choosing the limiter; failing closed ------------------------------------------------------


def test_without_redis_the_limiter_is_in_process_one_per_home(tmp_path):
    a = rate_limiter(load_settings(home=tmp_path / "a"))
    assert isinstance(a, MemoryRateLimiter)
    assert rate_limiter(load_settings(home=tmp_path / "a")) is a
    assert rate_limiter(load_settings(home=tmp_path / "b")) is not a


def test_a_redis_url_that_does_not_answer_fails_closed(tmp_path):
    with pytest.raises(ConfigError) as err:
        rate_limiter(load_settings(home=tmp_path / "h", redis_url=NOWHERE))
    assert "redis_url points at redis://127.0.0.1:1/0, which does not answer" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_redis_that_goes_away_refuses_requests_rather_than_allowing_them():
    limiter = RedisRateLimiter.from_url(NOWHERE, timeout=1)
    with pytest.raises(TransientError, match="rate limits are unavailable: Redis at redis://127.0.0.1:1/0") as err:
        enforce(limiter, BUILTIN_PLANS, plan="standard", user="user:ana@example.com", org_id="acme")
    assert "hunter2" not in str(err.value)


# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
def redis_limiter() -> Iterator[RedisRateLimiter]:
    """A limiter on the local Redis under a prefix of its own (its keys are removed afterwards)."""
    limiter = RedisRateLimiter.from_url(REDIS_URL, prefix=f"{KEY_PREFIX}test-{secrets.token_hex(4)}:")
    try:
        limiter.ping()
    except TransientError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis not reachable: {exc}")
    yield limiter
    keys = list(limiter.client.scan_iter(match=f"{limiter.prefix}*"))
    if keys:
        limiter.client.delete(*keys)
    limiter.client.close()


def _redis_now(limiter: RedisRateLimiter) -> float:
    seconds, micros = limiter.client.time()
    return seconds + micros / 1e6


def _take_many_times(url: str, prefix: str, n: int, start: Any, results: Any) -> None:
    limiter = RedisRateLimiter.from_url(url, prefix=prefix)
    limiter.ping()  # connect before the start line, so that the takes really overlap
    start.wait(60)
    allowed = sum(limiter.take("shared", Limit(rate=1e-6, burst=30)).allowed for _ in range(n))
    results.put(allowed)


@pytest.mark.redis
def test_redis_buckets_are_atomic_across_processes(redis_limiter):
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_take_many_times, args=(REDIS_URL, redis_limiter.prefix, 50, start, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    counts = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(counts) == 30  # exactly the burst, however the 200 takes interleaved


@pytest.mark.redis
def test_redis_says_when_to_retry(redis_limiter):
    limit = Limit(rate=0.001, burst=2)  # one token per 1000 s: the test's own run time hardly matters
    assert [redis_limiter.take("k", limit).allowed for _ in range(2)] == [True, True]
    refused = redis_limiter.take("k", limit)
    assert not refused.allowed and 990 < refused.retry_after <= 1000
    assert 1990 < redis_limiter.take("k", limit, cost=2).retry_after <= 2000


@pytest.mark.redis
def test_redis_buckets_refill_on_the_servers_clock(redis_limiter):
    key = f"{redis_limiter.prefix}k"
    redis_limiter.client.hset(key, mapping={"tokens": 0, "ts": f"{_redis_now(redis_limiter) - 10:.6f}"})
    limit = Limit(rate=0.2, burst=5)  # 10 s ago empty: 2 tokens now
    first = redis_limiter.take("k", limit)
    assert first.allowed and first.remaining == pytest.approx(1, abs=0.2)
    assert redis_limiter.take("k", limit).allowed
    assert not redis_limiter.take("k", limit).allowed


@pytest.mark.redis
def test_redis_keys_expire_when_the_bucket_would_be_full(redis_limiter):
    assert redis_limiter.prefix.startswith("wb:rl:")
    key = f"{redis_limiter.prefix}slow"
    redis_limiter.take("slow", Limit(rate=0.01, burst=10), cost=3)  # full again in 300 s
    assert 290_000 < redis_limiter.client.pttl(key) <= 300_001
    redis_limiter.take("fast", Limit(rate=100, burst=1))  # full again in 10 ms
    deadline = time.monotonic() + 10
    while redis_limiter.client.exists(f"{redis_limiter.prefix}fast") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not redis_limiter.client.exists(f"{redis_limiter.prefix}fast")
    assert redis_limiter.take("fast", Limit(rate=100, burst=1)).allowed


@pytest.mark.redis
def test_redis_take_many_is_all_or_nothing_and_reset_forgets(redis_limiter):
    user, org = Limit(rate=0.001, burst=5), Limit(rate=0.001, burst=1)
    assert redis_limiter.take_many([("u", user), ("o", org)])[0].allowed
    refused = redis_limiter.take_many([("u", user), ("o", org)])
    assert [d.allowed for d in refused] == [False, False]
    assert refused[0].retry_after == 0 and refused[1].retry_after > 900
    assert redis_limiter.take("u", user).remaining == pytest.approx(3, abs=0.01)
    redis_limiter.reset("u")
    assert redis_limiter.take("u", user).remaining == pytest.approx(4)


@pytest.mark.redis
def test_enforce_and_logins_through_redis(redis_limiter):
    # Slow refills (the built-in login limit, a user limit of 1 per 1000 s): the wall-clock time the
    # test takes cannot refill a bucket.
    slow = Limit(rate=0.001, burst=20)
    plans = Plans(plans={"standard": BUILTIN_PLANS.limits("standard").model_copy(update={"user": slow})})
    for _ in range(5):
        check_login(redis_limiter, BUILTIN_PLANS, login="ana@example.com", address="10.0.0.7")
    with pytest.raises(RateLimitedError, match=r"too many login attempts for ana@example.com \(limit 1/min, burst 5\)"):
        check_login(redis_limiter, BUILTIN_PLANS, login="ana@example.com", address="10.0.0.7")
    login_succeeded(redis_limiter, login="ana@example.com")
    assert check_login(redis_limiter, BUILTIN_PLANS, login="ana@example.com", address="10.0.0.7").allowed
    for _ in range(20):
        enforce(redis_limiter, plans, plan="standard", user="user:ana@example.com", org_id="acme")
    with pytest.raises(RateLimitedError, match=r"too many requests for user ana@example.com \(limit 3.6/h, burst 20\)") as err:
        enforce(redis_limiter, plans, plan="standard", user="user:ana@example.com", org_id="acme")
    assert err.value.kind == "user" and 990 < err.value.retry_after <= 1000


@pytest.mark.redis
def test_with_a_redis_url_the_limiter_is_redis(tmp_path, redis_limiter):
    limiter = rate_limiter(load_settings(home=tmp_path / "h", redis_url=REDIS_URL))
    assert isinstance(limiter, RedisRateLimiter) and limiter.prefix == KEY_PREFIX
