"""The Display & Video 360 connector against a local DV360 (``fake_dv360``) on a real socket:
reports, insertion orders, tokens, throttles, faults, restatements, windows and write-back."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from connector_helpers import FAST, connect, workspace
from fake_dv360 import (
    CLIENT_SECRET,
    CREDENTIALS,
    REFRESH_TOKEN,
    SEED,
    FakeDV360,
    day_of,
    google_error,
    number,
    unauthenticated,
)
from platform_fakes import Reply

from connectors.base import ConnectionConfig, EntityState, Gap, PermanentWriteError, TransientWriteError, Window
from connectors.dv360 import IO_STREAM, REPORT_STREAM, DV360Connector
from connectors.registry import connectors
from connectors.synthetic import SyntheticConnector
from connectors.writers import platform_writers
from workbench import connections
from workbench.errors import (
    AccessError,
    AuthError,
    QuotaExceededError,
    RequestError,
    TransientApiError,
    ValidationError,
)
from workbench.medallion.parsers.base import ParseContext
from workbench.medallion.parsers.dv360 import parse_report
from workbench.oltp import repo

TODAY = dt.datetime.now(dt.UTC).date()  # the test organisations live in UTC
WINDOW = Window(TODAY - dt.timedelta(days=9), TODAY - dt.timedelta(days=3))
LINEAGE = ["connector", "connection_id", "source_batch_id", "extracted_at", "record_index", "org_id"]


@pytest.fixture(autouse=True, scope="module")
def registered() -> None:
    connectors.register("dv360", DV360Connector)


@pytest.fixture
def fake():
    with FakeDV360(TODAY) as f:
        yield f


def dv360_settings(fake: FakeDV360, **extra: Any) -> dict[str, Any]:
    return {"advertiser_ids": list(fake.advertisers), "dv360_api_url": f"{fake.url}/v4",
            "token_url": f"{fake.url}/token", "poll_seconds": 0.01, **extra}


def add(ws: Any, fake: FakeDV360, lookback_days: int | None = None, **extra: Any) -> Any:
    return connect(ws, "dv360", fake, CREDENTIALS, lookback_days, **dv360_settings(fake, **extra))


def direct(fake: FakeDV360, **extra: Any) -> DV360Connector:
    """A connector outside any workspace (no pipeline around it)."""
    settings = {"base_url": fake.url, **FAST, **dv360_settings(fake, **extra)}
    return DV360Connector(ConnectionConfig("acme", f"conn-{uuid.uuid4().hex[:8]}", settings, dict(CREDENTIALS)))


def read_all(connector: Any, window: Window = WINDOW) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    try:
        for page in connector.read(window):
            out[page.stream].extend(page.records)
    finally:
        connector.close()
    return out


def by_key(records: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(records, key=lambda r: (r["Date"], r["Creative ID"]))


def content(ws: Any, table: str) -> pl.DataFrame:
    df = ws.table(table)
    df = df.drop([c for c in LINEAGE if c in df.columns])
    return df.sort(df.columns)


def money_as_float(df: pl.DataFrame) -> pl.DataFrame:
    """Silver keeps money as decimals; compare as floats."""
    return df.with_columns(pl.col(pl.Decimal).cast(pl.Float64))


def bronze_rows(ws: Any) -> int:
    return ws.table("bronze.raw_records").height


def query_ranges(fake: FakeDV360) -> list[tuple[dt.date, dt.date]]:
    bodies = [r.json()["metadata"]["dataRange"] for r in fake.requests_to(r"^/v2/queries$", "POST")]
    return [(dt.date(**b["customStartDate"]), dt.date(**b["customEndDate"])) for b in bodies]


# -- reading -----------------------------------------------------------------------------------


def test_a_sync_lands_exactly_what_the_platform_served(stores, fake):
    ws = workspace(stores)
    add(ws, fake)
    landed = ws.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    served = fake.rows_between(WINDOW.start, WINDOW.end)
    assert landed.streams == {REPORT_STREAM: len(served), IO_STREAM: len(fake.insertion_orders)}
    assert landed.gaps == []
    ws.transform(progress=False)

    silver = money_as_float(ws.table("silver.ad_performance_daily"))
    assert ws.quarantine().is_empty()
    assert silver.height == len(served)
    assert dict(Counter(silver["date"].to_list())) == dict(Counter(day_of(r) for r in served))
    assert set(silver["ad_id"]) == {r["Creative ID"] for r in served}
    assert set(silver["ad_group_id"]) == {r["Line Item ID"] for r in served}
    assert set(silver["campaign_id"]) == {r["Insertion Order ID"] for r in served}
    expected: dict[tuple[str, dt.date], list[float]] = defaultdict(lambda: [0.0] * 5)
    for r in served:
        sums = expected[(r["Advertiser ID"], day_of(r))]
        for i, column in enumerate(("Media Cost (Advertiser Currency)", "Impressions", "Clicks", "Total Conversions")):
            sums[i] += number(r[column])
        sums[4] += number(r["CM360 Post-Click Revenue"]) + number(r["CM360 Post-View Revenue"])
    got = silver.group_by("account_id", "date").agg(
        pl.col("spend").sum(), pl.col("impressions").sum(), pl.col("clicks").sum(), pl.col("conversions").sum(),
        pl.col("conversion_value").sum(), pl.col("currency").unique())
    assert got.height == len(expected)
    for row in got.iter_rows(named=True):
        assert row["currency"] == [fake.currency(row["account_id"])]
        want = expected[(row["account_id"], row["date"])]
        have = [row["spend"], row["impressions"], row["clicks"], row["conversions"], row["conversion_value"]]
        assert have == pytest.approx(want)

    campaigns = ws.table("silver.campaigns")
    assert sorted(campaigns["campaign_id"]) == sorted(fake.insertion_orders)
    for row in campaigns.iter_rows(named=True):
        order = fake.insertion_orders[row["campaign_id"]]
        assert row["status"] == order["entityStatus"].removeprefix("ENTITY_STATUS_").lower()
        assert row["currency"] == fake.currency(order["advertiserId"])
        assert row["budget_amount"] == pytest.approx(
            sum(int(s["budgetAmountMicros"]) for s in order["budget"]["budgetSegments"]) / 1e6)
    assert ws.table("silver.crm_deals").is_empty()

    gold = ws.table("gold.performance_daily")
    assert gold.height == silver.height
    assert gold["spend_org"].sum() == pytest.approx(silver["spend_org"].sum())
    assert ws.table("gold.campaign_daily")["spend_org"].sum() == pytest.approx(gold["spend_org"].sum())

    # the report query asked for the window and the advertisers, and nothing was left behind
    assert query_ranges(fake) == [(WINDOW.start, WINDOW.end)]
    params = fake.requests_to(r"^/v2/queries$", "POST")[0].json()["params"]
    assert {f["value"] for f in params["filters"]} == set(fake.advertisers)
    assert fake.queries == {}
    downloads = fake.requests_to(r"^/storage/")
    assert downloads and all(r.header("authorization") is None for r in downloads)


def test_records_have_exactly_the_synthetic_connectors_format(fake):
    synthetic = SyntheticConnector(ConnectionConfig("acme", "synthetic", {
        "seed": SEED, "as_of": TODAY.isoformat(), "accounts_per_platform": 2, "campaigns_per_account": 2,
        "ad_groups_per_campaign": 2, "ads_per_ad_group": 1, "malformed_rate": 0, "platforms": ["dv360"],
        "crms": []}))
    want, got = read_all(synthetic), read_all(direct(fake))
    assert by_key(got[REPORT_STREAM]) == by_key(want[REPORT_STREAM])
    assert any("TrueView: Views" not in r for r in got[REPORT_STREAM]), "blank cells are left out"
    orders = {o["insertionOrderId"]: o for o in got[IO_STREAM]}
    for order in want[IO_STREAM]:
        mine = orders[order["insertionOrderId"]]
        assert {k: mine[k] for k in order} == order
        assert set(mine) - set(order) == {"insertionOrderType", "frequencyCap"}  # real fields, kept


def test_windows_are_chunked_pages_bounded_and_every_query_deleted(fake):
    fake.page_size, fake.polls_until_done = 3, 3
    got = read_all(direct(fake, chunk_days=3, page_rows=4))
    day = dt.timedelta(days=1)
    assert query_ranges(fake) == [(WINDOW.start, WINDOW.start + 2 * day), (WINDOW.start + 3 * day, WINDOW.end - day),
                                  (WINDOW.end, WINDOW.end)]
    assert by_key(got[REPORT_STREAM]) == by_key(fake.rows_between(WINDOW.start, WINDOW.end))
    assert sorted(o["insertionOrderId"] for o in got[IO_STREAM]) == sorted(fake.insertion_orders)
    assert len(fake.requests_to(r"/insertionOrders$")) > len(fake.advertisers)  # several pages each
    assert len(fake.requests_to(r"/reports/\d+$")) == 3 * 3
    assert len(fake.requests_to(r"^/v2/queries/\d+$", "DELETE")) == 3 and fake.queries == {}


def test_report_pages_hold_at_most_page_rows_records(fake):
    connector = direct(fake, page_rows=5)
    try:
        sizes = [len(p.records) for p in connector.read(WINDOW) if p.stream == REPORT_STREAM]
    finally:
        connector.close()
    assert max(sizes) == 5 and sum(sizes) == len(fake.rows_between(WINDOW.start, WINDOW.end))


THROTTLES_AND_FAULTS = [
    google_error(403, "PERMISSION_DENIED", "Rate Limit Exceeded", "rateLimitExceeded"),
    google_error(403, "PERMISSION_DENIED", "User Rate Limit Exceeded", "userRateLimitExceeded"),
    google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests per minute'",
                 headers={"Retry-After": "0"}),
    "500", "503", "429", "drop", "slow", "malformed",
]


@pytest.mark.parametrize("fault", THROTTLES_AND_FAULTS, ids=lambda f: f if isinstance(f, str) else
                         f"{f.status}-{f.body['error'].get('errors', [{}])[0].get('reason', 'exhausted')}")
def test_throttles_and_transient_faults_are_retried_on_every_endpoint(fake, fault):
    fake.slow_seconds = 0.3  # past the client's timeout below
    clean = read_all(direct(fake))
    paths = [r"^/v4/advertisers/\d+$", r"/insertionOrders$", r"^/v2/queries$", r":run$", r"/reports/\d+$",
             r"^/storage/"]
    for path in paths:
        fake.fail_next(fault, path=path)
    again = read_all(direct(fake, timeout_seconds=0.2))
    assert len(fake.faults_served) == len(paths)
    assert by_key(again[REPORT_STREAM]) == by_key(clean[REPORT_STREAM])
    assert again[IO_STREAM] == clean[IO_STREAM]
    if fault != "slow":  # a slow create lands after the run; its twin is swept when it answers in time
        assert fake.queries == {}


DAILY_QUOTA = Reply(429, {"error": {
    "code": 429, "message": "Quota exceeded for quota metric 'Queries' and limit 'Queries per day'",
    "status": "RESOURCE_EXHAUSTED", "details": [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
        "domain": "googleapis.com", "metadata": {"quota_limit": "QueriesPerDayPerProject",
                                                 "quota_unit": "1/d/{project}"}}]}})


@pytest.mark.parametrize(("reply", "path", "error", "match"), [
    (DAILY_QUOTA, r"^/v2/queries$", QuotaExceededError, r"quota of the Google Cloud project is spent .*midnight"),
    (google_error(403, "PERMISSION_DENIED", "Display & Video 360 API has not been used in project 12 before or it "
                  "is disabled.", "accessNotConfigured"), r"^/v4/advertisers/\d+$", AccessError,
     r"Enable the Display & Video 360 API and the DoubleClick Bid Manager API"),
    (google_error(403, "PERMISSION_DENIED", "The caller does not have permission"), r"^/v2/queries$", AccessError,
     r"cannot reach one of the advertisers \d+, \d+ \(setting advertiser_ids\)"),
    (google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), r":run$", RequestError,
     r"run query \d+: HTTP 400.*invalid argument"),
], ids=["daily-quota", "api-disabled", "report-permission", "bad-request"])
def test_google_error_bodies_become_errors_that_say_what_to_fix(fake, reply, path, error, match):
    fake.fail_next(reply, path=path)
    with pytest.raises(error, match=match):
        read_all(direct(fake))
    assert len(fake.requests_to(path)) == 1, "final errors are not retried"
    assert fake.queries == {}


def test_settings_are_checked_when_the_connection_opens(fake):
    for bad, match in [({"advertiser_ids": "12, abc"}, r"advertiser_ids must be DV360 advertiser ids .*abc"),
                       ({"advertiser_ids": []}, r"needs the setting\(s\) advertiser_ids"),
                       ({"chunk_days": 0}, r"chunk_days must be a number of at least 1, not 0"),
                       ({"poll_seconds": "soon"}, r"poll_seconds must be a number")]:
        with pytest.raises(ValidationError, match=match):
            direct(fake, **bad)
    assert direct(fake, advertiser_ids="1, 2").advertiser_ids == ["1", "2"]


def test_a_garbled_create_answer_leaves_no_twin_query_behind(fake):
    fake.fail_next("malformed", "lost", path=r"^/v2/queries$")
    read_all(direct(fake))
    assert len(fake.requests_to(r"^/v2/queries$", "POST")) == 3
    assert fake.queries == {}, "the queries created by lost and garbled answers were deleted too"


def test_a_failed_report_is_run_once_more_then_the_run_stops(fake):
    fake.fail_reports = 1
    assert len(read_all(direct(fake))[REPORT_STREAM]) == len(fake.rows_between(WINDOW.start, WINDOW.end))
    assert len(fake.requests_to(r":run$")) == 2
    fake.fail_reports = 2
    with pytest.raises(TransientApiError, match=r"could not build the report .*failed twice.*smaller chunk_days"):
        read_all(direct(fake))
    assert fake.queries == {}


def test_a_report_that_never_finishes_stops_after_max_polls(fake):
    fake.never_done = True
    with pytest.raises(TransientApiError, match=r"still RUNNING after 3 polls.*raise max_polls"):
        read_all(direct(fake, max_polls=3))
    assert len(fake.requests_to(r"/reports/\d+$")) == 3 and fake.queries == {}


def test_days_without_rows_are_reported_as_gaps(fake):
    advertiser, day = list(fake.advertisers)[1], WINDOW.start + dt.timedelta(days=2)
    fake.drop_rows(advertiser, day)
    connector = direct(fake)
    read_all(connector)
    assert connector.gaps(WINDOW) == [Gap(advertiser, (day,))]


def test_an_expired_token_mid_sync_is_refreshed_and_stored(stores, fake):
    ws = workspace(stores)
    add(ws, fake)
    fake.expire_on = r"/reports/\d+$"
    ws.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    assert fake.tokens_issued == 2
    stored = repo.decrypt_credentials(stores.settings.credentials_key,
                                      repo.get_connection(stores.db, "acme", "dv360").credentials_encrypted)
    assert stored["access_token"] == fake.issued[-1] and stored["refresh_token"] == REFRESH_TOKEN
    assert int(stored["expires_at"]) > dt.datetime.now(dt.UTC).timestamp() + 3000  # an hour's token
    ws.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    assert fake.tokens_issued == 2, "the stored token is used until it expires"


def test_a_flaky_platform_still_lands_every_record_exactly_once(stores, fake):
    clean = workspace(stores, "clean")
    add(clean, fake)
    clean.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    clean.transform(progress=False)
    fake.transient_rate, fake.slow_seconds = 0.2, 0.4
    flaky = workspace(stores, "flaky")
    add(flaky, fake, timeout_seconds=0.25)
    flaky.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    flaky.transform(progress=False)
    assert len(fake.faults_served) >= 3
    for table in ("silver.ad_performance_daily", "silver.campaigns", "gold.performance_daily"):
        assert content(flaky, table).equals(content(clean, table)), table
    assert flaky.quarantine().is_empty()


@pytest.mark.parametrize("case", ["revoked", "refused", "permission", "quota"])
def test_a_final_error_stops_the_run_says_what_to_fix_and_changes_nothing(stores, fake, case):
    ws = workspace(stores)
    conn = add(ws, fake)
    earlier = Window(WINDOW.start - dt.timedelta(days=7), WINDOW.start - dt.timedelta(days=1))
    ws.ingest("dv360", earlier.start, earlier.end, progress=False)
    ws.transform(progress=False)
    silver, bronze = content(ws, "silver.ad_performance_daily"), bronze_rows(ws)
    state = repo.get_connection(stores.db, "acme", "dv360").state
    first, second = list(fake.advertisers)
    if case == "revoked":
        fake.refresh_tokens.clear()
        fake.expire_tokens()
        error, match = AuthError, r"refused the refresh token .*authorise the connection again"
    elif case == "refused":  # a fresh token is refused too (the user lost DV360 access altogether)
        fake.fail_next(unauthenticated(), unauthenticated(), path=r"/insertionOrders$")
        error, match = AuthError, r"refused even after a refresh: update them"
    elif case == "permission":
        fake.denied.add(second)
        error, match = AccessError, rf"cannot reach DV360 advertiser\(s\) {second} .*advertiser_ids.*they reach: {first}"
    else:
        fake.fail_next(google_error(403, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Queries per day'",
                                    "quotaExceeded"), path=r"^/v2/queries$")
        error, match = QuotaExceededError, r"quota of the Google Cloud project is spent.*run again"
    with pytest.raises(error, match=match):
        ws.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    assert bronze_rows(ws) == bronze
    assert repo.get_connection(stores.db, "acme", "dv360").state == state
    assert repo.last_runs(stores.db, "acme", 1)[0].status == "failed"
    ws.transform(progress=False)
    assert content(ws, "silver.ad_performance_daily").equals(silver)
    assert conn.id == repo.get_connection(stores.db, "acme", "dv360").id


def test_a_restated_day_replaces_the_old_figure(stores, fake):
    ws = workspace(stores)
    add(ws, fake)
    ws.ingest("dv360", progress=False)  # the default window: the 14-day look-back
    ws.transform(progress=False)
    day = TODAY - dt.timedelta(days=2)
    creative = next(r["Creative ID"] for r in fake.rows if day_of(r) == day)
    fake.set_cell(day, creative, "Media Cost (Advertiser Currency)", "1,234.56")
    fake.set_cell(day, creative, "Total Conversions", "1,001.5")  # data-driven: fractional
    ws.ingest("dv360", progress=False)
    ws.transform(progress=False)
    silver = money_as_float(ws.table("silver.ad_performance_daily"))
    mine = silver.filter((pl.col("ad_id") == creative) & (pl.col("date") == day))
    assert mine.rows(named=True)[0]["spend"] == 1234.56 and mine["conversions"][0] == 1001.5
    assert mine.height == 1
    assert silver.height == len(fake.rows_between(TODAY - dt.timedelta(days=13), TODAY))
    gold = money_as_float(ws.table("gold.performance_daily")).filter((pl.col("ad_id") == creative) & (pl.col("date") == day))
    assert gold["spend"].to_list() == [1234.56]


def test_the_default_window_is_the_look_back_then_everything_since_the_last_run(stores, fake):
    ws = workspace(stores)
    conn = add(ws, fake)
    assert conn.lookback_days == DV360Connector.default_lookback_days == 14
    first = ws.ingest("dv360", progress=False)
    assert first.window == Window(TODAY - dt.timedelta(days=13), TODAY)
    assert repo.get_connection(stores.db, "acme", "dv360").state["last_window_end"] == TODAY.isoformat()
    repo.save_connection_state(stores.db, "acme", conn.id, {"last_window_end": (TODAY - dt.timedelta(days=20)).isoformat()})
    later = ws.ingest("dv360", progress=False)
    assert later.window == Window(TODAY - dt.timedelta(days=19), TODAY)
    assert query_ranges(fake) == [(first.window.start, TODAY), (later.window.start, TODAY)]
    assert later.streams[REPORT_STREAM] == len(fake.rows_between(later.window.start, TODAY))


def test_new_and_missing_fields_do_not_break_a_sync(stores, fake, caplog):
    caplog.set_level(logging.INFO, logger="connectors.dv360")
    fake.extra_columns = {"Active View: Viewable Impressions": "1,500", "Complete Views (Video)": "2,000"}
    fake.dropped_columns = {"CM360 Post-View Revenue", "TrueView: Views"}
    for order in fake.insertion_orders.values():
        order["optimizationObjective"] = "CONVERSION"
        del order["kpi"]
    ws = workspace(stores)
    add(ws, fake)
    ws.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    ws.transform(progress=False)
    served = fake.rows_between(WINDOW.start, WINDOW.end)
    assert ws.quarantine().is_empty()
    silver = money_as_float(ws.table("silver.ad_performance_daily"))
    assert silver.height == len(served)
    assert silver["conversion_value"].sum() == pytest.approx(sum(number(r["CM360 Post-Click Revenue"]) for r in served))
    assert set(silver["video_views"]) == {2000}  # the other video column stands in
    campaigns = ws.table("silver.campaigns")
    assert campaigns.height == len(fake.insertion_orders) and campaigns["objective"].null_count() == campaigns.height
    payloads = [json.loads(p) for p in ws.table("bronze.raw_records").filter(
        pl.col("stream") == REPORT_STREAM)["payload"]]
    assert all(p["Active View: Viewable Impressions"] == "1,500" and "TrueView: Views" not in p for p in payloads)
    assert "no column CM360 Post-View Revenue, TrueView: Views" in caplog.text
    assert "new report columns Active View: Viewable Impressions, Complete Views (Video)" in caplog.text


def test_parser_reads_fractional_conversions_and_the_fallback_video_column():
    rows = [{"Date": "2026/11/24", "Advertiser ID": "1", "Advertiser Currency": "EUR", "Insertion Order ID": "2",
             "Line Item ID": "3", "Creative ID": "4", "Impressions": "12,345", "Clicks": "1,002",
             "Total Conversions": "1,234.56", "Media Cost (Advertiser Currency)": "1,000,000.5",
             "Complete Views (Video)": "7,000"}]
    raw = pl.DataFrame({
        "org_id": ["acme"], "source": ["dv360"], "stream": [REPORT_STREAM], "connection_id": ["c"],
        "batch_id": ["b"], "extracted_at": [dt.datetime(2026, 11, 25, tzinfo=dt.UTC)], "window_start": [None],
        "window_end": [None], "record_index": [0], "payload": [json.dumps(r) for r in rows]})
    result = parse_report(raw, ParseContext("acme"))
    row = result.good.row(0, named=True)
    assert result.bad.is_empty()
    assert (row["conversions"], row["spend"], row["impressions"], row["clicks"]) == (1234.56, 1000000.5, 12345, 1002)
    assert (row["video_views"], row["conversion_value"], row["currency"]) == (7000, 0.0, "EUR")


# -- accounts ----------------------------------------------------------------------------------


def test_accounts_lists_the_advertisers_and_names_any_out_of_reach(stores, fake):
    ws = workspace(stores)
    add(ws, fake)
    frame = connections.test(ws, "dv360")
    assert frame.rows() == [(a, fake.advertisers[a]["displayName"], fake.currency(a), "active")
                            for a in fake.advertisers]
    first, second = list(fake.advertisers)
    fake.denied.add(first)
    with pytest.raises(AccessError, match=rf"cannot reach DV360 advertiser\(s\) {first} .*they reach: {second}"):
        connections.test(ws, "dv360")


# -- write-back --------------------------------------------------------------------------------


@pytest.fixture
def writer(stores, fake):
    add(workspace(stores), fake)
    return platform_writers.get("dv360", stores, "acme")


def always_on(fake: FakeDV360, advertiser: str) -> str:
    """The advertiser's always-on insertion order (a budget segment per year, so one covers today)."""
    order = next(o for o in fake.insertion_orders.values() if o["advertiserId"] == advertiser
                 and len(o["budget"]["budgetSegments"]) > 1)
    order["entityStatus"] = "ENTITY_STATUS_ACTIVE"
    return order["insertionOrderId"]


