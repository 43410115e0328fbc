"""The shared platform client: retries, platform-stated waits, auth refresh, limits, masking."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from platform_fakes import FakePlatform, Reply

from connectors.http import ApiClient, Auth, OAuth2Refresh, RateLimiter, RetryPolicy, limiter_for
from workbench.errors import (
    AccessError,
    AuthError,
    QuotaExceededError,
    RequestError,
    ThrottledError,
    TransientApiError,
)

FAST = RetryPolicy(timeout=0.5, max_attempts=5, backoff=0.01, backoff_max=0.02, max_wait=5)


class Echo(FakePlatform):
    """Answers ``GET /items`` with a page and ``POST /oauth/token`` as an OAuth2 server."""

    def __init__(self) -> None:
        super().__init__()
        self.refresh_tokens.add("refresh-secret-1")
        self.access_tokens.update({"tok", "tok-static", "tok-secret-abc"})  # long-lived tokens
        self.route("GET", "/items", lambda r: Reply(200, {"items": [1, 2, 3]}))
        self.route("POST", "/oauth/token", self.oauth_token, auth=False)


@pytest.fixture
def fake():
    with Echo() as f:
        yield f


def oauth_client(fake: Echo, stored: list[dict[str, str]], policy: RetryPolicy = FAST) -> ApiClient:
    auth = OAuth2Refresh(f"{fake.url}/oauth/token", "client-id", "client-secret-xyz", "refresh-secret-1",
                         on_token=stored.append)
    return ApiClient("demo", fake.url, auth=auth, policy=policy)


def test_first_call_fetches_a_token_and_a_401_mid_sync_refreshes_once_and_continues(fake):
    stored: list[dict[str, str]] = []
    with oauth_client(fake, stored) as client:
        assert client.get_json("/items", what="items") == {"items": [1, 2, 3]}
        fake.expire_tokens()
        assert client.get_json("/items", what="items") == {"items": [1, 2, 3]}
    assert fake.tokens_issued == 2 and len(stored) == 2
    assert stored[-1]["access_token"] in fake.access_tokens and stored[-1]["expires_at"]
    # the token went in a header, never in a URL
    assert all("access-" not in (r.path + str(r.query)) for r in fake.log)


def test_a_revoked_refresh_token_is_a_final_auth_error_that_says_what_to_do(fake):
    fake.refresh_tokens.clear()
    with oauth_client(fake, []) as client, pytest.raises(AuthError, match="authorise the connection again") as e:
        client.get_json("/items", what="items")
    assert "refresh-secret-1" not in str(e.value) and "client-secret-xyz" not in str(e.value)
    assert len(fake.requests_to("/oauth/token")) == 1  # not retried


def test_transient_failures_are_retried_until_the_answer_arrives(fake):
    fake.fail_next("500", "503", "drop", "slow", "429", "malformed", path="/items")
    with ApiClient("demo", fake.url, auth=Auth("tok-static"), policy=RetryPolicy(
            timeout=0.3, max_attempts=8, backoff=0.01, backoff_max=0.02)) as client:
        assert client.get_json("/items", what="items") == {"items": [1, 2, 3]}
        assert client.calls == 7
    assert fake.faults_served == ["500", "503", "drop", "slow", "429", "malformed"]


def test_retries_stop_after_max_attempts_with_the_last_error(fake):
    fake.fail_next(*["503"] * 10, path="/items")
    with ApiClient("demo", fake.url, auth=Auth("tok"), policy=FAST) as client, \
            pytest.raises(TransientApiError, match="items: HTTP 503"):
        client.get_json("/items", what="items")
    assert len(fake.requests_to("/items")) == FAST.max_attempts


def test_a_stated_wait_is_honoured_and_shared_through_the_limiter(fake):
    fake.fail_next(Reply(429, {"error": "slow down"}, {"Retry-After": "1"}), path="/items")
    limiter = RateLimiter(0)
    with ApiClient("demo", fake.url, auth=Auth("tok"), limiter=limiter, policy=FAST) as client:
        started = time.monotonic()
        client.get_json("/items", what="items")
        elapsed = time.monotonic() - started
    calls = fake.requests_to("/items")
    assert len(calls) == 2
    assert elapsed >= 1.0  # waited what the platform asked, not the 10 ms back-off


def test_a_wait_longer_than_max_wait_stops_with_a_quota_error_naming_when_to_rerun(fake):
    fake.fail_next(Reply(429, {}, {"Retry-After": "7200"}), path="/items")
    with ApiClient("demo", fake.url, auth=Auth("tok"), policy=FAST) as client, \
            pytest.raises(QuotaExceededError, match=r"wait 120 min.*run again after"):
        client.get_json("/items", what="items")
    assert len(fake.requests_to("/items")) == 1


@pytest.mark.parametrize(("status", "error", "text"), [
    (403, AccessError, "can reach this account"),
    (404, AccessError, "can reach this account"),
    (400, RequestError, "HTTP 400"),
])
def test_client_errors_are_final_and_not_retried(fake, status, error, text):
    fake.fail_next(Reply(status, {"message": "nope"}), path="/items")
    with ApiClient("demo", fake.url, auth=Auth("tok"), policy=FAST) as client, pytest.raises(error, match=text):
        client.get_json("/items", what="items")
    assert len(fake.requests_to("/items")) == 1


def test_a_static_token_that_is_refused_is_an_auth_error(fake):
    with ApiClient("demo", fake.url, auth=Auth("tok-not-known"), policy=FAST) as client, \
            pytest.raises(AuthError, match="create a new one") as e:
        client.get_json("/items", what="items")
    assert "tok-not-known" not in str(e.value)


def test_secrets_echoed_by_a_platform_are_masked_in_errors_and_logs(fake, caplog):
    fake.fail_next(*[Reply(500, {"error": "bad token tok-secret-abc"})] * 10, path="/items")
    caplog.set_level(logging.DEBUG)
    with ApiClient("demo", fake.url, auth=Auth("tok-secret-abc"), policy=FAST) as client, \
            pytest.raises(TransientApiError) as e:
        client.get_json("/items", what="items")
    assert "tok-secret-abc" not in str(e.value) and "***" in str(e.value)
    assert "tok-secret-abc" not in caplog.text


def test_a_validate_hook_retries_a_page_missing_its_data(fake):
    fake.fail_next(Reply(200, {"unexpected": True}), path="/items")
    with ApiClient("demo", fake.url, auth=Auth("tok"), policy=FAST) as client:
        body = client.get_json("/items", what="items",
                               validate=lambda b: None if "items" in b else "no 'items' list")
    assert body["items"] == [1, 2, 3] and len(fake.requests_to("/items")) == 2


def test_the_token_bucket_spaces_calls_and_pauses_hold_everyone():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(2.0, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.acquire()
    assert sum(slept) == pytest.approx(1.0)  # two free (burst), then one every 0.5 s
    limiter.pause(10)
    assert limiter.paused_for == pytest.approx(10)
    limiter.acquire()
    assert now[0] >= 11.0


def test_one_limiter_per_connection_is_shared_across_threads():
    a = limiter_for("conn-shared-test", 1000, 1)
    assert limiter_for("conn-shared-test", 1, 1) is a
    hits: list[float] = []
    limiter = RateLimiter(50.0, burst=1)

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            hits.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(hits) == 20  # every call got through; the bucket serialised them


def test_throttled_errors_carry_the_platform_wait(fake):
    fake.fail_next(*[Reply(429, {}, {"Retry-After": "0"})] * 10, path="/items")
    with ApiClient("demo", fake.url, auth=Auth("tok"), policy=FAST) as client, \
            pytest.raises(ThrottledError) as e:
        client.get_json("/items", what="items")
    assert e.value.retry_after == 0 and e.value.platform == "demo"
