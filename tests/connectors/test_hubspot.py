"""The HubSpot connector against a local HubSpot: search paging, tokens, throttling, faults, and
what lands in bronze, silver and gold."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from decimal import Decimal
from typing import Any

import httpx
import polars as pl
import pytest
from connector_helpers import FAST, connect, workspace
from fake_hubspot import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, FakeHubSpot, deal

from connectors.base import Account, ConnectionConfig, Window
from connectors.hubspot import PROPERTIES, SEARCH_PATH, HubSpotConnector, epoch_ms
from connectors.registry import connectors
from connectors.synthetic import SyntheticConnector
from workbench import connections
from workbench.errors import (
    AccessError,
    AuthError,
    QuotaExceededError,
    RequestError,
    ThrottledError,
    ValidationError,
)
from workbench.oltp import repo

CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}
TODAY = dt.datetime.now(dt.UTC).date()
START, END = TODAY - dt.timedelta(days=4), TODAY - dt.timedelta(days=1)
WINDOW = Window(START, END)
LINEAGE = ("org_id", "connection_id", "source_batch_id", "extracted_at", "record_index")


def at(days_ago: int, hour: int = 12, minute: int = 0, second: int = 0, ms: int = 0) -> dt.datetime:
    day = TODAY - dt.timedelta(days=days_ago)
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, ms * 1000, tzinfo=dt.UTC)


def seed(fake: FakeHubSpot) -> None:
    """A few deals around the window: currencies, open/won/lost, UTMs, window-edge timestamps."""
    fake.add(
        deal(101, at(5, 10), at(5), 1200, utm=("facebook", "paid_social", "spring_sale")),
        deal(102, at(4, 9), at(3, 9), 2500.5, currency="EUR", won=True, close_date=TODAY - dt.timedelta(days=3),
             utm=("dv360", "display", "io-42")),
        deal(103, at(3, 8), at(2, 8), 800, currency="GBP", won=False, close_date=TODAY - dt.timedelta(days=2)),
        deal(104, at(2, 7), at(2, 23, 59, 59, 999), 450, utm=("facebook", "paid_social", "spring_sale")),
        deal(105, at(1, 6), at(1, 0), 15000, won=True, close_date=TODAY - dt.timedelta(days=1),
             utm=("facebook", "paid_social", "retargeting")),
        deal(106, at(1, 11), at(0, 0, 30), 99.99),
        deal(107, at(6, 10), at(6), 70),
        deal(108, at(2, 9), at(2, 10), 300, currency=None),  # a single-currency portal's deal
    )


@pytest.fixture(autouse=True)
def registered() -> None:
    connectors.register("hubspot", HubSpotConnector)


@pytest.fixture
def fake():
    with FakeHubSpot() as f:
        f.slow_seconds = 0.6  # past FAST's 0.5 s timeout
        seed(f)
        yield f


def modified_in(fake: FakeHubSpot, start: dt.date, end: dt.date) -> list[str]:
    """Ids of the fake's deals with hs_lastmodifieddate in [start 00:00 UTC, end + 1 day)."""
    lo, hi = epoch_ms(start), epoch_ms(end + dt.timedelta(days=1))
    return sorted((d["id"] for d in fake.deals.values()
                   if lo <= epoch_ms_of(d["properties"]["hs_lastmodifieddate"]) < hi), key=int)