def this_year(order: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in order["budget"]["budgetSegments"] if s["dateRange"]["startDate"]["year"] == TODAY.year)


def test_pause_resume_and_budget_of_an_insertion_order(writer, fake):
    advertiser = list(fake.advertisers)[1]  # the lookup tries the first advertiser, then this one
    io = always_on(fake, advertiser)
    segment = this_year(fake.insertion_orders[io])
    budget = Decimal(segment["budgetAmountMicros"]) / 1_000_000
    active = EntityState("active", budget, "lifetime", fake.currency(advertiser))
    paused = writer.pause("campaign", io, "k-pause")
    assert (paused.before, paused.after, paused.replayed) == (active, EntityState(
        "paused", budget, "lifetime", active.currency), False)
    assert fake.insertion_orders[io]["entityStatus"] == "ENTITY_STATUS_PAUSED"
    assert writer.resume("campaign", io, "k-resume").after.status == "active"
    result = writer.set_budget("campaign", io, Decimal("1234.565"), "k-budget")
    assert result.before.budget == budget and result.after.budget == Decimal("1234.57")
    assert this_year(fake.insertion_orders[io])["budgetAmountMicros"] == "1234570000"
    others = [s for s in fake.insertion_orders[io]["budget"]["budgetSegments"] if s is not this_year(
        fake.insertion_orders[io])]
    assert all(s["budgetAmountMicros"] != "1234570000" for s in others), "only today's segment changes"
    assert [(kind, mask) for kind, _, mask, _ in fake.applied] == [
        ("insertionOrders", "entityStatus"), ("insertionOrders", "entityStatus"),
        ("insertionOrders", "budget.budgetSegments")]
    calls = len(fake.log)
    again = writer.pause("campaign", io, "k-pause")
    assert again.replayed and again.after.status == "paused" and len(fake.log) == calls  # no platform call


