"""Rate limits: token buckets per user, per organisation and per login, with limits by plan.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request takes
``cost`` tokens or is refused with the time until enough are back (``Decision.retry_after``).

- ``Limit``, ``PlanLimits``, ``Plans``: the limits of each plan (``organisations.plan``), the
  built-in ``standard`` and ``enterprise`` or ``settings.rate_limits_file`` (``load_plans``).
- ``RateLimiter``: ``MemoryRateLimiter`` (one process, thread-safe) and ``RedisRateLimiter`` (one
  Lua script: atomic and on the server's clock, so every process on every machine agrees);
  ``rate_limiter(settings)`` picks one and fails closed when Redis is configured but down.
- ``enforce``: one request of a user for an organisation (app actions, API calls);
  ``check_login`` / ``login_succeeded``: login attempts per login name and per client address.
  Both raise ``RateLimitedError`` naming the limit and the retry time.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench.errors import ConfigError, TransientError, WorkbenchError
from workbench.settings import Settings

DEFAULT_PLAN = "standard"
KEY_PREFIX = "wb:rl:"

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0,
          "d": 86400.0, "day": 86400.0}
_RATE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")


def _parse_rate(text: str) -> float:
    match = _RATE_TEXT.match(text.lower())
    if not match or match[3] not in _UNITS:
        raise ValueError(f"rate '{text}' is not a number of tokens per second nor a text like '10/s', "
                         "'30/min', '5/5min', '1000/h' or '20000/day'")
    count, every, unit = float(match[1]), float(match[2] or 1), _UNITS[match[3]]
    if every == 0:
        raise ValueError(f"rate '{text}' divides by zero")
    return count / (every * unit)


def _rate_text(rate: float) -> str:
    # Per second from 1/s up; below, the smallest unit giving a whole number ("1000/day", not
    # "41.6667/h"), else the smallest giving at least 1.
    if rate >= 1:
        return f"{round(rate, 6):g}/s"
    counts = [(round(rate * factor, 6), unit) for factor, unit in ((60, "min"), (3600, "h"), (86400, "day"))]
    count, unit = next(((c, u) for c, u in counts if c >= 1 and c == int(c)),
                       next(((c, u) for c, u in counts if c >= 1), counts[-1]))
    return f"{count:g}/{unit}"


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Limit:
    """A token bucket: ``rate`` tokens per second (or a text such as ``"5/5min"``), at most ``burst``."""

    rate: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    burst: Annotated[int, Field(ge=1)]

    @field_validator("rate", mode="before")
    @classmethod
    def _rate_from_text(cls, value: Any) -> Any:
        return _parse_rate(value) if isinstance(value, str) else value

    def __str__(self) -> str:
        return f"{_rate_text(self.rate)}, burst {self.burst}"


class PlanLimits(BaseModel):
    """The limits of one plan. ``login`` counts attempts per login name; ``login_address`` per
    client address (all login names together; the ``login`` limit when unset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: Limit
    org: Limit
    login: Limit
    login_address: Limit | None = None

    @property
    def address_limit(self) -> Limit:
        return self.login_address or self.login


PlanName = Annotated[str, Field(min_length=1, max_length=32)]  # organisations.plan is a String(32)


class Plans(BaseModel):
    """Rate-limit plans by name (``organisations.plan``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plans: dict[PlanName, PlanLimits]

    def limits(self, plan: str) -> PlanLimits:
        """The limits of ``plan``, or a ConfigError naming the plans there are."""
        try:
            return self.plans[plan]
        except KeyError:
            raise ConfigError(f"rate-limit plan '{plan}' is not defined; plans: {', '.join(sorted(self.plans))}. "
                              "Set the organisation's plan to one of them or define it in the rate_limits_file "
                              "setting's YAML file") from None


_PER_5_MIN = 1 / 300

BUILTIN_PLANS = Plans(plans={
    "standard": PlanLimits(user=Limit(10, 20), org=Limit(50, 100), login=Limit(5 * _PER_5_MIN, 5),
                           login_address=Limit(20 * _PER_5_MIN, 20)),
    "enterprise": PlanLimits(user=Limit(50, 100), org=Limit(500, 1000), login=Limit(10 * _PER_5_MIN, 10),
                             login_address=Limit(100 * _PER_5_MIN, 100)),
})


def load_plans(settings: Settings) -> Plans:
    """The plans of ``settings.rate_limits_file`` merged over the built-in ones, or the built-ins.

    A plan named in the file replaces the built-in plan of that name kind by kind: a kind it omits
    keeps the built-in value; a new plan starts from ``standard`` (as the file sets it). Read again
    when the file changes.
    """
    path = settings.rate_limits_file
    if path is None:
        return BUILTIN_PLANS
    path = path.expanduser().resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"rate_limits_file {path} cannot be read ({exc.strerror}); fix the path or unset "
                          "the setting for the built-in plans") from None
    return _load_plans_file(path, mtime)


@functools.lru_cache(maxsize=8)
def _load_plans_file(path: Path, _mtime: int) -> Plans:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"rate_limits_file {path} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("plans"), dict):
        raise ConfigError(f"rate_limits_file {path}: expected a 'plans' mapping of plan name to "
                          "{user, org, login, login_address}, each {rate, burst}")
    merged: dict[Any, Any] = {name: limits.model_dump() for name, limits in BUILTIN_PLANS.plans.items()}
    # The default plan first: a new plan starts from it as this file sets it, wherever it is listed.
    for name, kinds in sorted(doc["plans"].items(), key=lambda item: item[0] != DEFAULT_PLAN):
        base = merged.get(name, merged[DEFAULT_PLAN])
        merged[name] = {**base, **kinds} if isinstance(kinds, dict) and isinstance(base, dict) else kinds
    try:
        return Plans.model_validate({**doc, "plans": merged})
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"rate_limits_file {path} is not valid: {problems}") from None


# -- buckets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The outcome of a take: ``remaining`` tokens in the bucket, ``retry_after`` seconds until the
    refused cost would be allowed (0 when allowed)."""

    allowed: bool
    remaining: float
    retry_after: float


def _check_request(requests: Sequence[tuple[str, Limit]], cost: float) -> None:
    if not (cost > 0 and math.isfinite(cost)):
        raise ValueError(f"a rate-limit cost must be a positive number, not {cost}")
    keys = [key for key, _ in requests]
    if len(set(keys)) != len(keys):
        raise ValueError(f"the same bucket is named twice in one take: {keys}")
    for key, limit in requests:
        if cost > limit.burst:
            raise ValueError(f"cost {cost:g} can never be allowed by bucket '{key}', which holds at most "
                             f"{limit.burst}; raise the burst or lower the cost")


class RateLimiter(ABC):
    """Token buckets by key. ``take_many`` is all or nothing: tokens are taken from every bucket
    or from none, so a request refused by one limit does not use up another."""

    @abstractmethod
    def take_many(self, requests: Sequence[tuple[str, Limit]], cost: float = 1) -> list[Decision]:
        """Take ``cost`` tokens from each bucket ``(key, limit)`` if all have them. Every decision
        has the same ``allowed``; a refusing bucket has ``retry_after > 0``."""

    @abstractmethod
    def reset(self, key: str) -> None:
        """Forget the bucket ``key`` (it is full again)."""

    def take(self, key: str, limit: Limit, cost: float = 1) -> Decision:
        """Take ``cost`` tokens from the bucket ``key`` if it has them."""
        return self.take_many([(key, limit)], cost)[0]


class MemoryRateLimiter(RateLimiter):
    """Buckets in this process's memory (thread-safe; every process has its own). ``clock`` is a
    monotonic clock in seconds, injectable for tests."""

    SWEEP_EVERY = 1024  # takes between two sweeps of buckets that are full again

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> (tokens, at, full again at)
        self._takes = 0

    def __len__(self) -> int:
        """The number of buckets held (a full bucket is forgotten at the next sweep)."""
        return len(self._buckets)

    def take_many(self, requests: Sequence[tuple[str, Limit]], cost: float = 1) -> list[Decision]:
        _check_request(requests, cost)
        with self._lock:
            now = self._clock()
            levels = []
            for key, limit in requests:
                state = self._buckets.get(key)
                levels.append(float(limit.burst) if state is None else
                              min(limit.burst, state[0] + max(0.0, now - state[1]) * limit.rate))
            allowed = all(level >= cost for level in levels)
            decisions = []
            for (key, limit), level in zip(requests, levels, strict=True):
                if allowed:
                    left = level - cost
                    self._buckets[key] = (left, now, now + (limit.burst - left) / limit.rate)
                    decisions.append(Decision(True, left, 0.0))
                else:
                    decisions.append(Decision(False, level, max(0.0, (cost - level) / limit.rate)))
            self._takes += 1
            if self._takes % self.SWEEP_EVERY == 0:
                self._sweep(now)
            return decisions

    def reset(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)

    def sweep(self) -> None:
        """Forget every bucket that is full again (as Redis expires them); also done every
        ``SWEEP_EVERY`` takes, so memory stays bounded by the active keys."""
        with self._lock:
            self._sweep(self._clock())

    def _sweep(self, now: float) -> None:
        for key in [key for key, (_, _, full_at) in self._buckets.items() if full_at <= now]:
            del self._buckets[key]


# KEYS: the buckets; ARGV[1]: the cost; ARGV[2i], ARGV[2i+1]: rate and burst of KEYS[i].
# Reply: allowed (0/1), then remaining and retry_after of each bucket as text (Lua numbers would be
# truncated to integers). The server's TIME is the clock, so all clients agree on it.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local levels = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local level = burst
  if state[1] and state[2] then
    level = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
  end
  levels[i] = level
  if level < cost then allowed = 0 end
end
local out = {allowed}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local level = levels[i]
  local retry = 0
  if allowed == 1 then
    level = level - cost
    redis.call('HSET', key, 'tokens', string.format('%.17g', level), 'ts', string.format('%.6f', now))
    redis.call('PEXPIRE', key, math.min(1e12, math.ceil((burst - level) / rate * 1000) + 1))
  elseif level < cost then
    retry = (cost - level) / rate
  end
  out[#out + 1] = string.format('%.17g', level)
  out[#out + 1] = string.format('%.17g', retry)
end
return out
"""


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError("redis_url is set but the redis client is not installed: "
                          "pip install 'workbench[redis]' (or unset redis_url for in-process limits)") from None
    return redis


def _redact(url: str) -> str:
    """``url`` without its user and password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or parts.path or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path if parts.hostname else ''}"


class RedisRateLimiter(RateLimiter):
    """Buckets in Redis, shared by every process using the same server. Keys are ``prefix + key``
    hashes that expire when the bucket would be full again. Fails closed: when Redis cannot be
    reached a take raises TransientError rather than allowing the request."""

    def __init__(self, client: Any, *, prefix: str = KEY_PREFIX, where: str = "Redis") -> None:
        self.client = client
        self.prefix = prefix
        self._where = where
        self._script = client.register_script(_LUA)
        self._redis_error: type[Exception] = _import_redis().RedisError

    @classmethod
    def from_url(cls, url: str, *, prefix: str = KEY_PREFIX, timeout: float = 2.0) -> RedisRateLimiter:
        """A limiter on the Redis at ``url`` (``redis://host:port/db``); nothing is sent yet."""
        redis = _import_redis()
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix=prefix, where=_redact(url))

    def ping(self) -> None:
        """Check that Redis answers (TransientError if not)."""
        self._call(self.client.ping)

    def take_many(self, requests: Sequence[tuple[str, Limit]], cost: float = 1) -> list[Decision]:
        _check_request(requests, cost)
        args: list[float] = [cost]
        for _, limit in requests:
            args += [limit.rate, limit.burst]
        reply = self._call(lambda: self._script(keys=[self.prefix + key for key, _ in requests], args=args))
        allowed = bool(int(reply[0]))
        return [Decision(allowed, float(reply[1 + 2 * i]), float(reply[2 + 2 * i])) for i in range(len(requests))]

    def reset(self, key: str) -> None:
        self._call(lambda: self.client.delete(self.prefix + key))

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._redis_error as exc:
            raise TransientError(f"rate limits are unavailable: Redis at {self._where} failed ({exc}); "
                                 "requests are refused until it answers again (start Redis or fix the "
                                 "redis_url setting)") from None


_LIMITERS: dict[tuple[str, str], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def rate_limiter(settings: Settings) -> RateLimiter:
    """This process's limiter: Redis when ``settings.redis_url`` is set (a ConfigError when it does
    not answer: limits fail closed), else in-process (one per workbench home)."""
    key = ("redis", settings.redis_url) if settings.redis_url else ("memory", str(settings.home))
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            if settings.redis_url:
                redis_limiter = RedisRateLimiter.from_url(settings.redis_url)
                try:
                    redis_limiter.ping()
                except TransientError:
                    raise ConfigError(f"redis_url points at {_redact(settings.redis_url)}, which does not answer; "
                                      "start Redis there, fix redis_url (WORKBENCH_REDIS_URL), or unset it for "
                                      "in-process rate limits (one process only)") from None
                limiter = redis_limiter
            else:
                limiter = MemoryRateLimiter()
            _LIMITERS[key] = limiter
        return limiter


# -- limits applied -----------------------------------------------------------------------------


def _retry_text(seconds: float) -> str:
    # Rounded up, so that retrying after the time shown succeeds.
    if seconds < 10:
        return f"{math.ceil(round(seconds * 10, 6)) / 10:.1f} s"
    if seconds < 120:
        return f"{math.ceil(round(seconds, 6))} s"
    return f"{math.ceil(round(seconds / 60, 6))} min"


def _who(user: str) -> str:
    kind, _, name = user.partition(":")
    if name and kind == "token":
        return f"API token {name}"
    return f"user {name}" if name and kind in ("user", "local") else f"user {user}"


class RateLimitedError(WorkbenchError):
    """A rate limit refused the request. ``kind`` is ``user``, ``org``, ``login`` or
    ``login_address``; ``subject`` who or what was limited; ``retry_after`` the seconds to wait."""

    def __init__(self, kind: str, subject: str, limit: Limit, retry_after: float) -> None:
        self.kind = kind
        self.subject = subject
        self.limit = limit
        self.retry_after = retry_after
        what = {"user": f"too many requests for {_who(subject)}",
                "org": f"too many requests for organisation {subject}",
                "login": f"too many login attempts for {subject}",
                "login_address": f"too many login attempts from {subject}"}[kind]
        super().__init__(f"{what} (limit {limit}): retry in {_retry_text(retry_after)}")


def _take_or_raise(limiter: RateLimiter, buckets: list[tuple[str, str, str, Limit]], cost: float) -> Decision:
    """``buckets`` are ``(kind, subject, key, limit)``; one decision for all of them."""
    if not buckets:
        return Decision(True, math.inf, 0.0)
    decisions = limiter.take_many([(key, limit) for _, _, key, limit in buckets], cost)
    if decisions[0].allowed:
        return Decision(True, min(d.remaining for d in decisions), 0.0)
    # The longest wait is the one that matters: the request needs every bucket.
    worst = max(range(len(buckets)), key=lambda i: decisions[i].retry_after)
    kind, subject, _, limit = buckets[worst]
    raise RateLimitedError(kind, subject, limit, decisions[worst].retry_after)


def enforce(limiter: RateLimiter, plans: Plans, *, plan: str, user: str | None, org_id: str | None,
            cost: float = 1) -> Decision:
    """Take ``cost`` tokens from the user's bucket and the organisation's, under the organisation's
    ``plan``, or raise RateLimitedError naming the limit. All or nothing: a request the
    organisation's limit refuses does not use up the user's tokens, nor the other way round.

    ``user`` is a stable identity such as the request context's ``actor`` (``user:ana@example.com``,
    ``token:<id>``); either may be None (nothing is limited when both are).
    """
    limits = plans.limits(plan)
    buckets = []
    if user:
        buckets.append(("user", user, f"user:{user}", limits.user))
    if org_id:
        buckets.append(("org", org_id, f"org:{org_id}", limits.org))
    return _take_or_raise(limiter, buckets, cost)


def _login_key(login: str) -> str:
    # Case and surrounding blanks do not make a new login name (no way around the limit).
    return f"login:{login.strip().casefold()}"


def check_login(limiter: RateLimiter, plans: Plans, *, login: str, address: str | None,
                plan: str = DEFAULT_PLAN) -> Decision:
    """Count one login attempt for ``login`` and from the client ``address`` (when known), before
    the password is checked, or raise RateLimitedError with the retry time. The organisation is
    not known yet at login, so ``plan`` defaults to the default plan."""
    limits = plans.limits(plan)
    buckets = [("login", login, _login_key(login), limits.login)]
    if address:
        buckets.append(("login_address", address, f"login-address:{address}", limits.address_limit))
    return _take_or_raise(limiter, buckets, 1)


def login_succeeded(limiter: RateLimiter, *, login: str) -> None:
    """Give ``login`` its full attempts back after a successful login (the per-address bucket is
    kept: one valid account must not reset guessing at others)."""
    limiter.reset(_login_key(login))