def epoch_ms_of(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def hubspot_ws(stores: Any, fake: FakeHubSpot, org: str = "acme", **settings: Any) -> Any:
    ws = workspace(stores, org)
    connect(ws, "hubspot", fake, dict(CREDENTIALS), **settings)
    return ws


def direct(fake: FakeHubSpot, stored: list[dict[str, str]] | None = None, **settings: Any) -> HubSpotConnector:
    """A connector outside any workspace (its own limiter: a connection id of its own)."""
    return HubSpotConnector(ConnectionConfig(
        org_id="acme", connection_id=f"hs-{uuid.uuid4().hex}", settings={"base_url": fake.url, **FAST, **settings},
        credentials=dict(CREDENTIALS), on_credentials=None if stored is None else stored.append))


def read_all(connector: HubSpotConnector, window: Window = WINDOW) -> list[dict[str, Any]]:
    try:
        return [r for page in connector.read(window) for r in page.records]
    finally:
        connector.close()


def searches(fake: FakeHubSpot) -> list[dict[str, Any]]:
    return [r.json() for r in fake.requests_to(SEARCH_PATH, "POST")]


def bronze(ws: Any) -> pl.DataFrame:
    return ws.table("bronze.raw_records")


def silver_deals(ws: Any) -> pl.DataFrame:
    return ws.table("silver.crm_deals").sort("deal_id")


# ---- the records and the requests ------------------------------------------------------------

def test_records_have_exactly_the_synthetic_hubspot_format(fake):
    config = ConnectionConfig(org_id="acme", connection_id="syn", settings={
        "platforms": [], "crms": ["hubspot"], "malformed_rate": 0, "as_of": "2026-11-25"})
    synthetic = next(iter(SyntheticConnector(config).read(Window(dt.date(2026, 11, 1), dt.date(2026, 11, 24)))))
    model = synthetic.records[0]
    records = read_all(direct(fake))
    assert [r["id"] for r in records] == modified_in(fake, START, END)
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    for r in records:
        assert set(r) == set(model) and set(r["properties"]) == set(model["properties"])
        assert type(r["archived"]) is type(model["archived"]) is bool
        assert all(v is None or isinstance(v, str) for v in r["properties"].values())
        for key in ("createdAt", "updatedAt"):
            assert stamp.match(r[key]) and stamp.match(model[key])
        assert r["properties"]["hs_object_id"] == r["id"]


def test_the_search_asks_for_the_window_by_modification_date_with_properties_in_the_body(fake):
    read_all(direct(fake, properties="hs_deal_score, hs_forecast_amount", page_size=3))
    calls = fake.requests_to(SEARCH_PATH)
    assert calls and all(r.method == "POST" and r.query == {} for r in calls)  # nothing in the URL
    assert all(r.header("authorization").startswith("Bearer access-") for r in calls)
    first = calls[0].json()
    assert first == {
        "filterGroups": [{"filters": [
            {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(epoch_ms(START))},
            {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": str(epoch_ms(TODAY))}]}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": [*PROPERTIES, "hs_deal_score", "hs_forecast_amount"], "limit": 3}
    # the next pages start after the last id seen (no offset cursor)
    assert [b["filterGroups"][0]["filters"][2:] for b in searches(fake)[1:]] == [
        [{"propertyName": "hs_object_id", "operator": "GT", "value": "104"}]]
    assert all("after" not in b for b in searches(fake))


def test_more_deals_than_the_search_cap_arrive_each_exactly_once(fake):
    fake.search_cap = 50  # HubSpot's is 10,000
    fake.add(*(deal(1000 + i, at(3, 8), at(3, i % 24, i % 60), 10 + i) for i in range(130)))
    records = read_all(direct(fake, page_size=20))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 135 and sorted(ids, key=int) == modified_in(fake, START, END)
    assert len(searches(fake)) == 7  # ceil(135 / 20): one request per page, none refused
    with direct(fake).client as client, pytest.raises(RequestError, match="cannot page beyond 50"):
        client.post_json(SEARCH_PATH, what="deal search", json={"limit": 20, "after": "60"})


def test_accounts_lists_the_portal_and_a_wrong_portal_id_stops_the_read(stores, fake):
    ws = hubspot_ws(stores, fake)
    assert connections.test(ws, "hubspot").rows() == [("62515", "HubSpot portal 62515", "USD", "STANDARD")]
    assert direct(fake).accounts() == [Account("62515", "HubSpot portal 62515", "USD", "STANDARD")]
    with pytest.raises(AccessError, match="reach portal 62515 .*not portal 99999 .*setting portal_id"):
        read_all(direct(fake, portal_id="99999"))
    assert read_all(direct(fake, portal_id=62515))


def test_settings_are_checked_when_the_connection_opens(fake):
    with pytest.raises(ValidationError, match="page_size must be 1..200"):
        direct(fake, page_size=500)
    with pytest.raises(ValidationError, match="has no client_secret, refresh_token"):
        HubSpotConnector(ConnectionConfig("acme", "c", credentials={"client_id": "x"}))


# ---- end to end --------------------------------------------------------------------------------

def test_ingest_and_transform_land_exactly_the_deals_served(stores, fake):
    ws = hubspot_ws(stores, fake)
    result = ws.ingest("hubspot", START, END)
    served = modified_in(fake, START, END)
    assert result.streams == {"hubspot.deals": len(served)} == {"hubspot.deals": 5} and result.gaps == []
    ws.transform()
    silver = silver_deals(ws)
    assert silver["deal_id"].to_list() == served
    for row in silver.iter_rows(named=True):
        props = fake.deals[row["deal_id"]]["properties"]
        assert row["amount"] == Decimal(props["amount"]).quantize(row["amount"])
        assert row["currency"] == (props["deal_currency_code"] or "USD")  # filled from the portal
        assert (row["stage"], row["is_won"], row["is_closed"]) == (
            props["dealstage"], props["hs_is_closed_won"] == "true", props["hs_is_closed"] == "true")
        assert row["created_at"].isoformat().replace("+00:00", "") == props["createdate"][:-5]
        assert row["utm_source"] == props["utm_source"]
    assert dict(zip(silver["deal_id"], silver["platform"], strict=True)) == {
        "102": "dv360", "103": None, "104": "meta", "105": "meta", "108": None}
    usd = silver.filter(pl.col("currency") == "USD")
    assert usd["amount_org"].to_list() == usd["amount"].to_list()
    assert ws.table("silver.quarantine").is_empty()
    assert ws.table("silver.ad_performance_daily").is_empty() and ws.table("silver.campaigns").is_empty()
    # gold: leads by creation date, wins by close date, in the org currency
    gold = ws.table("gold.crm_attribution_daily")
    created = silver.with_columns(pl.col("created_at").dt.date().alias("date"))
    for day in gold["date"].unique():
        on_day = gold.filter(pl.col("date") == day)
        made = created.filter(pl.col("date") == day)
        won = silver.filter(pl.col("is_won") & (pl.col("closed_at").dt.date() == day))
        assert on_day["leads"].sum() == made.height
        assert on_day["pipeline_value"].sum() == pytest.approx(float(made["amount_org"].fill_null(0).sum()))
        assert on_day["deals_won"].sum() == won.height
        assert on_day["won_value"].sum() == pytest.approx(float(won["amount_org"].fill_null(0).sum()))
    assert gold["leads"].sum() == 5 and gold["deals_won"].sum() == 2


def test_tokens_are_refreshed_mid_sync_stored_and_reused(stores, fake):
    ws = hubspot_ws(stores, fake, page_size=2)
    fake.expire_tokens_after(2)  # account details and the first page pass, then 401
    ws.ingest("hubspot", START, END)
    assert fake.tokens_issued == 2 and fake.faults_served == []
    conn = repo.get_connection(stores.db, "acme", "hubspot")
    stored = repo.decrypt_credentials(stores.settings.credentials_key, conn.credentials_encrypted)
    assert stored["access_token"] == fake.issued[-1] and int(stored["expires_at"]) > dt.datetime.now().timestamp()
    assert stored["refresh_token"] == REFRESH_TOKEN
    ws.ingest("hubspot", START, END)  # the stored token still works: no new one
    assert fake.tokens_issued == 2
    ws.transform()
    assert silver_deals(ws)["deal_id"].to_list() == modified_in(fake, START, END)


def test_transient_faults_still_land_every_deal_exactly_once(stores, fake):
    fake.add(*(deal(200 + i, at(2, 9), at(2, 9, i), 100 + i, currency="EUR") for i in range(30)))
    clean = hubspot_ws(stores, fake, "clean", page_size=4)
    clean.ingest("hubspot", START, END)
    clean.transform()
    fake.transient_rate = 0.2
    fake.expire_tokens_after(5)
    faulty = hubspot_ws(stores, fake, "faulty", page_size=4)
    result = faulty.ingest("hubspot", START, END)
    faulty.transform()
    assert len(set(fake.faults_served)) >= 3, fake.faults_served
    ids = [json.loads(p)["id"] for p in bronze(faulty)["payload"]]
    assert len(ids) == len(set(ids)) == result.rows == 35
    assert silver_deals(faulty).drop(LINEAGE).equals(silver_deals(clean).drop(LINEAGE))


def test_each_kind_of_transient_failure_is_retried(fake):
    fake.fail_next("500", "503", "429", "drop", "slow", "malformed", path="deals/search")
    assert [r["id"] for r in read_all(direct(fake))] == modified_in(fake, START, END)
    assert fake.faults_served == ["500", "503", "429", "drop", "slow", "malformed"]
    assert len(fake.requests_to(SEARCH_PATH)) == 7  # one page, asked for seven times


def test_rate_limits_wait_for_the_window_and_continue(fake):
    fake.interval_ms = 20
    fake.fail_next(fake.rate_limited("TEN_SECONDLY_ROLLING"), fake.rate_limited("SECONDLY", retry_after="0"),
                   path="deals/search")
    connector = direct(fake)
    client = connector.client
    assert [r["id"] for r in read_all(connector)] == modified_in(fake, START, END)
    assert client.retries == 2
    # what each 429 means, from the answers themselves
    checker = direct(fake)
    for reply, kind, wait in ((fake.rate_limited("TEN_SECONDLY_ROLLING"), ThrottledError, 0.02),
                              (fake.rate_limited("TEN_SECONDLY_ROLLING", retry_after="1"), ThrottledError, 1.0),
                              (fake.rate_limited("SECONDLY"), ThrottledError, 1.0),
                              (fake.rate_limited("DAILY"), QuotaExceededError, None)):
        fake.fail_next(reply)
        error = checker.check(httpx.post(f"{fake.url}{SEARCH_PATH}", json={}))
        assert isinstance(error, kind) and error.retry_after == wait
    assert checker.check(httpx.post(f"{fake.url}{SEARCH_PATH}", json={})) is None  # a 401: the client refreshes


def test_spent_rate_windows_pause_the_limiter_before_the_next_call(fake):
    fake.interval_ms = 5_000
    connector = direct(fake)
    connector.accounts()
    assert connector.client.limiter.paused_for == 0
    fake.remaining = 0
    connector.accounts()
    assert connector.client.limiter.paused_for > 1  # the ten-second window's interval
    other = direct(fake)
    fake.remaining, fake.secondly_remaining = 50, 0
    other.accounts()
    assert other.client.limiter.paused_for > 0
    connector.close()
    other.close()


@pytest.mark.parametrize("case", ["revoked", "scope", "daily"])
def test_a_final_error_stops_the_run_lands_nothing_and_changes_nothing(stores, fake, case):
    ws = hubspot_ws(stores, fake)
    ws.ingest("hubspot", START, END)
    ws.transform()
    silver, rows = silver_deals(ws), bronze(ws).height
    state = repo.get_connection(stores.db, "acme", "hubspot").state
    fake.modify("104", at(2, 22), amount="1")  # would change silver if it landed
    if case == "revoked":
        fake.expire_tokens()
        fake.refresh_tokens.clear()
        error, match = AuthError, "refused the refresh token.*authorise the connection again.*--update"
    elif case == "scope":
        fake.scopes.discard("crm.objects.deals.read")
        error, match = AccessError, "not granted crm.objects.deals.read.*install it in the portal again"
    else:
        fake.fail_next(fake.rate_limited("DAILY"), path="deals/search")
        error, match = QuotaExceededError, (r"daily limit.*resets at midnight in the account's time zone: run "
                                            r"again after \d{4}-\d\d-\d\d 00:00 US/Eastern \(.* UTC\)")
    with pytest.raises(error, match=match) as failed:
        ws.ingest("hubspot", START, END)
    if case == "daily":  # schedulers may wait that long
        assert 0 < (failed.value.retry_after or 0) <= 25 * 3600
    assert bronze(ws).height == rows
    assert repo.get_connection(stores.db, "acme", "hubspot").state == state
    ws.transform()
    assert silver_deals(ws).equals(silver)


def test_a_later_change_restates_the_deal_in_silver(stores, fake):
    ws = hubspot_ws(stores, fake)
    ws.ingest("hubspot")
    ws.transform()
    assert silver_deals(ws).filter(pl.col("deal_id") == "105")["amount"].to_list() == [Decimal("15000.00")]
    fake.modify("105", dt.datetime.now(dt.UTC), amount="16250.75", dealstage="closedwon")
    ws.ingest("hubspot")
    ws.transform()
    silver = silver_deals(ws)
    assert silver["deal_id"].to_list() == modified_in(fake, TODAY - dt.timedelta(days=2), TODAY)
    assert silver.filter(pl.col("deal_id") == "105")["amount"].to_list() == [Decimal("16250.75")]


def test_the_default_window_is_the_look_back_then_from_the_last_window_end(stores, fake):
    ws = hubspot_ws(stores, fake)
    first = ws.ingest("hubspot")
    assert first.window == Window(TODAY - dt.timedelta(days=2), TODAY)  # default_lookback_days 3
    assert searches(fake)[-1]["filterGroups"][0]["filters"][:2] == [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(epoch_ms(first.window.start))},
        {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": str(epoch_ms(TODAY + dt.timedelta(1)))}]
    conn = repo.get_connection(stores.db, "acme", "hubspot")
    assert conn.state["last_window_end"] == TODAY.isoformat()
    # the last run was a week ago: the next one covers everything since
    repo.save_connection_state(stores.db, "acme", conn.id, {**conn.state,
                                                            "last_window_end": (TODAY - dt.timedelta(7)).isoformat()})
    later = ws.ingest("hubspot")
    assert later.window == Window(TODAY - dt.timedelta(days=6), TODAY)
    assert later.rows == len(modified_in(fake, later.window.start, TODAY)) == 8


# ---- schema changes and payload quirks ---------------------------------------------------------

def test_a_new_field_and_a_missing_amount_do_not_break_the_load(stores, fake):
    extra = deal(300, at(2, 9), at(2, 11), 640)
    extra["properties"]["hs_deal_score"] = "7"
    extra["url"] = "https://app.hubspot.com/contacts/62515/record/0-3/300"  # a new top-level field
    missing = deal(301, at(2, 9), at(2, 12), None)
    del missing["properties"]["amount"]  # the portal no longer has the property
    fake.add(extra, missing)
    ws = hubspot_ws(stores, fake, properties=["hs_deal_score"])
    ws.ingest("hubspot", START, END)
    ws.transform()
    payloads = {json.loads(p)["id"]: json.loads(p) for p in bronze(ws)["payload"]}
    assert payloads["300"]["properties"]["hs_deal_score"] == "7" and payloads["300"]["url"]
    assert "amount" not in payloads["301"]["properties"]
    silver = silver_deals(ws)
    assert ws.table("silver.quarantine").is_empty()
    assert silver.filter(pl.col("deal_id") == "300")["amount"].to_list() == [Decimal("640.00")]
    no_amount = silver.filter(pl.col("deal_id") == "301").row(0, named=True)
    assert (no_amount["amount"], no_amount["amount_org"], no_amount["currency"]) == (None, None, "USD")
    gold = ws.table("gold.crm_attribution_daily").filter(pl.col("date") == TODAY - dt.timedelta(days=2))
    assert gold["leads"].sum() == 4  # 104, 108, 300 and 301: a deal without an amount is still a lead


def test_a_cleared_amount_loads_as_a_deal_without_an_amount(stores, fake):
    cleared = deal(302, at(2, 9), at(2, 12), None)
    cleared["properties"]["amount"] = ""
    fake.add(cleared)
    ws = hubspot_ws(stores, fake)
    ws.ingest("hubspot", START, END)
    ws.transform()
    assert silver_deals(ws).filter(pl.col("deal_id") == "302")["amount"].to_list() == [None]


# ---- secrets -----------------------------------------------------------------------------------

def test_no_secret_reaches_a_message_a_log_record_or_bronze(stores, fake, caplog):
    caplog.set_level(logging.DEBUG)
    ws = hubspot_ws(stores, fake, page_size=2)
    fake.transient_rate = 0.3
    fake.expire_tokens_after(3)
    ws.ingest("hubspot", START, END)
    fake.transient_rate = 0
    fake.expire_tokens()
    fake.refresh_tokens.clear()
    with pytest.raises(AuthError) as failed:
        ws.ingest("hubspot", START, END)
    texts = [str(failed.value), *(r.getMessage() for r in caplog.records),
             *(r.exc_text or "" for r in caplog.records), *bronze(ws)["payload"]]
    assert fake.faults_served and len(fake.issued) >= 2
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *fake.issued):
        assert not any(secret in t for t in texts), secret
