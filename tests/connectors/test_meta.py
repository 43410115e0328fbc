"""The Meta connector against a local Graph API: async Insights jobs, paging, throttling, errors
that say what to fix, restatements, default windows, write-back and secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from connector_helpers import FAST, connect, workspace
from fake_meta import EUR_ACT, TOKEN, USD_ACT, FakeMeta, error, throttle
from platform_fakes import TRANSIENT_KINDS, Reply

from connectors.base import ConnectionConfig, EntityState, Gap, PermanentWriteError, TransientWriteError
from connectors.meta import InsightsJobError, MetaConnector, MetaWriter
from workbench.errors import (
    AccessError,
    AuthError,
    QuotaExceededError,
    TransientApiError,
    ValidationError,
)
from workbench.oltp import repo

CREDS = {"access_token": TOKEN}
SETTINGS: dict[str, Any] = {"poll_seconds": 0.01, "stall_polls": 3, "page_size": 5, "chunk_days": 4,
                            "throttle_wait_seconds": 0.01, "usage_pause_seconds": 0.01}
PURCHASE, LEAD = "offsite_conversion.fb_pixel_purchase", "offsite_conversion.fb_pixel_lead"
LINEAGE = ["connector", "connection_id", "source_batch_id", "extracted_at", "record_index", "org_id"]
USD_CAMPAIGN, EUR_LIFETIME = "1200010010", "1200020021"


@pytest.fixture(autouse=True)
def registered():
    from connectors.registry import connectors

    connectors.register("meta", MetaConnector)


@pytest.fixture
def fake():
    with FakeMeta() as f:
        f.slow_seconds = 0.6  # past FAST's 0.5 s timeout
        yield f


def sync(ws: Any, start: dt.date | None = None, end: dt.date | None = None) -> Any:
    result = ws.ingest("meta", start, end, progress=False)
    ws.transform(progress=False)
    return result


def silver(ws: Any) -> pl.DataFrame:
    return ws.table("silver.ad_performance_daily").drop(LINEAGE).sort("ad_id", "date")


def jobs(fake: FakeMeta, act: str) -> list[tuple[dt.date, dt.date]]:
    return [(j["since"], j["until"]) for j in fake.jobs.values() if j["act"] == act]


def total(actions: list[dict[str, str]] | None, types: tuple[str, ...]) -> float:
    return sum(float(a["value"]) for a in actions or [] if a["action_type"] in types)


# -- reading end to end -------------------------------------------------------------------------

def test_a_sync_lands_exactly_what_meta_served(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS, account_ids=[USD_ACT, "2002"],
            conversion_action_types=[PURCHASE, LEAD])
    start, end = fake.days[0], fake.days[-1]
    result = sync(ws, start, end)

    served = fake.served_rows(start, end)
    assert result.streams == {"meta.ad_insights_daily": len(served), "meta.campaigns": 4}
    assert result.gaps == []
    perf = ws.table("silver.ad_performance_daily")
    assert perf.height == len(served) == 2 * 2 * 2 * len(fake.days)
    assert perf.group_by("date").len().sort("date")["len"].to_list() == [8] * len(fake.days)
    got = {(r["ad_id"], r["date"]): r for r in perf.iter_rows(named=True)}
    for row in served:
        s = got[(row["ad_id"], dt.date.fromisoformat(row["date_start"]))]
        video = row.get("video_thruplay_watched_actions")
        assert (s["account_id"], s["campaign_id"], s["ad_group_id"], s["currency"], s["impressions"],
                s["clicks"], s["reach"], s["video_views"]) == (
            row["account_id"], row["campaign_id"], row["adset_id"], row["account_currency"],
            int(row["impressions"]), int(row["clicks"]), int(row["reach"]),
            None if video is None else int(video[0]["value"]))
        assert float(s["spend"]) == pytest.approx(float(row["spend"]))
        assert s["conversions"] == total(row["actions"], (PURCHASE, LEAD))  # the connection's types
        assert float(s["conversion_value"]) == pytest.approx(total(row["action_values"], (PURCHASE, LEAD)))
    eur = perf.filter(pl.col("currency") == "EUR")
    assert (eur["org_currency"] == "USD").all() and (eur["spend_org"] != eur["spend"]).all()

    campaigns = ws.table("silver.campaigns").sort("campaign_id")
    assert campaigns.select("campaign_id", "account_id", "status", "budget_type", "budget_amount",
                            "currency", "labels").rows() == [
        ("1200010010", "1001", "active", "daily", 50, "USD", ["label0"]),
        ("1200010011", "1001", "paused", "lifetime", 2500, "USD", ["label0"]),
        ("1200020020", "2002", "active", "daily", 50, "EUR", ["label1"]),
        ("1200020021", "2002", "paused", "lifetime", 2500, "EUR", ["label1"]),
    ]
    assert ws.table("silver.crm_deals").is_empty() and ws.table("silver.quarantine").is_empty()

    gold = ws.table("gold.campaign_daily")
    by_campaign = gold.group_by("campaign_id").agg(pl.col("spend").sum(), pl.col("impressions").sum())
    for cid, spend, impressions in by_campaign.rows():
        rows = [r for r in served if r["campaign_id"] == cid]
        assert spend == pytest.approx(sum(float(r["spend"]) for r in rows))
        assert impressions == sum(int(r["impressions"]) for r in rows)
    assert gold.height == 4 * len(fake.days)
    assert ws.table("gold.performance_daily")["spend"].sum() == pytest.approx(
        sum(float(r["spend"]) for r in served))

    # what went over the wire: async jobs per 4-day chunk, explicit breakdowns, unified attribution
    assert jobs(fake, USD_ACT) == jobs(fake, EUR_ACT) == [(fake.days[0], fake.days[3]), (fake.days[4], fake.days[5])]
    params = next(iter(fake.jobs.values()))["params"]
    assert (params["level"], params["time_increment"], params["action_breakdowns"],
            params["use_unified_attribution_setting"]) == ("ad", "1", '["action_type"]', "true")
    assert "action_attribution_windows" not in params
    assert {"spend", "actions", "action_values", "video_thruplay_watched_actions", "reach"} <= set(
        params["fields"].split(","))
    assert any(r.arg("after") for r in fake.requests_to(r"^/\d+/insights$"))  # cursor paging
    assert all(r.header("authorization") == f"Bearer {TOKEN}" for r in fake.log)
    assert not any(TOKEN in r.path + json.dumps(r.query) for r in fake.log)


def test_faults_on_the_way_still_land_every_record_once(stores, fake):
    clean = workspace(stores, "clean")
    connect(clean, "meta", fake, CREDS, **SETTINGS | {"chunk_days": 7})
    start, end = fake.days[0], fake.days[-1]
    sync(clean, start, end)

    fake.transient_rate = 0.2
    fake.transient_kinds = tuple(k for k in TRANSIENT_KINDS if k != "slow")  # each costs a timeout: once below
    fake.fail_next(*TRANSIENT_KINDS, path=r"^/\d+$")  # each kind at least once, on job polls
    fake.fail_next(throttle(17), throttle(613), Reply(200, {"paging": {}}), path=r"^/\d+/insights$")
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS | {"chunk_days": 7})
    sync(ws, start, end)

    assert {*TRANSIENT_KINDS, "400", "200"} <= set(fake.faults_served)
    assert silver(ws).equals(silver(clean))
    assert silver(ws).height == len(fake.served_rows())
    assert ws.table("silver.campaigns").height == 4


def test_failed_skipped_and_stalled_jobs_are_split_down_to_days(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS, account_ids=[USD_ACT])
    fake.next_jobs = ["failed", "skipped", "ok", "ok", "stalled"]
    sync(ws, fake.days[0], fake.days[-1])
    d = fake.days
    assert jobs(fake, USD_ACT) == [(d[0], d[3]), (d[0], d[1]), (d[0], d[0]), (d[1], d[1]), (d[2], d[3]),
                                   (d[2], d[2]), (d[3], d[3]), (d[4], d[5])]
    assert silver(ws).height == len([r for r in fake.served_rows() if r["account_id"] == "1001"])


def test_a_day_that_keeps_failing_stops_the_run_naming_account_and_day(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    fake.bad_days = {(EUR_ACT, fake.days[2])}
    with pytest.raises(InsightsJobError, match=rf"insights of {EUR_ACT} for {fake.days[2]}: .*single day") as e:
        ws.ingest("meta", fake.days[0], fake.days[-1], progress=False)
    assert isinstance(e.value, TransientApiError)
    assert ws.table("bronze.raw_records").is_empty()


def test_gaps_name_the_account_and_the_days_without_rows(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    for key in [k for k in fake.rows if k[1] == fake.days[2] and fake.rows[k]["account_id"] == "2002"]:
        del fake.rows[key]
    result = ws.ingest("meta", fake.days[0], fake.days[-1], progress=False)
    assert result.gaps == [Gap("2002", (fake.days[2],))]
    state = repo.get_connection(stores.db, "acme", "meta").state
    assert state["last_gaps"] == [f"account 2002: no rows for {fake.days[2]}"]


def test_a_schema_change_in_rows_still_lands(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    fake.extra_fields = {"inline_link_click_ctr": "1.23"}  # a field Meta started to send
    fake.dropped_fields = {"reach", "video_thruplay_watched_actions"}  # fields it stopped sending
    sync(ws, fake.days[0], fake.days[-1])
    perf = silver(ws)
    assert perf.height == len(fake.served_rows()) and ws.table("silver.quarantine").is_empty()
    assert perf["reach"].null_count() == perf["video_views"].null_count() == perf.height
    payloads = ws.table("bronze.raw_records").filter(pl.col("stream") == "meta.ad_insights_daily")["payload"]
    assert payloads.str.contains("inline_link_click_ctr").all()  # bronze keeps what Meta sent


# -- windows and restatements -------------------------------------------------------------------

def test_restated_figures_replace_the_old_ones(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS | {"chunk_days": 14})
    first = sync(ws)
    assert first.window.days == 28 and first.window.end == fake.today
    ad, day = next(iter(fake.rows))
    fake.rows[(ad, day)] = {**fake.rows[(ad, day)], "spend": "99.99", "impressions": "123456"}
    sync(ws)
    perf = silver(ws)
    assert perf.height == len(fake.served_rows())
    row = perf.filter((pl.col("ad_id") == ad) & (pl.col("date") == day))
    assert row.height == 1 and float(row["spend"][0]) == 99.99 and row["impressions"][0] == 123456


def test_the_default_window_is_the_lookback_then_from_the_last_window_end(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, lookback_days=3, **SETTINGS | {"chunk_days": 7}, account_ids=[USD_ACT],
            attribution="7d_click,1d_view")
    today = fake.today
    old = ws.ingest("meta", today - dt.timedelta(days=12), today - dt.timedelta(days=10), progress=False)
    fake.jobs.clear()
    catch_up = ws.ingest("meta", progress=False)
    assert (catch_up.window.start, catch_up.window.end) == (old.window.end + dt.timedelta(days=1), today)
    assert jobs(fake, USD_ACT) == [(today - dt.timedelta(days=9), today - dt.timedelta(days=3)),
                                   (today - dt.timedelta(days=2), today)]
    fake.jobs.clear()
    again = ws.ingest("meta", progress=False)
    assert (again.window.start, again.window.end) == (today - dt.timedelta(days=2), today)
    assert jobs(fake, USD_ACT) == [(today - dt.timedelta(days=2), today)]
    assert repo.get_connection(stores.db, "acme", "meta").state["last_window_end"] == today.isoformat()
    params = next(iter(fake.jobs.values()))["params"]  # the attribution setting replaces the unified one
    assert params["action_attribution_windows"] == '["7d_click", "1d_view"]'
    assert "use_unified_attribution_setting" not in params


# -- errors that stop a run ---------------------------------------------------------------------

FINAL = {
    "revoked": (lambda: error(190, "Error validating access token: The user has not authorized application 123.",
                              subcode=458), AuthError, r"Create a new token.*connections add meta --org acme --update"),
    "permission": (lambda: error(200, "(#200) Ad account owner has NOT grant ads_read permission", status=403),
                   AccessError, r"needs ads_read"),
    "quota": (lambda: throttle(80004, minutes=30), QuotaExceededError, r"wait 30 min.*run again after"),
}


@pytest.mark.parametrize("case", sorted(FINAL))
def test_a_final_error_stops_the_run_and_changes_nothing(stores, fake, case):
    reply, kind, message = FINAL[case]
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    sync(ws, fake.days[0], fake.days[2])
    before = (silver(ws), ws.table("bronze.raw_records").height,
              repo.get_connection(stores.db, "acme", "meta").state)

    fake.fail_next(reply(), path=rf"^/{EUR_ACT}/insights$")  # after the first account's rows were read
    with pytest.raises(kind, match=message):
        ws.ingest("meta", fake.days[3], fake.days[5], progress=False)
    assert jobs(fake, USD_ACT)[-1] == (fake.days[3], fake.days[5])
    assert len(fake.requests_to(rf"^/{EUR_ACT}/insights$", "POST")) == 2  # the final one not retried
    ws.transform(progress=False)
    assert silver(ws).equals(before[0])
    assert ws.table("bronze.raw_records").height == before[1]
    assert repo.get_connection(stores.db, "acme", "meta").state == before[2]


def test_an_expired_token_is_final_and_says_how_to_replace_it(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    fake.expire_tokens()
    with pytest.raises(AuthError, match="expired, was revoked.*--update"):
        ws.ingest("meta", fake.days[0], fake.days[-1], progress=False)
    assert len(fake.log) == 1


def test_an_unknown_account_is_named_with_the_accounts_the_token_reaches(stores, fake):
    from workbench import connections

    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS, account_ids=["act_999"])
    with pytest.raises(AccessError, match=r"act_999 is unknown.*reaches: act_1001 \(Acme US\), act_2002 \(Acme DE\)"):
        ws.ingest("meta", fake.days[0], fake.days[-1], progress=False)
    assert connections.test(ws, "meta").rows() == [("act_1001", "Acme US", "USD", "active"),
                                                  ("act_2002", "Acme DE", "EUR", "active")]
    with pytest.raises(ValidationError, match=r"'campaign_1', not a Meta ad account id \(act_ followed by digits"):
        MetaConnector(ConnectionConfig("acme", "c", settings={"account_ids": "act_1,campaign_1"}, credentials=CREDS))
    with pytest.raises(ValidationError, match="attribution setting holds 3d_click"):
        MetaConnector(ConnectionConfig("acme", "c", settings={"attribution": "3d_click"}, credentials=CREDS))


# -- throttling ---------------------------------------------------------------------------------

def direct(fake: FakeMeta, **settings: Any) -> MetaConnector:
    return MetaConnector(ConnectionConfig("acme", f"meta-{uuid.uuid4()}", credentials=CREDS,
                                          settings={"base_url": fake.url, **FAST, **SETTINGS, **settings}))


def test_usage_headers_near_the_limit_pause_calls_before_meta_blocks(fake):
    connector = direct(fake, usage_pause_seconds=30)
    fake.usage = {"X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": 40, "reset_time_duration": 0}),
                  "X-FB-Ads-Insights-Throttle": json.dumps({"app_id_util_pct": 12, "acc_id_util_pct": 50})}
    connector.accounts()
    assert connector.client.limiter.paused_for == 0
    fake.usage["X-FB-Ads-Insights-Throttle"] = json.dumps({"app_id_util_pct": 95, "acc_id_util_pct": 50})
    connector.accounts()
    assert 20 < connector.client.limiter.paused_for <= 30  # no stated time: usage_pause_seconds
    usage = {"555": [{"type": "ads_management", "call_count": 96, "total_cputime": 10, "total_time": 10,
                      "estimated_time_to_regain_access": 2}]}
    fake.usage = {"X-Business-Use-Case-Usage": json.dumps(usage)}
    connector.close()
    other = direct(fake)  # its own limiter, not paused
    other.accounts()
    assert 100 < other.client.limiter.paused_for <= 120  # the stated 2 minutes
    other.close()


def test_a_throttle_longer_than_max_wait_stops_with_when_to_run_again(fake):
    connector = direct(fake, max_wait_seconds=60)
    fake.fail_next(throttle(17, minutes=2), path="^/me/adaccounts$")
    with pytest.raises(QuotaExceededError, match=r"slow down.*wait 2 min.*run again after"):
        connector.accounts()
    assert connector.client.limiter.paused_for == 0  # no silent wait for a block it will not sit out
    connector.close()


# -- write-back ---------------------------------------------------------------------------------

@pytest.fixture
def writer(stores, fake):
    from connectors.writers import platform_writers

    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    w = platform_writers.get("meta", stores, "acme")
    assert isinstance(w, MetaWriter)
    yield w
    w.connector.close()


def test_pause_resume_and_budgets_return_before_and_after(writer, fake):
    daily = EntityState("active", Decimal("50.00"), "daily", "USD")
    r = writer.pause("campaign", USD_CAMPAIGN, "k1")
    assert (r.before, r.after, r.replayed) == (daily, EntityState("paused", Decimal("50.00"), "daily", "USD"), False)
    assert writer.resume("campaign", USD_CAMPAIGN, "k2").after.status == "active"
    r = writer.set_budget("campaign", USD_CAMPAIGN, Decimal("75.5"), "k3")
    assert r.after == EntityState("active", Decimal("75.50"), "daily", "USD")
    r = writer.set_budget("campaign", EUR_LIFETIME, Decimal("3000"), "k4")
    assert (r.before.budget, r.after.budget, r.after.budget_type, r.after.currency) == (
        Decimal("2500.00"), Decimal("3000.00"), "lifetime", "EUR")
    assert writer.pause("ad_group", "12000100101", "k5").after == EntityState("paused", currency="USD")
    assert writer.pause("ad", "120001001011", "k6").after == EntityState("paused", currency="USD")
    assert fake.writes == [(USD_CAMPAIGN, {"status": "PAUSED"}), (USD_CAMPAIGN, {"status": "ACTIVE"}),
                           (USD_CAMPAIGN, {"daily_budget": "7550"}), (EUR_LIFETIME, {"lifetime_budget": "300000"}),
                           ("12000100101", {"status": "PAUSED"}), ("120001001011", {"status": "PAUSED"})]
    # a zero-decimal currency has no minor units
    fake.accounts["act_3003"] = {"id": "act_3003", "account_id": "3003", "name": "JP", "currency": "JPY",
                                 "account_status": 1}
    fake.nodes["900"] = {"_type": "campaign", "id": "900", "account_id": "3003", "status": "ACTIVE",
                         "daily_budget": "2500"}
    r = writer.set_budget("campaign", "900", Decimal("3000.4"), "k7")
    assert (r.before.budget, r.after.budget, fake.writes[-1]) == (
        Decimal("2500.00"), Decimal("3000.00"), ("900", {"daily_budget": "3000"}))


def test_a_retried_key_is_replayed_without_calling_meta(writer, fake):
    first = writer.pause("campaign", USD_CAMPAIGN, "same-key")
    calls = len(fake.log)
    again = writer.pause("campaign", USD_CAMPAIGN, "same-key")
    assert again.replayed and (again.before, again.after) == (first.before, first.after)
    assert len(fake.log) == calls and len(fake.writes) == 1


def test_a_lost_answer_then_a_retry_applies_once(writer, fake):
    fake.write_faults = ["lost"]  # Meta applies the change; the answer never arrives
    with pytest.raises(TransientWriteError):
        writer.set_budget("campaign", USD_CAMPAIGN, Decimal(80), "k-lost")
    assert fake.nodes[USD_CAMPAIGN]["daily_budget"] == "8000"
    r = writer.set_budget("campaign", USD_CAMPAIGN, Decimal(80), "k-lost")
    assert r.after.budget == Decimal("80.00") and not r.replayed
    assert r.before.budget == Decimal("50.00")  # the journal kept the state before the lost write
    assert len(fake.writes) == 1
    again = writer.set_budget("campaign", USD_CAMPAIGN, Decimal(80), "k-lost")
    assert again.replayed and again.before.budget == Decimal("50.00") and len(fake.writes) == 1


def test_write_failures_are_transient_or_permanent(writer, fake):
    fake.write_faults = ["503", "429"]  # the 429 says Retry-After: 0
    with pytest.raises(TransientWriteError, match="HTTP 503"):
        writer.pause("campaign", USD_CAMPAIGN, "t1")
    with pytest.raises(TransientWriteError) as e:
        writer.pause("campaign", USD_CAMPAIGN, "t1")
    assert e.value.retry_after == 0 and fake.writes == []
    assert writer.pause("campaign", USD_CAMPAIGN, "t1").after.status == "paused"
    fake.write_faults = [throttle(80004)]
    with pytest.raises(TransientWriteError, match="slow down"):
        writer.resume("campaign", USD_CAMPAIGN, "t2")

    cases = [(lambda: writer.pause("campaign", "99999", "p1"), "campaign 99999 does not exist"),
             (lambda: writer.pause("campaign", "act_1001", "p2"), "not a Meta campaign id"),
             (lambda: writer.pause("account", "1001", "p3"), "cannot change a 'account'"),
             (lambda: writer.set_budget("ad", "120001001011", Decimal(5), "p4"), "no budget of its own"),
             (lambda: writer.set_budget("ad_group", "12000100101", Decimal(5), "p5"), "no budget of its own")]
    for call, message in cases:
        with pytest.raises(PermanentWriteError, match=message):
            call()
    fake.nodes[EUR_LIFETIME]["status"] = "ARCHIVED"
    with pytest.raises(PermanentWriteError, match="archived"):
        writer.resume("campaign", EUR_LIFETIME, "p6")
    assert len(fake.writes) == 1


# -- secrets ------------------------------------------------------------------------------------

def test_no_secret_in_messages_logs_or_bronze(stores, fake, caplog):
    caplog.set_level(logging.DEBUG)
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    fake.fail_next("500", "drop", "malformed", "429", "slow")
    sync(ws, fake.days[0], fake.days[2])
    fake.fail_next(error(200, "(#200) Requires ads_read permission", status=403), path=r"/insights$")
    with pytest.raises(AccessError) as denied:
        ws.ingest("meta", fake.days[3], fake.days[5], progress=False)
    bad_token = "EAAB-malformed-secret-98765"
    ws.connection("meta", credentials={"access_token": bad_token},
                  settings={"base_url": fake.url, **FAST, **SETTINGS})
    with pytest.raises(AuthError) as refused:
        ws.ingest("meta", fake.days[3], fake.days[5], progress=False)
    assert "Malformed access token" in str(refused.value)  # Meta's words, with the token masked
    texts = [str(denied.value), str(refused.value), *(r.getMessage() for r in caplog.records),
             *ws.table("bronze.raw_records")["payload"].to_list()]
    assert len(caplog.records) > 10
    assert not [t for t in texts if TOKEN in t or bad_token in t]



def test_rule_actions_reach_meta_and_undo_there_while_other_orgs_stay_synthetic(stores, fake):
    from connectors.synthetic_platform import SyntheticPlatform
    from connectors.writers import platform_writers
    from workbench.rules import actions

    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS)
    workspace(stores, "globex", "EUR")
    assert isinstance(platform_writers.get("meta", stores, "globex"), SyntheticPlatform)

    def writer_for(platform: str) -> Any:
        return platform_writers.get(platform, stores, "acme")

    row = actions.request_action(stores.db, "acme", rule="overspend", evaluation_id="ev-1", platform="meta",
                                 level="campaign", entity_id=USD_CAMPAIGN,
                                 spec={"type": "set_budget", "amount": "40"}, mode="execute",
                                 writer=writer_for("meta"))
    assert row.status == "executed", row.error
    assert fake.nodes[USD_CAMPAIGN]["daily_budget"] == "4000"
    assert (row.before or {})["budget"] == 50.0 and (row.after or {})["budget"] == 40.0
    undone = actions.undo(stores.db, "acme", row.id, "ana", writer_for)
    assert undone.status == "executed" and fake.nodes[USD_CAMPAIGN]["daily_budget"] == "5000"
    assert len(fake.writes) == 2


def test_breakdowns_keep_every_row_and_roll_up_to_the_same_totals(stores, fake):
    ws = workspace(stores)
    connect(ws, "meta", fake, CREDS, **SETTINGS, breakdowns="publisher_platform")
    start, end = fake.days[0], fake.days[-1]
    sync(ws, start, end)
    assert fake.jobs and all(json.loads(j["params"]["breakdowns"]) == ["publisher_platform"]
                             for j in fake.jobs.values())
    served = fake.served_rows(start, end)
    perf = ws.table("silver.ad_performance_daily")
    assert perf.height == 2 * len(served)  # facebook and instagram rows of every ad and day, none collapsed
    assert sorted(perf["breakdown"].unique().to_list()) == ["publisher_platform=facebook",
                                                           "publisher_platform=instagram"]
    assert ws.table("silver.quarantine").is_empty()  # no "duplicate key" for the second platform
    gold = ws.table("gold.performance_daily")
    assert gold.height == len(served)  # one row per ad and day again
    assert gold["impressions"].sum() == sum(int(r["impressions"]) for r in served)
    assert gold["spend"].sum() == pytest.approx(sum(float(r["spend"]) for r in served))


def test_unknown_breakdowns_are_refused_with_the_choices(stores, fake):
    with pytest.raises(ValidationError, match="breakdowns setting holds hour_of_day; choose among publisher_platform"):
        direct(fake, breakdowns=["hour_of_day"])
