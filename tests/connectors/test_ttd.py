"""The Trade Desk connector against a local TTD API: auth, MyReports, campaigns, faults, write-back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from decimal import Decimal
from typing import Any

import httpx
import polars as pl
import pytest
from connector_helpers import FAST, connect, workspace
from fake_ttd import TEMPLATE_ID, FakeTTD, today
from platform_fakes import Reply
from polars.testing import assert_frame_equal

from connectors.base import ConnectionConfig, EntityState, PermanentWriteError, TransientWriteError, Window
from connectors.synthetic import SyntheticConnector
from connectors.http import MalformedResponseError
from connectors.ttd import TtdConnector, TtdWriter, parse_csv
from workbench.errors import (
    AccessError,
    ApiError,
    AuthError,
    QuotaExceededError,
    RequestError,
    TransientApiError,
    ValidationError,
)

REPORT, CAMPAIGNS = "ttd.report_daily", "ttd.campaigns"
COST, IMPRESSIONS = "Advertiser Cost (Adv Currency)", "Impressions"


@pytest.fixture(autouse=True)
def registered() -> None:
    from connectors.registry import connectors

    connectors.register("ttd", TtdConnector)


@pytest.fixture
def fake():
    with FakeTTD() as f:
        yield f


def credentials(fake: FakeTTD) -> dict[str, str]:
    return {"login": fake.login, "password": fake.password}


def settings(fake: FakeTTD, **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.api_url, "advertiser_ids": sorted(fake.advertisers),
            "report_template_id": str(TEMPLATE_ID), "poll_seconds": 0.01, **extra}


def connector(fake: FakeTTD, state: dict[str, Any] | None = None, lookback_days: int = 14,
              **extra: Any) -> TtdConnector:
    """A connector outside any workspace (reads without landing)."""
    return TtdConnector(ConnectionConfig("acme", f"conn-{id(fake)}-{len(fake.log)}", state=state or {},
                                         settings={**FAST, **settings(fake, **extra)},
                                         credentials=credentials(fake), lookback_days=lookback_days))


def records(pages: Any, stream: str) -> list[Any]:
    return [r for p in pages if p.stream == stream for r in p.records]


def ingest(ws: Any, *window: dt.date) -> Any:
    return ws.ingest("ttd", *window, progress=False)


PERF = ["date", "account_id", "campaign_id", "ad_group_id", "ad_id", "currency", "spend", "impressions",
        "clicks", "conversions", "conversion_value", "video_views"]


def expected(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """What silver.ad_performance_daily must hold for these report rows."""
    def num(row: dict[str, Any], key: str) -> float:
        return float(str(row.get(key) or 0).replace(",", ""))

    return pl.DataFrame([{
        "date": dt.date.fromisoformat(r["Date"][:10]), "account_id": r["Advertiser ID"],
        "campaign_id": r["Campaign ID"], "ad_group_id": r["Ad Group ID"], "ad_id": r["Creative ID"],
        "currency": r["Advertiser Currency Code"], "spend": num(r, COST), "impressions": int(num(r, IMPRESSIONS)),
        "clicks": int(num(r, "Clicks")), "conversions": num(r, "01 - Total Click + View Conversions"),
        "conversion_value": num(r, "01 - Click Conversion Revenue") + num(r, "01 - View Through Conversion Revenue"),
        "video_views": int(num(r, "Player Completed Views")) if r.get("Player Completed Views") else None,
    } for r in rows], schema_overrides={"video_views": pl.Int64}).sort("date", "ad_id")


def silver(ws: Any) -> pl.DataFrame:
    return ws.table("silver.ad_performance_daily").select(PERF).with_columns(
        pl.col("spend", "conversion_value").cast(pl.Float64)).sort("date", "ad_id")


def bronze(ws: Any) -> pl.DataFrame:
    return ws.table("bronze.raw_records").filter(pl.col("source") == "ttd")


# -- the contract ------------------------------------------------------------------------------

def test_the_connector_declares_the_synthetic_streams_and_what_it_needs(fake):
    synthetic = {s.name for s in SyntheticConnector.streams if s.name.startswith("ttd.")}
    assert {s.name for s in TtdConnector.streams} == synthetic == {REPORT, CAMPAIGNS}
    assert TtdConnector.default_lookback_days == 14 and TtdConnector.default_base_url == "https://api.thetradedesk.com/v3"
    assert TtdConnector.capabilities == {"read", "write", "async_reports"}
    assert [(f.name, f.secret) for f in TtdConnector.credential_fields] == [("login", False), ("password", True)]
    with pytest.raises(ValidationError, match="needs the setting.*report_template_id"):
        TtdConnector(ConnectionConfig("acme", "c", settings={"advertiser_ids": ["a"]}, credentials=credentials(fake)))
    with pytest.raises(ValidationError, match="has no password"):
        TtdConnector(ConnectionConfig("acme", "c", settings=settings(fake), credentials={"login": "x"}))
    # the CLI gives a comma-separated text
    c = connector(fake, advertiser_ids="a1, b2")
    assert c.advertiser_ids == ["a1", "b2"]


# -- reading -----------------------------------------------------------------------------------

def test_records_are_the_native_payloads_and_the_calls_follow_the_api(fake):
    c = connector(fake, page_size=2)
    window = Window(fake.first_day, fake.last_day)
    pages = list(c.read(window))
    # exactly what the synthetic connector emits: the silver parsers read both alike
    assert records(pages, REPORT) == fake.expected_rows(fake.first_day, fake.last_day)
    assert sorted(records(pages, CAMPAIGNS), key=lambda x: x["CampaignId"]) == sorted(
        fake.campaigns.values(), key=lambda x: x["CampaignId"])
    assert c.gaps(window) == []

    schedule = fake.requests_to("/myreports/reportschedule$", "POST")[0].json()
    assert schedule | {"ReportScheduleName": "-"} == {
        "ReportScheduleName": "-", "ReportTemplateId": TEMPLATE_ID, "ReportFileFormat": "CSV",
        "ReportDateRange": "Custom", "ReportStartDateInclusive": f"{fake.first_day}T00:00:00",
        "ReportEndDateExclusive": f"{today()}T00:00:00", "ReportFrequency": "Once", "TimeZone": "UTC",
        "ReportDateFormat": "International", "ReportNumericFormat": "US", "IncludeHeaders": True,
        "AdvertiserFilters": sorted(fake.advertisers)}
    assert fake.schedules == {} and len(fake.deleted) == 1  # cleaned up
    # campaigns paged 2 at a time: 3 per advertiser -> 2 pages each
    starts = [(r.json()["AdvertiserId"], r.json()["PageStartIndex"]) for r in fake.requests_to("/campaign/query")]
    assert starts == [(a, s) for a in sorted(fake.advertisers) for s in (0, 2)]
    # the token travels in TTD-Auth to the API, never to the presigned file URL
    api = [r for r in fake.log if r.path.startswith("/v3/") and not r.path.endswith("/authentication")]
    assert all(r.header("TTD-Auth") in fake.issued for r in api)
    files = fake.requests_to("^/files/")
    assert len(files) == 1 and files[0].header("TTD-Auth") is None
    assert fake.tokens_issued == 1


def test_chunks_poll_state_gaps_and_a_failed_report(fake):
    c = connector(fake, chunk_days=2)
    list(c.read(Window(fake.first_day, fake.last_day)))
    bodies = [r.json() for r in fake.requests_to("/myreports/reportschedule$", "POST")]
    assert [(b["ReportStartDateInclusive"][:10], b["ReportEndDateExclusive"][:10]) for b in bodies] == [
        (str(fake.first_day + dt.timedelta(days=i)), str(min(today(), fake.first_day + dt.timedelta(days=i + 2))))
        for i in (0, 2, 4)]
    polls = fake.requests_to("reportexecution/query")
    assert len(polls) == 3 * fake.polls_to_complete
    assert polls[0].json() == {"AdvertiserIds": sorted(fake.advertisers), "ReportScheduleIds": [9001],
                               "PageStartIndex": 0, "PageSize": 100}

    # a day without rows for one advertiser is a gap; today has no rows yet for either
    advertiser = sorted(fake.advertisers)[0]
    missing = fake.first_day + dt.timedelta(days=1)
    fake.rows = [r for r in fake.rows if not (r["Advertiser ID"] == advertiser and r["Date"].startswith(str(missing)))]
    c = connector(fake)
    window = Window(fake.first_day, today())
    list(c.read(window))
    assert {g.account_id: g.days for g in c.gaps(window)} == {
        advertiser: (missing, today()), sorted(fake.advertisers)[1]: (today(),)}

    # a Failed execution gets one new schedule; a second failure is a clear error
    fake.fail_executions = 1
    assert len(records(connector(fake).read(window), REPORT)) == len(fake.expected_rows(fake.first_day, today()))
    fake.fail_executions = 2
    with pytest.raises(TransientApiError, match=r"failed twice \(report schedules \d+ and \d+, template 4242\)"):
        list(connector(fake).read(window))
    fake.polls_to_complete = 50
    with pytest.raises(TransientApiError, match="not complete after 3 polls .* raise max_polls"):
        list(connector(fake, max_polls=3).read(window))
    assert fake.schedules == {}  # every schedule deleted, failed or not

    # the default window: the look-back, or from the last run's end when that is earlier
    later = connector(fake, state={"last_window_end": str(today() - dt.timedelta(days=20))}, lookback_days=3)
    assert later.resolve_window(None, today()) == Window(today() - dt.timedelta(days=19), today())
    assert connector(fake).resolve_window(None, today()) == Window(today() - dt.timedelta(days=13), today())


def test_accounts_and_what_the_platform_refuses(fake):
    first, second = sorted(fake.advertisers)
    accounts = connector(fake).accounts()
    assert [(a.id, a.name, a.currency, a.status) for a in accounts] == [
        (a, fake.advertisers[a]["AdvertiserName"], fake.advertisers[a]["CurrencyCode"], "active") for a in (first, second)]
    fake.forbidden.add(second)
    with pytest.raises(AccessError, match=rf"cannot reach advertiser\(s\) {second};.*advertiser_ids.*reaches: {first}$"):
        connector(fake).accounts()
    with pytest.raises(AccessError, match=rf"cannot reach advertiser\(s\) {second}"):
        list(connector(fake).read(Window(fake.first_day, fake.last_day)))
    fake.forbidden.clear()
    with pytest.raises(RequestError, match="PageSize must be between 1 and 100"):
        list(connector(fake, page_size=500).read(Window(fake.first_day, fake.last_day)))
    with pytest.raises(RequestError, match="Report template 999 does not exist.*report_template_id"):
        list(connector(fake, report_template_id="999").read(Window(fake.first_day, fake.last_day)))
    # a 503 with Retry-After is a throttle, waited out; so is a 429
    fake.fail_next(Reply(503, {"Message": "busy"}, {"Retry-After": "0"}), Reply(429, {}, {"Retry-After": "0"}),
                   path="campaign/query")
    assert len(records(connector(fake).read(Window(fake.first_day, fake.last_day)), CAMPAIGNS)) == len(fake.campaigns)


def test_a_damaged_report_file_is_recognised():
    def response(body: bytes, etag: str | None = None) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"ETag": etag} if etag else {})

    whole = b"\xef\xbb\xbfDate,Impressions,Player Completed Views\r\n2026-11-24,10,\r\n2026-11-25,\"1,234\",7\r\n"
    assert parse_csv(response(whole, f'"{hashlib.md5(whole).hexdigest()}"'), "f") == [
        {"Date": "2026-11-24", "Impressions": "10"},
        {"Date": "2026-11-25", "Impressions": "1,234", "Player Completed Views": "7"}]
    assert parse_csv(response(b"Date,Impressions\r\n"), "f") == []
    for body, etag, problem in [
        (whole[:-2] + b"\n", f'"{hashlib.md5(whole).hexdigest()}"', "does not match its checksum"),
        (whole[:-9], None, "ends mid-line"),
        (whole.replace(b",7", b""), None, "line 3 has 2 fields, the header 3"),
        (b"", None, "empty, not even a header"),
    ]:
        with pytest.raises(MalformedResponseError, match=problem):
            parse_csv(response(body, etag), "f")


# -- end to end through the workspace ----------------------------------------------------------

def test_ingest_and_transform_land_exactly_what_the_platform_served(stores, fake):
    ws = workspace(stores)
    connect(ws, "ttd", fake, credentials(fake), **settings(fake))
    result = ingest(ws, fake.first_day, fake.last_day)
    assert result.streams == {REPORT: len(fake.rows), CAMPAIGNS: len(fake.campaigns)} and result.gaps == []
    ws.transform(progress=False)

    served = expected(fake.rows)
    assert_frame_equal(silver(ws), served)
    assert ws.table("silver.quarantine").is_empty()
    campaigns = ws.table("silver.campaigns").sort("campaign_id")
    assert campaigns["campaign_id"].to_list() == sorted(fake.campaigns)
    for row in campaigns.iter_rows(named=True):
        source = fake.campaigns[row["campaign_id"]]
        budget = source["Budget"] or source["DailyBudget"]
        assert (row["account_id"], row["status"], float(row["budget_amount"]), row["currency"]) == (
            source["AdvertiserId"], {"Available": "active", "Paused": "paused", "Archived": "archived"}[
                source["Availability"]], budget["Amount"], budget["CurrencyCode"])
    assert ws.table("silver.crm_deals").is_empty()

    gold = ws.table("gold.performance_daily").group_by("date").agg(
        pl.len().alias("rows"), pl.col("spend").sum(), pl.col("impressions").sum()).sort("date")
    per_day = served.group_by("date").agg(pl.len().alias("rows"), pl.col("spend").sum(),
                                          pl.col("impressions").sum()).sort("date")
    assert_frame_equal(gold, per_day, check_dtypes=False)
    rollup = ws.table("gold.campaign_daily")
    assert sorted(rollup["campaign_id"].unique()) == sorted(served["campaign_id"].unique())
    assert rollup["spend"].sum() == pytest.approx(served["spend"].sum())
    # the advertisers bill in EUR and GBP; the org reports in USD
    assert set(rollup["currency"]) == {a["CurrencyCode"] for a in fake.advertisers.values()}
    assert (rollup["spend_org"] != rollup["spend"]).all() and (rollup["org_currency"] == "USD").all()


def test_transient_faults_and_an_expired_token_still_land_every_record_once(stores, fake):
    ws = workspace(stores)
    connect(ws, "ttd", fake, credentials(fake), **settings(fake))
    fake.transient_rate = 0.2
    fake.fail_next("malformed", "drop", path="^/files/")
    fake.fail_next("slow", "malformed", path="reportexecution")
    fake.fail_next(Reply(503, {"Message": "Service Unavailable"}, {"Retry-After": "0"}), path="reportschedule$")
    fake.expire_tokens_on_poll = True
    result = ingest(ws, fake.first_day, fake.last_day)
    assert {"malformed", "drop", "slow", "503"} <= set(fake.faults_served)
    assert fake.tokens_issued == 2  # the 401 mid-sync: a new token, then the same call again
    assert result.rows == len(fake.rows) + len(fake.campaigns) == bronze(ws).height
    ws.transform(progress=False)
    assert_frame_equal(silver(ws), expected(fake.rows))
    assert ws.table("silver.campaigns").height == len(fake.campaigns)


def test_final_errors_stop_the_run_land_nothing_and_leak_no_secret(stores, fake, caplog):
    caplog.set_level(logging.DEBUG)
    ws = workspace(stores)
    connect(ws, "ttd", fake, credentials(fake), **settings(fake, max_wait_seconds=5))
    ingest(ws, fake.first_day, fake.last_day)
    ws.transform(progress=False)
    before_silver, before_bronze = silver(ws), bronze(ws).height
    state = ws.connections()["state"][0]
    first, second = sorted(fake.advertisers)

    password = fake.password

    def revoke() -> None:
        fake.expire_tokens()
        fake.password = "changed-by-admin"

    cases = [
        (revoke, AuthError, r"login or password was refused for login 'api-user@acme.test' \(HTTP 401\); "
                            "update them with workbench connections add ttd --update"),
        (lambda: fake.forbidden.add(second), AccessError,
         rf"cannot reach advertiser\(s\) {second}; ask a TTD admin.*reaches: {first}"),
        (lambda: fake.fail_next(Reply(429, {"Message": "Too many requests"}, {"Retry-After": "7200"}),
                                path="campaign/query"), QuotaExceededError, "run again after"),
    ]
    errors: list[ApiError] = []
    for cause, kind, message in cases:
        fake.transient_rate = 0.1
        cause()
        with pytest.raises(kind, match=message) as caught:
            ingest(ws, today() - dt.timedelta(days=3), today() - dt.timedelta(days=1))
        errors.append(caught.value)
        fake.transient_rate, fake.password = 0.0, password
        fake.forbidden.clear()
        assert bronze(ws).height == before_bronze
        assert ws.connections()["state"][0] == state
    ws.transform(progress=False)
    assert_frame_equal(silver(ws), before_silver)

    secret = [password, *fake.issued, *(signature for _, signature in fake.files.values())]
    seen = "\n".join([caplog.text, *(str(e) for e in errors), *bronze(ws)["payload"].to_list()])
    assert caplog.records and not [s for s in secret if s in seen]


def test_a_restated_day_replaces_the_old_figures_on_the_next_default_run(stores, fake):
    ws = workspace(stores)
    conn = connect(ws, "ttd", fake, credentials(fake), **settings(fake, chunk_days=10))
    assert conn.lookback_days == 14
    ingest(ws, fake.first_day, fake.last_day)
    ws.transform(progress=False)
    assert fake.tokens_issued == 1

    day = fake.last_day - dt.timedelta(days=1)
    restated = next(r for r in fake.rows if r["Date"].startswith(str(day)))
    restated[COST], restated[IMPRESSIONS] = "1234.567891", "99999"
    result = ingest(ws)  # the default window: 14 days back to today, in chunks of 10 days
    assert result.window == Window(today() - dt.timedelta(days=13), today())
    bodies = [r.json() for r in fake.requests_to("/myreports/reportschedule$", "POST")][1:]
    assert [b["ReportStartDateInclusive"][:10] for b in bodies] == [
        str(today() - dt.timedelta(days=13)), str(today() - dt.timedelta(days=3))]
    assert fake.tokens_issued == 1  # the stored token was reused
    ws.transform(progress=False)
    got = silver(ws)
    assert_frame_equal(got, expected(fake.rows))
    mine = got.filter(pl.col("ad_id") == restated["Creative ID"], pl.col("date") == day)
    assert mine.select("spend", "impressions").rows() == [(1234.567891, 99999)]


def test_payload_quirks_and_schema_changes_do_not_break_anything(stores, fake):
    """Date-only dates, thousands separators, quoted names, fractional conversions; a new column and a
    missing optional one; a new field in campaign objects and a missing one."""
    fake.date_style, fake.thousands = "date", True
    fake.columns = [c for c in fake.columns if c != "Player Completed Views"] + ["Vendor Fee (USD)"]
    fake.rows[0][IMPRESSIONS], fake.rows[0][COST] = "1234567", "4321.500000"
    fake.rows[1]["Campaign"] = 'Brand, "Holiday" push'
    fake.rows[2]["01 - Total Click + View Conversions"] = "2.5"
    for row in fake.rows:
        row.pop("Player Completed Views", None)
        row["Vendor Fee (USD)"] = "0.12"
    for campaign in fake.campaigns.values():
        campaign.pop("PacingMode")
        campaign["ChannelMix"] = {"Display": 0.5, "CTV": 0.5}
    ws = workspace(stores)
    connect(ws, "ttd", fake, credentials(fake), **settings(fake))
    ingest(ws, fake.first_day, fake.last_day)
    ws.transform(progress=False)

    payloads = [json.loads(p) for p in bronze(ws).filter(pl.col("stream") == REPORT)["payload"]]
    assert payloads[0]["Impressions"] == "1,234,567" and payloads[0]["Date"] == str(fake.first_day)
    assert all(p["Vendor Fee (USD)"] == "0.12" and "Player Completed Views" not in p for p in payloads)
    assert ws.table("silver.quarantine").is_empty()
    got = silver(ws)
    assert_frame_equal(got, expected(fake.rows))
    assert got["video_views"].null_count() == got.height
    assert 'Brand, "Holiday" push' in ws.table("silver.ad_performance_daily")["campaign_name"].to_list()
    assert ws.table("silver.campaigns").height == len(fake.campaigns)


# -- write-back --------------------------------------------------------------------------------

def test_pause_resume_and_budgets_are_idempotent_and_fail_clearly(stores, fake):
    from connectors.writers import platform_writers

    ws = workspace(stores)
    connect(ws, "ttd", fake, credentials(fake), **settings(fake))
    writer = platform_writers.get("ttd", stores, ws.org.id)
    assert isinstance(writer, TtdWriter)
    live = [c for c in fake.campaigns.values() if c["Availability"] == "Available"]
    daily = next(c for c in live if c["DailyBudget"])
    lifetime = next(c for c in live if c["Budget"])
    currency = daily["DailyBudget"]["CurrencyCode"]
    amount = Decimal(str(daily["DailyBudget"]["Amount"])).quantize(Decimal("0.01"))

    r = writer.pause("campaign", daily["CampaignId"], "k1")
    assert (r.before, r.after, r.replayed) == (EntityState("active", amount, "daily", currency),
                                               EntityState("paused", amount, "daily", currency), False)
    assert fake.writes == [("campaign", {"CampaignId": daily["CampaignId"], "Availability": "Paused"})]
    again = writer.pause("campaign", daily["CampaignId"], "k1")
    assert again.replayed and again.after == r.after and len(fake.writes) == 1
    assert writer.resume("campaign", daily["CampaignId"], "k2").after.status == "active"
    r = writer.set_budget("campaign", daily["CampaignId"], Decimal("80.005"), "k3")
    assert r.after == EntityState("active", Decimal("80.01"), "daily", currency)
    assert fake.writes[-1][1] == {"CampaignId": daily["CampaignId"], "DailyBudget": {"Amount": 80.01, "CurrencyCode": currency}}
    r = writer.set_budget("campaign", lifetime["CampaignId"], Decimal(50000), "k4")
    assert r.after.budget_type == "lifetime" and fake.writes[-1][1]["Budget"]["Amount"] == 50000

    budgeted, plain = list(fake.ad_groups)[:2]
    r = writer.pause("ad_group", budgeted, "g1")
    assert (r.before.status, r.after.status, fake.writes[-1]) == ("active", "paused", ("adgroup", {"AdGroupId": budgeted, "IsEnabled": False}))
    r = writer.set_budget("ad_group", budgeted, Decimal("75.5"), "g2")
    assert r.after.budget == Decimal("75.50") and fake.ad_groups[budgeted]["RTBAttributes"]["BudgetSettings"]["DailyBudget"]["Amount"] == 75.5
    with pytest.raises(PermanentWriteError, match="no budget of its own"):
        writer.set_budget("ad_group", plain, Decimal(10), "g3")
    with pytest.raises(PermanentWriteError, match="not 'ad'"):
        writer.pause("ad", "cr1", "a1")
    with pytest.raises(PermanentWriteError, match="ttd has no campaign 'nope'"):
        writer.pause("campaign", "nope", "n1")
    archived = next(c for c in fake.campaigns.values() if c["Availability"] == "Archived")
    with pytest.raises(PermanentWriteError, match="archived"):
        writer.resume("campaign", archived["CampaignId"], "x1")

    # applied, but the answer is lost (and the retries fail): a retry with the key applies nothing again
    writes = len(fake.writes)
    fake.fail_next("lost", *["503"] * (FAST["max_attempts"] - 1), path="^/v3/campaign$")
    with pytest.raises(TransientWriteError):
        writer.pause("campaign", lifetime["CampaignId"], "lost-1")
    assert len(fake.writes) == writes + 1 and fake.campaigns[lifetime["CampaignId"]]["Availability"] == "Paused"
    r = writer.pause("campaign", lifetime["CampaignId"], "lost-1")
    assert r.after.status == "paused" and len(fake.writes) == writes + 1
    fake.fail_next(*["503"] * FAST["max_attempts"], path="^/v3/campaign/")
    with pytest.raises(TransientWriteError, match="HTTP 503"):
        writer.resume("campaign", lifetime["CampaignId"], "t1")