def test_line_item_budgets_fixed_and_automatic(writer, fake):
    advertiser = next(iter(fake.advertisers))
    io = always_on(fake, advertiser)
    fixed, automatic = (li["lineItemId"] for li in fake.line_items.values() if li["insertionOrderId"] == io)
    result = writer.set_budget("ad_group", fixed, Decimal(500), "k-li")
    assert result.after == EntityState(result.before.status, Decimal("500.00"), "lifetime", fake.currency(advertiser))
    assert fake.line_items[fixed]["budget"]["maxAmount"] == "500000000"
    assert writer.read("ad_group", automatic).budget is None
    with pytest.raises(PermanentWriteError, match="no budget of its own"):
        writer.set_budget("ad_group", automatic, Decimal(500), "k-auto")
    assert writer.pause("ad_group", automatic, "k-li-pause").after.status == "paused"


def test_a_lost_answer_then_a_retry_with_the_same_key_applies_once(writer, fake):
    io = always_on(fake, next(iter(fake.advertisers)))
    fake.write_faults = ["lost", *["503"] * 7]  # applied, the answer lost, then no answer until retries run out
    with pytest.raises(TransientWriteError):
        writer.pause("campaign", io, "k-lost")
    assert len(fake.applied) == 1
    patches = len(fake.requests_to(rf"/insertionOrders/{io}$", "PATCH"))
    result = writer.pause("campaign", io, "k-lost")
    assert result.after.status == "paused" and len(fake.applied) == 1
    assert len(fake.requests_to(rf"/insertionOrders/{io}$", "PATCH")) == patches, "already applied: not sent again"


