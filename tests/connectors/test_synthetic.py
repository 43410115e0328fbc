"""The synthetic connector: reproducible, realistic, and honest about restatements and errors."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections import Counter
from typing import Any

import pytest

from connectors.base import ConnectionConfig, Page, Window
from connectors.synthetic import PAGE_SIZE, SyntheticConnector

AS_OF = dt.date(2026, 11, 25)
NOVEMBER = Window(dt.date(2026, 11, 1), dt.date(2026, 11, 24))
STREAMS = ("meta.ad_insights_daily", "meta.campaigns", "dv360.report_daily",
           "dv360.insertion_orders", "ttd.report_daily", "ttd.campaigns", "hubspot.deals",
           "salesforce.opportunities")
ID_FIELDS = {"meta.ad_insights_daily": "ad_id", "dv360.report_daily": "Creative ID",
             "ttd.report_daily": "Creative ID"}
DATE_FIELDS = {"meta.ad_insights_daily": "date_start", "dv360.report_daily": "Date",
               "ttd.report_daily": "Date"}


def read(window: Window = NOVEMBER, org_id: str = "org-a", currency: str = "EUR",
         **settings: Any) -> list[Page]:
    settings.setdefault("as_of", AS_OF.isoformat())
    config = ConnectionConfig(org_id=org_id, connection_id="conn-1", settings=settings,
                              org_currency=currency)
    return list(SyntheticConnector(config).read(window))


def records(pages: list[Page], stream: str) -> list[Any]:
    return [r for p in pages if p.stream == stream for r in p.records]


def daily_rows(pages: list[Page]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Performance rows of every platform keyed by (stream, ad id, date)."""
    return {(s, r[ID_FIELDS[s]], r[DATE_FIELDS[s]][:10].replace("/", "-")): r
            for s in ID_FIELDS for r in records(pages, s)}


def test_declares_its_streams() -> None:
    assert SyntheticConnector.name == "synthetic"
    assert SyntheticConnector.default_lookback_days == 3
    assert tuple(s.name for s in SyntheticConnector.streams) == STREAMS
    daily = {s.name for s in SyntheticConnector.streams if s.daily}
    assert daily == {"meta.ad_insights_daily", "dv360.report_daily", "ttd.report_daily"}


def test_same_org_and_seed_give_the_same_records() -> None:
    first, second = read(), read()
    assert [(p.stream, p.records) for p in first] == [(p.stream, p.records) for p in second]
    assert {p.stream for p in first} == set(STREAMS)


def test_seed_defaults_stably_from_the_org_and_can_be_set() -> None:
    config = ConnectionConfig(org_id="org-a", connection_id="c")
    digest = hashlib.sha256(b"org-a").digest()[:8]
    assert SyntheticConnector(config).world().s.seed == int.from_bytes(digest, "big")
    small = {"platforms": ["meta"], "crms": ["hubspot"]}
    assert read(org_id="org-a", seed=42, **small) == read(org_id="org-b", seed=42, **small)
    assert read(org_id="org-a", seed=42, **small) != read(org_id="org-a", **small)


def test_two_orgs_get_different_entities_and_figures() -> None:
    a, b = read(org_id="org-a"), read(org_id="org-b")
    for stream, key in (("meta.campaigns", "id"), ("dv360.insertion_orders", "insertionOrderId"),
                        ("ttd.campaigns", "CampaignId")):
        ids_a = {r[key] for r in records(a, stream) if isinstance(r, dict)}
        ids_b = {r[key] for r in records(b, stream) if isinstance(r, dict)}
        assert ids_a and ids_b and not ids_a & ids_b
    spend_a = [r.get("spend") for r in records(a, "meta.ad_insights_daily")[:50]]
    assert spend_a != [r.get("spend") for r in records(b, "meta.ad_insights_daily")[:50]]


def test_ids_are_unique_per_level() -> None:
    pages = read(accounts_per_platform=3, campaigns_per_account=4, malformed_rate=0)
    ads = Counter((r["ad_id"], r["date_start"]) for r in records(pages, "meta.ad_insights_daily"))
    assert max(ads.values()) == 1
    for stream, key in (("meta.campaigns", "id"), ("ttd.campaigns", "CampaignId")):
        ids = [r[key] for r in records(pages, stream)]
        assert len(ids) == len(set(ids))
    deals = [r["id"] for r in records(pages, "hubspot.deals")]
    assert len(deals) == len(set(deals)) > 20


