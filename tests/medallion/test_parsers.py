"""Silver parsers of the platform payloads: every row accounted for, exact schemas, clear reasons."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import polars as pl
import pytest
from helpers import bronze_frame, pages_to_bronze
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import ConnectionConfig, Window
from connectors.synthetic import SyntheticConnector
from workbench.medallion.parsers import dv360, hubspot, meta, salesforce, ttd
from workbench.medallion.parsers.base import (
    CAMPAIGN_SCHEMA,
    DEAL_SCHEMA,
    PERFORMANCE_SCHEMA,
    QUARANTINE_SCHEMA,
    ParseContext,
    ParseResult,
    parse_number,
    parse_timestamp,
)

CTX = ParseContext("org-test")
PARSERS = {
    "meta.ad_insights_daily": (meta.parse_insights, PERFORMANCE_SCHEMA),
    "meta.campaigns": (meta.parse_campaigns, CAMPAIGN_SCHEMA),
    "dv360.report_daily": (dv360.parse_report, PERFORMANCE_SCHEMA),
    "dv360.insertion_orders": (dv360.parse_insertion_orders, CAMPAIGN_SCHEMA),
    "ttd.report_daily": (ttd.parse_report, PERFORMANCE_SCHEMA),
    "ttd.campaigns": (ttd.parse_campaigns, CAMPAIGN_SCHEMA),
    "hubspot.deals": (hubspot.parse_deals, DEAL_SCHEMA),
    "salesforce.opportunities": (salesforce.parse_opportunities, DEAL_SCHEMA),
}


@pytest.fixture(scope="module")
def synthetic() -> dict[str, pl.DataFrame]:
    config = ConnectionConfig(org_id="org-test", connection_id="conn-1", org_currency="EUR",
                              settings={"malformed_rate": 0.03, "as_of": "2026-11-25"})
    pages = SyntheticConnector(config).read(Window(dt.date(2026, 11, 1), dt.date(2026, 11, 24)))
    return pages_to_bronze(pages)


def parse(stream: str, records: list[Any], ctx: ParseContext = CTX) -> ParseResult:
    parser, schema = PARSERS[stream]
    result = parser(bronze_frame(records, stream), ctx)
    assert result.good.schema == pl.Schema(schema)
    assert result.bad.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert len(result.good) + len(result.bad) == len(records)
    return result


def only_reason(result: ParseResult) -> tuple[str, str]:
    assert len(result.bad) == 1 and result.good.is_empty()
    return result.bad["check"][0], result.bad["reason"][0]


@pytest.mark.parametrize("stream", sorted(PARSERS))
def test_synthetic_output_parses_and_every_row_is_accounted_for(
        synthetic: dict[str, pl.DataFrame], stream: str) -> None:
    raw = synthetic[stream]
    parser, schema = PARSERS[stream]
    result = parser(raw, CTX)
    assert result.good.schema == pl.Schema(schema)
    assert result.bad.schema == pl.Schema(QUARANTINE_SCHEMA)
    indices = pl.concat([result.good["record_index"], result.bad["record_index"]]).sort()
    assert indices.to_list() == raw["record_index"].to_list()
    assert len(result.good) > 0.9 * len(raw)
    assert result.bad.is_empty() or result.bad["reason"].str.len_chars().min() > 20
    good = result.good
    assert (good["org_id"] == "org-test").all() and (good["connector"] == "synthetic").all()
    assert good["source_batch_id"].n_unique() == 1 and good["extracted_at"].null_count() == 0


def test_registry_names_these_parsers() -> None:
    registry = pytest.importorskip("workbench.medallion.parsers.registry")
    for stream, (parser, schema) in PARSERS.items():
        spec = registry.parsers.get(stream)
        assert spec.parser is parser
        assert {"performance": PERFORMANCE_SCHEMA, "campaigns": CAMPAIGN_SCHEMA,
                "deals": DEAL_SCHEMA}[spec.target] is schema


def test_synthetic_malformed_records_are_quarantined_or_left_to_silver_checks(
        synthetic: dict[str, pl.DataFrame]) -> None:
    result = meta.parse_insights(synthetic["meta.ad_insights_daily"], CTX)
    assert set(result.bad["check"]) == {"invalid_json", "not_a_number"}
    # missing dates and negative counts are the silver step's generic checks
    assert result.good["date"].null_count() > 0
    assert (result.good["impressions"] < 0).any()


# ---- Meta -------------------------------------------------------------------------------------

INSIGHT = {
    "account_id": "1234", "account_name": "Acme EU", "account_currency": "EUR",
    "campaign_id": "c1", "campaign_name": "Sale", "adset_id": "s1", "adset_name": "LAL",
    "ad_id": "a1", "ad_name": "Video", "date_start": "2026-11-24", "date_stop": "2026-11-24",
    "spend": "12.34", "impressions": "1000", "clicks": "20", "reach": "800",
    "actions": [{"action_type": "link_click", "value": "15"},
                {"action_type": "offsite_conversion.fb_pixel_purchase", "value": "3"},
                {"action_type": "offsite_conversion.fb_pixel_lead", "value": "2"},
                {"action_type": "omni_purchase", "value": "3"}],
    "action_values": [{"action_type": "offsite_conversion.fb_pixel_purchase", "value": "99.5"},
                      {"action_type": "omni_purchase", "value": "99.5"}],
    "video_thruplay_watched_actions": [{"action_type": "video_view", "value": "250"}],
}


def insight(**changes: Any) -> dict[str, Any]:
    record = json.loads(json.dumps(INSIGHT))
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


def test_meta_insights_map_to_the_canonical_row() -> None:
    row = parse("meta.ad_insights_daily", [insight()]).good.row(0, named=True)
    assert row | {"source_batch_id": None, "extracted_at": None} == {
        "org_id": "org-test", "platform": "meta", "date": dt.date(2026, 11, 24),
        "account_id": "1234", "account_name": "Acme EU", "campaign_id": "c1",
        "campaign_name": "Sale", "ad_group_id": "s1", "ad_group_name": "LAL", "ad_id": "a1",
        "ad_name": "Video", "currency": "EUR", "spend": 12.34, "impressions": 1000,
        "clicks": 20, "conversions": 3.0, "conversion_value": 99.5, "video_views": 250,
        "reach": 800, "connector": "synthetic", "connection_id": "conn-1",
        "source_batch_id": None, "extracted_at": None, "record_index": 0, "breakdown": None,
    }


def test_meta_breakdowns_make_the_breakdown_key() -> None:
    rows = parse("meta.ad_insights_daily", [
        insight(publisher_platform="instagram", age="25-34"), insight(publisher_platform="facebook")]).good
    assert rows["breakdown"].to_list() == ["publisher_platform=instagram|age=25-34", "publisher_platform=facebook"]


def test_meta_conversion_action_types_come_from_the_settings() -> None:
    ctx = ParseContext("org-test", {"conversion_action_types": [
        "offsite_conversion.fb_pixel_purchase", "offsite_conversion.fb_pixel_lead"]})
    row = parse("meta.ad_insights_daily", [insight()], ctx).good.row(0, named=True)
    assert row["conversions"] == 5.0 and row["conversion_value"] == 99.5


def test_meta_absent_lists_mean_zero_conversions_and_unknown_video_views() -> None:
    good = parse("meta.ad_insights_daily", [insight(
        actions=None, action_values=None, video_thruplay_watched_actions=None)]).good
    assert good["conversions"][0] == 0.0 and math.copysign(1, good["conversions"][0]) == 1
    assert good["conversion_value"][0] == 0.0 and good["video_views"][0] is None


@pytest.mark.parametrize(("record", "check", "reason"), [
    (json.dumps(INSIGHT)[:120], "invalid_json", "not a JSON object"),
    ('{"spend": "1", "impressions": 2,, }', "invalid_json", "not valid JSON"),
    ("[1, 2]", "invalid_json", "not a JSON object"),
    (None, "invalid_json", "not a JSON object"),
    (insight(spend="12,3x"), "not_a_number", "field 'spend' is not a number: '12,3x'"),
    (insight(clicks="n/a"), "not_a_number", "field 'clicks' is not a number: 'n/a'"),
    (insight(actions=[{"action_type": "offsite_conversion.fb_pixel_purchase", "value": "x1"}]),
     "not_a_number", "field 'actions' has a value that is not a number: 'x1'"),
    (insight(actions="oops"), "unexpected_shape", "unexpected JSON type"),
])
def test_meta_malformed_records_are_quarantined_with_a_reason(record: Any, check: str,
                                                               reason: str) -> None:
    result = parse("meta.ad_insights_daily", [insight(), record, insight(ad_id="a2")])
    assert result.good["ad_id"].to_list() == ["a1", "a2"]
    assert result.bad["check"].to_list() == [check]
    assert reason in result.bad["reason"][0]
    assert result.bad["record_index"].to_list() == [1]


def test_a_batch_of_only_broken_records() -> None:
    assert only_reason(parse("meta.ad_insights_daily", [insight(actions="oops")]))[0] == (
        "unexpected_shape")
    assert only_reason(parse("meta.ad_insights_daily", ['{"a": 1,,}']))[0] == "invalid_json"


def test_meta_leaves_missing_dates_and_negative_counts_to_the_silver_checks() -> None:
    good = parse("meta.ad_insights_daily", [
        insight(date_start=None), insight(impressions="-5"), f"  {json.dumps(insight())}\n"]).good
    assert good["date"].to_list() == [None, dt.date(2026, 11, 24), dt.date(2026, 11, 24)]
    assert good["impressions"].to_list() == [1000, -5, 1000]


CAMPAIGN = {
    "id": "c1", "account_id": "1234", "name": "Sale", "status": "PAUSED",
    "effective_status": "PAUSED", "objective": "OUTCOME_SALES", "daily_budget": "5000",
    "start_time": "2026-11-01T00:00:00-0500", "stop_time": "2026-11-30T23:59:59-0500",
    "updated_time": "2026-11-20T10:00:00+0000", "account_currency": "USD",
    "adlabels": [{"id": "1", "name": "q4"}, {"id": "2", "name": "brand"}],
}


def test_meta_campaign_budgets_are_minor_units() -> None:
    records = [CAMPAIGN, CAMPAIGN | {"id": "c2", "daily_budget": None,
                                     "lifetime_budget": "250000", "account_currency": "JPY",
                                     "status": "ARCHIVED", "adlabels": None}]
    good = parse("meta.campaigns", records).good
    assert good.select("campaign_id", "status", "budget_type", "budget_amount", "currency",
                       "start_date", "end_date", "labels", "updated_at").rows() == [
        ("c1", "paused", "daily", 50.0, "USD", dt.date(2026, 11, 1), dt.date(2026, 11, 30),
         ["q4", "brand"], dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)),
        ("c2", "archived", "lifetime", 250000.0, "JPY", dt.date(2026, 11, 1),
         dt.date(2026, 11, 30), [], dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)),
    ]
    check, reason = only_reason(parse("meta.campaigns", [CAMPAIGN | {"daily_budget": "5k"}]))
    assert (check, reason) == ("not_a_number", "field 'daily_budget' is not a number: '5k'")


# ---- DV360 ------------------------------------------------------------------------------------

REPORT_ROW = {
    "Date": "2026/11/24", "Advertiser": "Acme UK", "Advertiser ID": "111",
    "Advertiser Currency": "GBP", "Insertion Order": "IO", "Insertion Order ID": "222",
    "Line Item": "LI", "Line Item ID": "333", "Creative": "Banner", "Creative ID": "444",
    "Impressions": "1,234,567", "Clicks": "1,234", "Total Conversions": "12",
    "Media Cost (Advertiser Currency)": "2,345.67", "CM360 Post-Click Revenue": "1,000.50",
    "CM360 Post-View Revenue": "99.50", "TrueView: Views": "5,000",
}


def test_dv360_report_reads_separators_and_slashed_dates() -> None:
    row = parse("dv360.report_daily", [REPORT_ROW]).good.row(0, named=True)
    assert (row["date"], row["impressions"], row["clicks"], row["spend"]) == (
        dt.date(2026, 11, 24), 1_234_567, 1234, 2345.67)
    assert (row["conversions"], row["conversion_value"], row["video_views"]) == (12, 1100, 5000)
    assert (row["platform"], row["currency"], row["ad_id"], row["reach"]) == (
        "dv360", "GBP", "444", None)
    legacy = {k: v for k, v in REPORT_ROW.items() if not k.startswith("CM360")} | {
        "DCM Post-Click Revenue": "10", "DCM Post-View Revenue": "5"}
    assert parse("dv360.report_daily", [legacy]).good["conversion_value"][0] == 15.0
    assert only_reason(parse("dv360.report_daily", [
        REPORT_ROW | {"Media Cost (Advertiser Currency)": "12,3x"}])) == (
        "not_a_number", "field 'Media Cost (Advertiser Currency)' is not a number: '12,3x'")


def _segment(micros: str, start: tuple[int, int, int], end: tuple[int, int, int]) -> dict:
    return {"budgetAmountMicros": micros, "dateRange": {
        "startDate": dict(zip(("year", "month", "day"), start, strict=True)),
        "endDate": dict(zip(("year", "month", "day"), end, strict=True))}}


INSERTION_ORDER = {
    "advertiserId": "111", "campaignId": "555", "insertionOrderId": "222",
    "displayName": "IO", "entityStatus": "ENTITY_STATUS_ACTIVE",
    "updateTime": "2026-11-20T10:00:00.123456Z", "kpi": {"kpiType": "KPI_TYPE_CPA"},
    "budget": {"budgetUnit": "BUDGET_UNIT_CURRENCY", "budgetSegments": [
        _segment("5000000000", (2026, 11, 1), (2026, 11, 30)),
        _segment("2500000000", (2026, 12, 1), (2026, 12, 15))]},
    "currencyCode": "EUR",
}


def test_dv360_insertion_orders_sum_micros_over_the_flight() -> None:
    paused = INSERTION_ORDER | {"insertionOrderId": "223",
                                "entityStatus": "ENTITY_STATUS_PAUSED",
                                "budget": {"budgetUnit": "BUDGET_UNIT_IMPRESSIONS",
                                           "budgetSegments": [_segment("9", (2026, 1, 1),
                                                                       (2026, 1, 2))]}}
    good = parse("dv360.insertion_orders", [INSERTION_ORDER, paused]).good
    assert good.select("campaign_id", "status", "objective", "budget_type", "budget_amount",
                       "start_date", "end_date", "labels").rows() == [
        ("222", "active", "KPI_TYPE_CPA", "lifetime", 7500.0, dt.date(2026, 11, 1),
         dt.date(2026, 12, 15), []),
        ("223", "paused", "KPI_TYPE_CPA", None, None, dt.date(2026, 1, 1), dt.date(2026, 1, 2),
         []),
    ]
    assert good["updated_at"][0] == dt.datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=dt.UTC)
    broken = json.loads(json.dumps(INSERTION_ORDER))
    broken["budget"]["budgetSegments"][1]["budgetAmountMicros"] = "12,3x"
    assert only_reason(parse("dv360.insertion_orders", [broken])) == (
        "not_a_number", "field 'budget.budgetSegments[].budgetAmountMicros' is not a number: "
        "'12,3x'")


# ---- The Trade Desk ---------------------------------------------------------------------------

TTD_ROW = {
    "Date": "2026-11-24T00:00:00", "Advertiser ID": "adv1", "Advertiser": "Acme",
    "Advertiser Currency Code": "USD", "Campaign ID": "cmp1", "Campaign": "Sale",
    "Ad Group ID": "ag1", "Ad Group": "LAL", "Creative ID": "cr1", "Creative": "Banner",
    "Impressions": "10000", "Clicks": "50", "Advertiser Cost (Adv Currency)": "45.123456",
    "01 - Total Click + View Conversions": "4", "01 - Click Conversion Revenue": "100.00",
    "01 - View Through Conversion Revenue": "20.00", "Player Completed Views": "700",
}


def test_ttd_report_rows() -> None:
    rows = [TTD_ROW, TTD_ROW | {"Date": "11/25/2026", "Creative ID": "cr2",
                                "Player Completed Views": None}]
    good = parse("ttd.report_daily", rows).good
    assert good.select("date", "ad_id", "spend", "impressions", "conversions",
                       "conversion_value", "video_views", "currency").rows() == [
        (dt.date(2026, 11, 24), "cr1", 45.123456, 10000, 4.0, 120.0, 700, "USD"),
        (dt.date(2026, 11, 25), "cr2", 45.123456, 10000, 4.0, 120.0, None, "USD"),
    ]
    check, reason = only_reason(parse("ttd.report_daily", [TTD_ROW | {"Clicks": "fifty"}]))
    assert (check, reason) == ("not_a_number", "field 'Clicks' is not a number: 'fifty'")


def test_ttd_campaigns_take_either_budget() -> None:
    base = {"CampaignId": "cmp1", "AdvertiserId": "adv1", "CampaignName": "Sale",
            "Availability": "Available", "Budget": {"Amount": 12000.5, "CurrencyCode": "USD"},
            "DailyBudget": None, "StartDate": "2026-11-01T00:00:00",
            "EndDate": "2026-11-30T23:59:59", "LastUpdatedAtUTC": "2026-11-20T10:00:00.1234567"}
    daily = base | {"CampaignId": "cmp2", "Availability": "Paused", "Budget": None,
                    "DailyBudget": {"Amount": 300, "CurrencyCode": "EUR"}, "EndDate": None}
    good = parse("ttd.campaigns", [base, daily]).good
    assert good.select("campaign_id", "status", "budget_type", "budget_amount", "currency",
                       "start_date", "end_date", "objective").rows() == [
        ("cmp1", "active", "lifetime", 12000.5, "USD", dt.date(2026, 11, 1),
         dt.date(2026, 11, 30), None),
        ("cmp2", "paused", "daily", 300.0, "EUR", dt.date(2026, 11, 1), None, None),
    ]
    assert good["updated_at"][0] == dt.datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert only_reason(parse("ttd.campaigns", [
        base | {"Budget": {"Amount": "12,3x", "CurrencyCode": "USD"}}])) == (
        "not_a_number", "field 'Budget.Amount' is not a number: '12,3x'")


# ---- CRMs -------------------------------------------------------------------------------------

DEAL = {
    "id": "9001", "createdAt": "2026-11-24T10:00:00.000Z", "updatedAt": "2026-11-26T10:00:00Z",
    "archived": False,
    "properties": {"dealname": "Big one", "amount": "1,500.50", "deal_currency_code": "GBP",
                   "dealstage": "closedwon", "pipeline": "default",
                   "createdate": "2026-11-24T10:00:00.000Z",
                   "closedate": "2026-11-26T15:00:00Z", "hs_is_closed": "true",
                   "hs_is_closed_won": "true", "hs_analytics_source": "PAID_SOCIAL",
                   "utm_source": "facebook", "utm_medium": "paid_social", "utm_campaign": "c1"},
}


def test_hubspot_deals() -> None:
    open_deal = json.loads(json.dumps(DEAL))
    open_deal["id"] = "9002"
    open_deal["properties"] |= {"hs_is_closed": "false", "hs_is_closed_won": "false",
                                "dealstage": "qualifiedtobuy", "utm_campaign": None}
    good = parse("hubspot.deals", [DEAL, open_deal]).good
    assert good.select("crm", "deal_id", "amount", "currency", "stage", "is_closed", "is_won",
                       "created_at", "closed_at", "source", "utm_campaign").rows() == [
        ("hubspot", "9001", 1500.5, "GBP", "closedwon", True, True,
         dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC),
         dt.datetime(2026, 11, 26, 15, tzinfo=dt.UTC), "PAID_SOCIAL", "c1"),
        ("hubspot", "9002", 1500.5, "GBP", "qualifiedtobuy", False, False,
         dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC), None, "PAID_SOCIAL", None),
    ]
    broken = json.loads(json.dumps(DEAL))
    broken["properties"]["amount"] = "12,3x"
    assert only_reason(parse("hubspot.deals", [broken])) == (
        "not_a_number", "field 'properties.amount' is not a number: '12,3x'")


OPPORTUNITY = {
    "attributes": {"type": "Opportunity", "url": "/services/data/v62.0/sobjects/Opportunity/006x"},
    "Id": "006x", "Name": "Renewal", "Amount": 1234.5, "CurrencyIsoCode": "EUR",
    "StageName": "Closed Won", "IsClosed": True, "IsWon": True,
    "CreatedDate": "2026-11-24T10:00:00.000+0000", "CloseDate": "2026-11-30",
    "LeadSource": "Advertisement", "UTM_Source__c": "dv360", "UTM_Medium__c": "display",
    "UTM_Campaign__c": "222", "LastModifiedDate": "2026-11-30T12:00:00.000+0000",
}


def test_salesforce_opportunities() -> None:
    open_one = OPPORTUNITY | {"Id": "006y", "IsClosed": False, "IsWon": False, "Amount": None,
                              "StageName": "Prospecting"}
    good = parse("salesforce.opportunities", [OPPORTUNITY, open_one]).good
    assert good.select("deal_id", "amount", "currency", "stage", "is_closed", "is_won",
                       "created_at", "closed_at", "source", "utm_source", "utm_medium",
                       "utm_campaign").rows() == [
        ("006x", 1234.5, "EUR", "Closed Won", True, True,
         dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 30, tzinfo=dt.UTC),
         "Advertisement", "dv360", "display", "222"),
        ("006y", None, "EUR", "Prospecting", False, False,
         dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC), None, "Advertisement", "dv360",
         "display", "222"),
    ]
    assert only_reason(parse("salesforce.opportunities", [OPPORTUNITY | {"Amount": "12,3x"}])) == (
        "not_a_number", "field 'Amount' is not a number: '12,3x'")


def test_empty_batches_parse_to_empty_frames() -> None:
    for stream in PARSERS:
        result = parse(stream, [])
        assert result.good.is_empty() and result.bad.is_empty()


# ---- shared helpers ---------------------------------------------------------------------------

def test_parse_timestamp_formats() -> None:
    texts = ["2026-11-24T10:00:00+0000", "2026-11-24T11:00:00+01:00", "2026-11-24T10:00:00Z",
             "2026-11-24T10:00:00.000Z", "2026-11-24T10:00:00.0000000", "2026-11-24", "nope"]
    parsed = pl.select(parse_timestamp(pl.Series(texts)).alias("t"))["t"].to_list()
    assert parsed[:5] == [dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC)] * 5
    assert parsed[5:] == [dt.datetime(2026, 11, 24, tzinfo=dt.UTC), None]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-10**12, 10**12), min_size=1, max_size=30),
       st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_parse_number_reads_thousands_separators(integers: list[int], cents: list[int]) -> None:
    texts = [f"{n:,}" for n in integers] + [f" {c / 100:,.2f} " for c in cents]
    parsed = pl.select(parse_number(pl.Series(texts, dtype=pl.String)).alias("n"))["n"]
    assert parsed.to_list() == pytest.approx([*integers, *(c / 100 for c in cents)])