def test_transient_write_failures_and_refusals(writer, fake):
    io = always_on(fake, next(iter(fake.advertisers)))
    fake.write_faults = ["503"] * 8
    with pytest.raises(TransientWriteError, match="HTTP 503"):
        writer.set_budget("campaign", io, Decimal(100), "k-503")
    assert fake.applied == []
    assert writer.set_budget("campaign", io, Decimal(100), "k-503").after.budget == Decimal("100.00")
    refusals = [
        (lambda: writer.pause("campaign", "999999", "k-a"), r"no insertion order 999999 under the connection's"),
        (lambda: writer.pause("ad", "4193004154357397", "k-b"), r"creatives have no status .* ad_group"),
        (lambda: writer.pause("campaign", "abc", "k-c"), r"not a DV360 insertion order id"),
    ]
    archived = next(o["insertionOrderId"] for o in fake.insertion_orders.values()
                    if o["entityStatus"] == "ENTITY_STATUS_ARCHIVED")
    refusals.append((lambda: writer.resume("campaign", archived, "k-d"), r"archived"))
    for call, message in refusals:
        with pytest.raises(PermanentWriteError, match=message):
            call()


# -- secrets -----------------------------------------------------------------------------------


def test_no_secret_reaches_errors_logs_or_bronze(stores, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.echo_secrets = True  # error bodies quote the bearer token and the refresh token back
    ws = workspace(stores)
    add(ws, fake)
    ws.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    assert fake.faults_served
    fake.expire_tokens()
    fake.refresh_tokens.clear()
    with pytest.raises(AuthError) as failure:
        ws.ingest("dv360", WINDOW.start, WINDOW.end, progress=False)
    texts = [str(failure.value), caplog.text, *ws.table("bronze.raw_records")["payload"],
             *(r.error or "" for r in repo.last_runs(stores.db, "acme"))]
    assert "***" in str(failure.value)  # the echoed refresh token was there, masked
    signatures = [fake.sign(report_id) for report_id in fake.reports]  # signed download URLs
    assert signatures
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *fake.issued, *signatures):
        assert not any(secret in text for text in texts), secret