def test_overlapping_windows_agree_on_shared_days() -> None:
    early = daily_rows(read(Window(dt.date(2026, 11, 1), dt.date(2026, 11, 15)), malformed_rate=0))
    late = daily_rows(read(Window(dt.date(2026, 11, 10), dt.date(2026, 11, 24)), malformed_rate=0))
    shared = [k for k in early if k[2] >= "2026-11-10"]
    assert len(shared) > 100
    assert all(early[k] == late[k] for k in shared)


def test_a_later_read_restates_only_the_recent_days() -> None:
    window = Window(dt.date(2026, 11, 15), dt.date(2026, 11, 24))
    first = daily_rows(read(window, malformed_rate=0, as_of="2026-11-25"))
    later = daily_rows(read(window, malformed_rate=0, as_of="2026-11-28"))
    assert first.keys() == later.keys()
    settled_until = (AS_OF - dt.timedelta(days=3)).isoformat()  # three restatement days
    settled = [k for k in first if k[2] <= settled_until]
    recent = [k for k in first if k[2] > settled_until]
    assert settled and recent
    assert all(first[k] == later[k] for k in settled)
    changed = [k for k in recent if first[k] != later[k]]
    assert len(changed) > 0.8 * len(recent)
    meta_recent = [k for k in recent if k[0] == "meta.ad_insights_daily"]
    # provisional figures are lower and catch up later
    assert sum(float(first[k]["spend"]) for k in meta_recent) < sum(
        float(later[k]["spend"]) for k in meta_recent)


def test_no_rows_after_the_extraction_date() -> None:
    pages = read(Window(dt.date(2026, 11, 20), dt.date(2026, 11, 30)), as_of="2026-11-25")
    dates = {k[2] for k in daily_rows(pages)}
    assert max(dates) == "2026-11-25"
    config = ConnectionConfig(org_id="org-a", connection_id="c", state={"today": "2026-11-22"})
    pages = list(SyntheticConnector(config).read(Window(dt.date(2026, 11, 20),
                                                        dt.date(2026, 11, 30))))
    assert max(k[2] for k in daily_rows(pages)) == "2026-11-22"


def test_accounts_use_several_currencies_including_the_orgs() -> None:
    pages = read(currency="GBP", malformed_rate=0)
    currencies = {r["account_currency"] for r in records(pages, "meta.ad_insights_daily")}
    currencies |= {r["Advertiser Currency"] for r in records(pages, "dv360.report_daily")}
    currencies |= {r["Advertiser Currency Code"] for r in records(pages, "ttd.report_daily")}
    assert currencies == {"GBP", "USD", "EUR"}
    deal_currencies = Counter(r["properties"]["deal_currency_code"]
                              for r in records(pages, "hubspot.deals"))
    assert deal_currencies.most_common(1)[0][0] == "GBP" and len(deal_currencies) > 1


def test_campaigns_have_budgets_flights_and_states() -> None:
    pages = read(Window(dt.date(2026, 10, 1), dt.date(2026, 11, 24)), malformed_rate=0,
                 accounts_per_platform=3)
    meta = records(pages, "meta.campaigns")
    assert {"daily_budget" in c for c in meta} == {True, False}
    assert {c["status"] for c in meta} >= {"ACTIVE", "ARCHIVED"}
    assert any("stop_time" in c and c["stop_time"] < "2026-11-24" for c in meta)
    assert all(c["adlabels"] for c in meta)
    ttd = records(pages, "ttd.campaigns")
    assert {c["Availability"] for c in ttd} >= {"Available", "Archived"}
    statuses = Counter(c["entityStatus"] for c in records(pages, "dv360.insertion_orders"))
    assert statuses["ENTITY_STATUS_ACTIVE"] and statuses["ENTITY_STATUS_ARCHIVED"]
    everything = meta + ttd + records(pages, "dv360.insertion_orders")
    assert any(c.get("status") == "PAUSED" or c.get("Availability") == "Paused"
               or c.get("entityStatus") == "ENTITY_STATUS_PAUSED" for c in everything)


