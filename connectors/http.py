"""What every platform client shares: retries, rate limits, auth and errors that say what to fix.

``ApiClient`` wraps one ``httpx.Client`` for one connection:

- every call first takes a token from the connection's ``RateLimiter`` (one per connection id
  in this process, shared by ingestion and platform writes), which also holds the pauses the
  platform asks for (``Retry-After``, Meta's usage headers, throttle codes);
- each response goes through the platform's ``check`` hook, which reads its own signals (usage
  headers, error codes in bodies) and may return the error to raise; otherwise the status code
  decides: 401 refreshes the credentials once and repeats the call, 408/5xx/timeouts/dropped
  connections/malformed JSON are transient, 429 is a throttle, 403/404 are access errors and
  any other 4xx a request error;
- transient errors are retried (tenacity) with full-jitter exponential back-off, or after the
  wait the platform stated; a stated wait longer than ``max_wait`` stops the run with a final
  ``QuotaExceededError`` that says when to run again instead of sleeping for hours;
- messages never carry a token: every secret the auth knows is masked before an error is raised.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from workbench.notify._http import retry_after  # one parser of Retry-After for every client
from workbench.errors import (
    AccessError,
    ApiError,
    AuthError,
    QuotaExceededError,
    RequestError,
    ThrottledError,
    TransientApiError,
)

log = logging.getLogger("connectors.http")
USER_AGENT = "workbench-connectors/0.1"
T = TypeVar("T")


class _NoQueryInLoggedUrls(logging.Filter):
    """httpx logs every URL whole at INFO; a query can hold a credential (the signature of a
    presigned report URL), so it is dropped from those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(a.copy_with(query=None) if isinstance(a, httpx.URL) and a.query else a
                                for a in record.args)
        return True


if not any(isinstance(f, _NoQueryInLoggedUrls) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_NoQueryInLoggedUrls())


# -- retry policy ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries. From a connection's settings (all optional):
    ``timeout_seconds`` (60), ``max_attempts`` (6), ``backoff_seconds`` (1: the first back-off's
    upper bound; it doubles per attempt up to ``backoff_max_seconds``, 60) and
    ``max_wait_seconds`` (900: the longest platform-stated wait worth sleeping through)."""

    timeout: float = 60.0
    max_attempts: int = 6
    backoff: float = 1.0
    backoff_max: float = 60.0
    max_wait: float = 900.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RetryPolicy:
        d = cls()
        return cls(timeout=float(settings.get("timeout_seconds", d.timeout)),
                   max_attempts=max(1, int(settings.get("max_attempts", d.max_attempts))),
                   backoff=float(settings.get("backoff_seconds", d.backoff)),
                   backoff_max=float(settings.get("backoff_max_seconds", d.backoff_max)),
                   max_wait=float(settings.get("max_wait_seconds", d.max_wait)))

    def wait(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the platform's own wait when it gave
        one (plus a little jitter so parallel clients do not return at once), else full jitter."""
        stated = getattr(error, "retry_after", None)
        if stated is not None:
            return float(stated) + random.uniform(0, min(1.0, self.backoff))
        return random.uniform(0, min(self.backoff_max, self.backoff * 2 ** (attempt - 1)))


# -- rate limiting ---------------------------------------------------------------------------