def test_figures_are_in_realistic_ranges() -> None:
    rows = records(read(malformed_rate=0), "meta.ad_insights_daily")
    impressions = sum(int(r["impressions"]) for r in rows)
    clicks = sum(int(r["clicks"]) for r in rows)
    spend = sum(float(r["spend"]) for r in rows)
    assert 0.003 <= clicks / impressions <= 0.02
    assert 2 <= spend / impressions * 1000 <= 25
    assert any("video_thruplay_watched_actions" in r for r in rows)
    assert any("video_thruplay_watched_actions" not in r for r in rows)
    types = {a["action_type"] for r in rows for a in r.get("actions", [])}
    assert {"link_click", "offsite_conversion.fb_pixel_purchase", "omni_purchase"} <= types


def test_weekends_are_quieter_for_a_b2b_org() -> None:
    # the org's seed picks its weekday profile; 1 % 3 != 0 is the B2B-leaning one
    rows = records(read(Window(dt.date(2026, 9, 1), dt.date(2026, 11, 24)), seed=1,
                        malformed_rate=0, platforms=["meta"], crms=[]), "meta.ad_insights_daily")
    by_day = Counter()
    for r in rows:
        by_day[dt.date.fromisoformat(r["date_start"]).weekday()] += float(r["spend"])
    assert by_day[5] + by_day[6] < 0.8 * (by_day[1] + by_day[2])


def test_deals_point_at_synthetic_campaigns() -> None:
    pages = read(malformed_rate=0)
    campaign_ids = {r["id"] for r in records(pages, "meta.campaigns")}
    campaign_ids |= {r["insertionOrderId"] for r in records(pages, "dv360.insertion_orders")}
    campaign_ids |= {r["CampaignId"] for r in records(pages, "ttd.campaigns")}
    deals = records(pages, "salesforce.opportunities")
    tagged = [d for d in deals if d["UTM_Campaign__c"]]
    assert {d["UTM_Source__c"] for d in tagged} == {"facebook", "dv360", "thetradedesk"}
    by_id = sum(d["UTM_Campaign__c"] in campaign_ids for d in tagged)
    assert 0.5 * len(tagged) < by_id < len(tagged)
    stages = Counter(d["StageName"] for d in records(pages, "salesforce.opportunities"))
    assert stages["Closed Won"] and stages["Closed Lost"] and len(stages) > 3


def _is_malformed(record: Any) -> bool:
    if isinstance(record, str):
        with pytest.raises(ValueError):
            json.loads(record)
        return True
    return ("date_start" not in record or record["spend"] == "12,3x"
            or record["impressions"].startswith("-"))


def test_malformed_records_appear_at_the_configured_rate() -> None:
    pages = read(malformed_rate=0.05, accounts_per_platform=4, platforms=["meta"], crms=[])
    rows = records(pages, "meta.ad_insights_daily")
    bad = [r for r in rows if _is_malformed(r)]
    expected, sigma = 0.05 * len(rows), math.sqrt(0.05 * 0.95 * len(rows))
    assert len(rows) > 800 and abs(len(bad) - expected) < 4 * sigma
    kinds = Counter("json" if isinstance(r, str) else "date" if "date_start" not in r
                    else "number" if r["spend"] == "12,3x" else "negative" for r in bad)
    assert set(kinds) == {"json", "date", "number", "negative"}
    assert not any(isinstance(r, str) for r in records(read(malformed_rate=0), "hubspot.deals"))


def test_daily_streams_come_in_pages_of_at_most_5000() -> None:
    pages = read(Window(dt.date(2026, 10, 20), dt.date(2026, 11, 24)), platforms=["meta"],
                 crms=[], accounts_per_platform=4, campaigns_per_account=5,
                 ad_groups_per_campaign=4, ads_per_ad_group=4)
    sizes = [len(p.records) for p in pages if p.stream == "meta.ad_insights_daily"]
    assert max(sizes) == PAGE_SIZE and all(0 < s <= PAGE_SIZE for s in sizes)


def test_unknown_platform_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown platforms"):
        read(platforms=["tiktok"])