class RateLimiter:
    """A token bucket plus the pauses a platform asks for, shared by every caller of one
    connection in this process (threads included)."""

    def __init__(self, rate: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a call may go out; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    delay = self._paused_until - now
                else:
                    if self.rate > 0:
                        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                    self._stamp = now
                    if self.rate <= 0 or self._tokens >= 1:
                        self._tokens -= 1 if self.rate > 0 else 0
                        return waited
                    delay = (1 - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Let no call out for ``seconds`` (the platform asked us to wait)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    @property
    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - self._clock())


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(key: str, rate: float, burst: int = 1) -> RateLimiter:
    """The process-wide limiter of ``key`` (a connection id), created on first use."""
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(rate, burst)
        return limiter


# -- auth ------------------------------------------------------------------------------------

class Auth:
    """Credentials that put a token on each call. Subclasses that can obtain a new token
    (OAuth2 refresh, a login exchange) override ``fetch``; a static token cannot refresh."""

    header = "Authorization"
    prefix = "Bearer "
    skew = 60.0  # renew this many seconds before the stated expiry

    def __init__(self, token: str | None = None, expires_at: float | None = None,
                 on_token: Callable[[dict[str, str]], None] | None = None) -> None:
        self.token = token or None
        self.expires_at = expires_at
        self.on_token = on_token
        self.renewals = 0

    def fetch(self, client: ApiClient) -> tuple[str, float | None, dict[str, str]]:
        """A new token, its expiry (epoch seconds) and credential fields to store."""
        raise AuthError("the access token was rejected; create a new one and update the "
                        "connection (workbench connections add ... --update)", platform=client.platform)

    def secrets(self) -> list[str]:
        """Every secret this auth holds, masked in error messages."""
        return [self.token] if self.token else []

    def headers(self, client: ApiClient) -> dict[str, str]:
        if self.token is None or (self.expires_at is not None and time.time() > self.expires_at - self.skew):
            self.renew(client)
        return {self.header: f"{self.prefix}{self.token}"}

    def renew(self, client: ApiClient) -> None:
        token, expires_at, stored = self.fetch(client)
        self.token, self.expires_at = token, expires_at
        self.renewals += 1
        if self.on_token is not None:
            self.on_token({**stored, "access_token": token,
                           "expires_at": "" if expires_at is None else str(int(expires_at))})


class NoAuth(Auth):
    """For calls that authenticate themselves (token endpoints)."""

    def headers(self, client: ApiClient) -> dict[str, str]:
        return {}


def stored_expiry(credentials: Mapping[str, str]) -> float | None:
    value = credentials.get("expires_at")
    return float(value) if value else None


class OAuth2Refresh(Auth):
    """OAuth2 ``refresh_token`` grant against ``token_url`` (DV360, HubSpot, Salesforce).

    The new access token (and a rotated refresh token, when the server sends one) is handed to
    ``on_token`` so the connection stores it encrypted; ``on_response`` sees the whole token
    response (Salesforce's ``instance_url``)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, refresh_token: str, *,
                 token: str | None = None, expires_at: float | None = None,
                 on_token: Callable[[dict[str, str]], None] | None = None,
                 on_response: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(token, expires_at, on_token)
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.on_response = on_response

    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.client_secret, self.refresh_token) if s]

    def fetch(self, client: ApiClient) -> tuple[str, float | None, dict[str, str]]:
        if not self.refresh_token:
            raise AuthError("the connection has no refresh token; add it with "
                            "workbench connections add ... --update", platform=client.platform)
        try:
            response = client.request("POST", self.token_url, what="token refresh", auth=False, data={
                "grant_type": "refresh_token", "refresh_token": self.refresh_token,
                "client_id": self.client_id, "client_secret": self.client_secret})
        except (RequestError, AccessError) as exc:
            raise AuthError("the token endpoint refused the refresh token (revoked, expired or for "
                            "another client); authorise the connection again with workbench "
                            f"connections add ... --update ({exc})", platform=client.platform,
                            status=exc.status) from None
        body = client.decode(response, "token refresh")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise AuthError("the token endpoint answered without an access_token",
                            platform=client.platform)
        stored: dict[str, str] = {}
        if body.get("refresh_token") and body["refresh_token"] != self.refresh_token:
            self.refresh_token = stored["refresh_token"] = str(body["refresh_token"])
        if self.on_response is not None:
            self.on_response(body)
        expires_in = body.get("expires_in")
        expires_at = time.time() + float(expires_in) if expires_in else None
        return str(token), expires_at, stored


class MalformedResponseError(TransientApiError):
    """A 2xx answer whose body does not parse (a truncated page); retried."""


# -- the client ------------------------------------------------------------------------------

Check = Callable[[httpx.Response], ApiError | None]


class ApiClient:
    """One connection's HTTP client: limiter, auth, retries and error classification."""

    def __init__(self, platform: str, base_url: str, *, auth: Auth | None = None,
                 limiter: RateLimiter | None = None, policy: RetryPolicy | None = None,
                 check: Check | None = None, headers: Mapping[str, str] | None = None,
                 secrets: list[str] | None = None) -> None:
        self.platform = platform
        self.policy = policy or RetryPolicy()
        self.auth = auth or NoAuth()
        self.limiter = limiter or RateLimiter(0)
        self.check = check
        self.extra_secrets = [s for s in (secrets or []) if s]
        self.calls = 0
        self.retries = 0
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=self.policy.timeout,
                                 headers={"User-Agent": USER_AGENT, **(headers or {})})

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return str(self.http.base_url)

    def set_base_url(self, url: str) -> None:
        self.http.base_url = httpx.URL(url.rstrip("/"))

    # -- masking -------------------------------------------------------------------------

    def mask(self, text: str) -> str:
        for secret in [*self.auth.secrets(), *self.extra_secrets]:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    # -- calls ---------------------------------------------------------------------------

    def request(self, method: str, url: str, *, what: str, auth: bool = True,
                params: Mapping[str, Any] | None = None, json: Any = None,
                data: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                attempts: int | None = None) -> httpx.Response:
        """Send one call with retries; return the 2xx response or raise an ``ApiError``.

        ``what`` names the call in errors ("insights for act_1, 2026-11-01..07"); ``attempts``
        overrides the policy's ``max_attempts`` (1 for a write whose lost answer must be re-read
        rather than sent again)."""
        refreshed = [False]

        def attempt() -> httpx.Response:
            return self._once(method, url, what=what, auth=auth, params=params, json=json,
                              data=data, headers=headers, refreshed=refreshed)

        def before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            error = state.outcome.exception() if state.outcome else None
            log.info("%s: %s; retrying (attempt %d of %d)", self.platform, error,
                     state.attempt_number + 1, self.policy.max_attempts)

        retrying = Retrying(
            stop=stop_after_attempt(attempts or self.policy.max_attempts),
            wait=lambda s: self.policy.wait(s.attempt_number,
                                            s.outcome.exception() if s.outcome else None),
            retry=retry_if_exception_type(TransientApiError),
            before_sleep=before_sleep, reraise=True)
        return retrying(attempt)

    def _once(self, method: str, url: str, *, what: str, auth: bool, params: Mapping[str, Any] | None,
              json: Any, data: Mapping[str, Any] | None, headers: Mapping[str, str] | None,
              refreshed: list[bool]) -> httpx.Response:
        self.limiter.acquire()
        sent = {**(self.auth.headers(self) if auth else {}), **(headers or {})}
        self.calls += 1
        try:
            response = self.http.request(method, url, params=params, json=json, data=data, headers=sent)
        except httpx.TimeoutException:
            raise TransientApiError(f"{self.platform} {what}: no answer within "
                                    f"{self.policy.timeout:g} s (setting timeout_seconds)",
                                    platform=self.platform) from None
        except httpx.TransportError as exc:
            raise TransientApiError(self.mask(f"{self.platform} {what}: {type(exc).__name__}: {exc}"),
                                    platform=self.platform) from None
        log.debug("%s %s %s -> %d", self.platform, method, response.url.path, response.status_code)
        error = self.check(response) if self.check is not None else None
        if error is not None:  # a platform message may quote what it was sent
            error.args = (self.mask(str(error)),)
        if error is None:
            if response.is_success:
                return response
            if response.status_code == 401 and auth and not refreshed[0]:
                refreshed[0] = True
                self.auth.renew(self)  # a 401 mid-sync: new token, then the same call again
                return self._once(method, url, what=what, auth=auth, params=params, json=json,
                                  data=data, headers=headers, refreshed=refreshed)
            error = self.classify(response, what)
        error.platform = error.platform or self.platform
        if isinstance(error, ThrottledError) and error.retry_after is not None:
            if error.retry_after > self.policy.max_wait:
                until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=error.retry_after)
                raise QuotaExceededError(
                    f"{error}; the platform asks to wait {error.retry_after / 60:.0f} min, longer "
                    f"than max_wait_seconds ({self.policy.max_wait:g}): run again after "
                    f"{until:%Y-%m-%d %H:%M} UTC", platform=self.platform, status=error.status,
                    retry_after=error.retry_after)
            self.limiter.pause(error.retry_after)
        raise error

    def classify(self, response: httpx.Response, what: str) -> ApiError:
        """The error a non-2xx response means, by status code alone."""
        status = response.status_code
        detail = " ".join(self.mask(response.text).split())[:300]  # mask first: never half a secret
        message = f"{self.platform} {what}: HTTP {status}" + (f": {detail}" if detail else "")
        wait = retry_after(response.headers.get("Retry-After"))
        if status == 429 or (status == 503 and wait is not None):  # a 503 with a stated wait: overloaded
            return ThrottledError(message, status=status, retry_after=wait)
        if status == 408 or status >= 500:
            return TransientApiError(message, status=status)
        if status == 401:
            return AuthError(f"{message}. The credentials were refused even after a refresh: "
                             "update them with workbench connections add ... --update", status=status)
        if status in (403, 404):
            return AccessError(f"{message}. Check that the credentials can reach this account "
                               "(workbench connections test lists the accounts they reach)", status=status)
        return RequestError(message, status=status)

    def decode(self, response: httpx.Response, what: str) -> Any:
        """The JSON body; a body that is not JSON is a malformed page, retried as transient."""
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MalformedResponseError(f"{self.platform} {what}: the response is not valid JSON "
                                    f"({len(response.content)} bytes)", platform=self.platform,
                                    status=response.status_code) from None

    def get_json(self, url: str, *, what: str, **kwargs: Any) -> Any:
        """GET and decode JSON; a body that does not parse, or that ``validate`` (body -> problem
        or None) finds wrong, is retried like any transient failure."""
        return self._json("GET", url, what=what, **kwargs)

    def post_json(self, url: str, *, what: str, **kwargs: Any) -> Any:
        return self._json("POST", url, what=what, **kwargs)

    def put_json(self, url: str, *, what: str, **kwargs: Any) -> Any:
        return self._json("PUT", url, what=what, **kwargs)

    def _json(self, method: str, url: str, *, what: str,
              validate: Callable[[Any], str | None] | None = None, **kwargs: Any) -> Any:
        def parse(response: httpx.Response) -> Any:
            body = self.decode(response, what)
            problem = validate(body) if validate is not None else None
            if problem:  # a page missing its data or paging block: ask again
                raise MalformedResponseError(f"{self.platform} {what}: malformed response: {problem}",
                                             platform=self.platform)
            return body

        return self.fetch(method, url, what=what, parse=parse, **kwargs)

    def fetch(self, method: str, url: str, *, what: str, parse: Callable[[httpx.Response], T],
              **kwargs: Any) -> T:
        """Send a call and parse its body; a body ``parse`` rejects with ``MalformedResponseError``
        (a truncated page or file) is fetched again, up to ``max_attempts`` times."""
        # request() already retried transport and status failures; this retries bodies only
        retrying = Retrying(stop=stop_after_attempt(kwargs.get("attempts") or self.policy.max_attempts),
                            wait=lambda s: self.policy.wait(s.attempt_number, None),
                            retry=retry_if_exception_type(MalformedResponseError), reraise=True)
        return retrying(lambda: parse(self.request(method, url, what=what, **kwargs)))
