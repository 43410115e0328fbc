"""A deterministic synthetic organisation that speaks every platform's native payload format.

``SyntheticConnector`` emits the records the real Meta, DV360, The Trade Desk, HubSpot and
Salesforce connectors land in bronze, with realistic figures (currencies, budgets, flights,
weekday seasonality, restatements, malformed records), so the whole pipeline can run and be
tested without credentials. Settings (all optional): ``seed`` (default: from the org id),
``accounts_per_platform`` (2), ``campaigns_per_account`` (3), ``ad_groups_per_campaign`` (2),
``ads_per_ad_group`` (2) (each count at most 99), ``malformed_rate`` (0.002),
``restatement_days`` (3), ``platforms`` (meta, dv360, ttd), ``crms`` (hubspot, salesforce) and
``as_of`` (the extraction date; default ``state["today"]``, else today).

Determinism and restatements: a figure of (entity, date) is a pure function of the seed, the
entity, the date and ``min(days between date and as_of, restatement_days)``. Reads with
different windows agree on every date they share; reads with a different ``as_of`` agree on
settled dates and differ only on the last ``restatement_days`` before ``as_of`` (provisional
figures are a little lower, conversions more so, as attribution catches up). Dates after
``as_of`` have no rows.

Malformed records (``malformed_rate`` of each stream, chosen by a stable hash of the record's
key): text that is not valid JSON (yielded as a ``str``), a number field holding "12,3x", a
missing date, or a negative impression count (the last two on daily performance streams only).

Metadata streams (``*.campaigns``, ``dv360.insertion_orders``) return every campaign whose
flight overlaps the window or the 60 days before it, with its state as of ``as_of``. CRM streams
return the deals created in the window. Meta campaign objects carry ``account_currency`` and
DV360 insertion orders ``currencyCode``, which the real connectors add from the ad account /
advertiser (the platforms' campaign resources do not carry a currency).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from numpy import base_repr

from connectors.base import Account, Connector, Page, StreamSpec, Window
from connectors.synthetic_world import (
    AdDay,
    Campaign,
    Deal,
    World,
    WorldSettings,
    unit_hash,
)

PAGE_SIZE = 5000
BAD_NUMBER = "12,3x"

_META_STATUS = {"active": "ACTIVE", "paused": "PAUSED", "archived": "ARCHIVED"}
_META_OBJECTIVE = {"sales": "OUTCOME_SALES", "leads": "OUTCOME_LEADS",
                   "awareness": "OUTCOME_AWARENESS"}
_DV360_KPI = {"sales": "KPI_TYPE_CPA", "leads": "KPI_TYPE_CPA", "awareness": "KPI_TYPE_CPM"}
_TTD_STATUS = {"active": "Available", "paused": "Paused", "archived": "Archived"}
_HUBSPOT_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled",
                   "decisionmakerboughtin", "contractsent")
_SALESFORCE_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
                      "Proposal/Price Quote", "Negotiation/Review")
_HUBSPOT_SOURCE = {"facebook": "PAID_SOCIAL", "dv360": "OTHER_CAMPAIGNS",
                   "thetradedesk": "OTHER_CAMPAIGNS"}
_UTC_OFFSETS = {"USD": "-0500", "EUR": "+0100", "GBP": "+0000"}  # of the accounts' time zones


def _n(value: float) -> str:
    """A DV360-style number: thousands separators, two decimals only when fractional."""
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,d}"


def _actions(pairs: list[tuple[str, float]], money: bool = False) -> list[dict[str, str]]:
    return [{"action_type": t, "value": f"{v:.2f}" if money else str(int(v))}
            for t, v in pairs if v > 0]


def _iso_z(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SyntheticConnector(Connector):
    """Realistic, reproducible records of a synthetic organisation in every native format."""

    name: ClassVar[str] = "synthetic"
    default_lookback_days: ClassVar[int] = 3
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec("meta.ad_insights_daily", "Meta Insights rows, level=ad, time_increment=1"),
        StreamSpec("meta.campaigns", "Meta Graph API campaign objects", daily=False),
        StreamSpec("dv360.report_daily", "DV360 Bid Manager report rows (CSV columns)"),
        StreamSpec("dv360.insertion_orders", "DV360 API insertion orders", daily=False),
        StreamSpec("ttd.report_daily", "The Trade Desk MyReports rows"),
        StreamSpec("ttd.campaigns", "The Trade Desk campaign objects", daily=False),
        StreamSpec("hubspot.deals", "HubSpot CRM v3 deal search results", daily=False),
        StreamSpec("salesforce.opportunities", "Salesforce SOQL Opportunity records",
                   daily=False),
    )

    def world(self) -> World:
        """The synthetic organisation this connection reads."""
        c = self.config
        return World(c.org_currency, WorldSettings.from_config(c.org_id, c.settings, c.state))

    def accounts(self) -> list[Account]:
        """The synthetic ad accounts of every configured platform (id, name, currency)."""
        return [Account(a.id, f"{platform}: {a.name}", a.currency, "active")
                for platform, accounts in self.world().accounts.items() for a in accounts]

    def read(self, window: Window) -> Iterator[Page]:
        """Yield pages (at most 5,000 records) of every configured stream for ``window``."""
        world = self.world()
        since = window.start - dt.timedelta(days=60)
        for platform in world.s.platforms:
            meta_stream, report_stream, campaign_fn, row_fn = _PLATFORM[platform]
            campaigns = world.campaigns(platform, since, window.end)
            yield from self._pages(world, meta_stream, (
                (c.id, campaign_fn(world, c)) for c in campaigns))
            yield from self._pages(world, report_stream, (
                (f"{row.ad.id}/{day}", row_fn(c, day, row))
                for day in window.dates()
                for c in world.campaigns(platform, day, day)
                for row in world.ad_days(c, day)))
        for crm in world.s.crms:
            stream, deal_fn = _CRM[crm]
            yield from self._pages(world, stream, (
                (d.id, deal_fn(world, d)) for day in window.dates() for d in world.deals(crm, day)))

    def _pages(self, world: World, stream: str,
               keyed: Iterator[tuple[str, dict[str, Any]]]) -> Iterator[Page]:
        records: list[Any] = []
        for key, record in keyed:
            records.append(_maybe_malformed(world, stream, key, record))
            if len(records) == PAGE_SIZE:
                yield Page(stream, records)
                records = []
        if records:
            yield Page(stream, records)


# Per stream: where a date, a number and an impression count live in a native record.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
    "meta.ad_insights_daily": (("date_start", "date_stop"), ("spend",), "impressions"),
    "dv360.report_daily": (("Date",), ("Media Cost (Advertiser Currency)",), "Impressions"),
    "ttd.report_daily": (("Date",), ("Advertiser Cost (Adv Currency)",), "Impressions"),
    "meta.campaigns": ((), ("daily_budget", "lifetime_budget"), None),
    "dv360.insertion_orders": ((), ("budget",), None),
    "ttd.campaigns": ((), ("Budget", "DailyBudget"), None),
    "hubspot.deals": ((), ("properties",), None),
    "salesforce.opportunities": ((), ("Amount",), None),
}


def _maybe_malformed(world: World, stream: str, key: str, record: dict[str, Any]) -> Any:
    """The record, or (at ``malformed_rate``, by a stable hash of its key) a broken copy."""
    if unit_hash(world.s.seed, "malformed", stream, key) >= world.s.malformed_rate:
        return record
    dates, numbers, count = _FIELDS[stream]
    kinds = ["json", "number"] + (["date", "negative"] if dates else [])
    kind = kinds[int(unit_hash(world.s.seed, "kind", stream, key) * len(kinds))]
    if kind == "json":
        text = json.dumps(record)
        return text[: len(text) // 2]
    broken = json.loads(json.dumps(record))
    if kind == "date":
        for name in dates:
            broken.pop(name, None)
    elif kind == "negative" and count:
        broken[count] = "-" + broken[count].lstrip("-")
    else:
        field = next((f for f in numbers if broken.get(f) is not None), numbers[0])
        value = broken.get(field)
        if field == "budget":
            value["budgetSegments"][0]["budgetAmountMicros"] = BAD_NUMBER
        elif field == "properties":
            value["amount"] = BAD_NUMBER
        elif isinstance(value, dict):
            value["Amount"] = BAD_NUMBER
        else:
            broken[field] = BAD_NUMBER
    return broken


def _local_time(c: Campaign, day: dt.date, time: str) -> str:
    return f"{day.isoformat()}T{time}{_UTC_OFFSETS[c.account.currency]}"


def _updated(world: World, c: Campaign) -> dt.datetime:
    events = [c.start - dt.timedelta(days=3)] + [
        d for d in (c.paused_from, c.end) if d is not None and d <= world.s.as_of]
    day = min(max(events), world.s.as_of)
    seconds = int(unit_hash(world.s.seed, "updated", c.id) * 36_000) + 28_800
    return dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=seconds)


def meta_campaign(world: World, c: Campaign) -> dict[str, Any]:
    status = _META_STATUS[c.status(world.s.as_of)]
    minor = str(round(c.budget * 100))
    record: dict[str, Any] = {
        "id": c.id, "account_id": c.account.id, "name": c.name, "status": status,
        "effective_status": status, "objective": _META_OBJECTIVE[c.objective],
        "buying_type": "AUCTION", "account_currency": c.account.currency,
        f"{c.budget_type}_budget": minor,
        "start_time": _local_time(c, c.start, "00:00:00"),
        "created_time": _local_time(c, c.start - dt.timedelta(days=5), "10:12:31"),
        "updated_time": _updated(world, c).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "adlabels": [{"id": str(world.number(5, 0, i)), "name": name}
                     for i, name in enumerate(c.labels)],
    }
    if c.end is not None:
        record["stop_time"] = _local_time(c, c.end, "23:59:59")
    return record


def meta_insight(c: Campaign, day: dt.date, r: AdDay) -> dict[str, Any]:
    purchases = r.purchases
    record: dict[str, Any] = {
        "account_id": c.account.id, "account_name": c.account.name,
        "account_currency": c.account.currency, "campaign_id": c.id, "campaign_name": c.name,
        "adset_id": r.ad.ad_group_id, "adset_name": r.ad.ad_group_name, "ad_id": r.ad.id,
        "ad_name": r.ad.name, "spend": f"{r.spend:.2f}", "impressions": str(r.impressions),
        "clicks": str(r.clicks), "reach": str(r.reach),
        "date_start": day.isoformat(), "date_stop": day.isoformat(),
    }
    actions = _actions([
        ("link_click", r.link_clicks), ("landing_page_view", r.landing_page_views),
        ("page_engagement", r.clicks), ("post_engagement", r.clicks),
        ("offsite_conversion.fb_pixel_lead", r.leads), ("lead", r.leads),
        ("offsite_conversion.fb_pixel_purchase", purchases), ("omni_purchase", purchases)])
    if actions:
        record["actions"] = actions
    values = _actions([("offsite_conversion.fb_pixel_purchase", r.purchase_value),
                       ("omni_purchase", r.purchase_value)], money=True)
    if values:
        record["action_values"] = values
    if r.video_views:
        record["video_thruplay_watched_actions"] = _actions([("video_view", r.video_views)])
    return record


def _dv360_date(day: dt.date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def dv360_insertion_order(world: World, c: Campaign) -> dict[str, Any]:
    if c.end is not None:
        bounds = [(c.start, min(c.end, dt.date(c.start.year, 12, 31)))]
        if c.end.year > c.start.year:
            bounds.append((dt.date(c.end.year, 1, 1), c.end))
        daily = c.budget / ((c.end - c.start).days + 1)
    else:
        last = max(world.s.as_of.year, c.start.year)
        bounds = [(max(c.start, dt.date(y, 1, 1)), dt.date(y, 12, 31))
                  for y in range(c.start.year, last + 1)]
        daily = c.budget
    segments = [{
        "budgetAmountMicros": str(round(daily * ((e - s).days + 1)) * 1_000_000),
        "description": f"PO {c.id[-6:]}-{s.year}",
        "dateRange": {"startDate": _dv360_date(s), "endDate": _dv360_date(e)},
    } for s, e in bounds]
    return {
        "name": f"advertisers/{c.account.id}/insertionOrders/{c.id}",
        "advertiserId": c.account.id, "campaignId": c.parent_id, "insertionOrderId": c.id,
        "displayName": c.name,
        "entityStatus": f"ENTITY_STATUS_{c.status(world.s.as_of).upper()}",
        "updateTime": _updated(world, c).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "pacing": {"pacingPeriod": "PACING_PERIOD_FLIGHT", "pacingType": "PACING_TYPE_EVEN"},
        "kpi": {"kpiType": _DV360_KPI[c.objective], "kpiAmountMicros": "25000000"},
        "budget": {"budgetUnit": "BUDGET_UNIT_CURRENCY",
                   "automationType": "INSERTION_ORDER_AUTOMATION_TYPE_NONE",
                   "budgetSegments": segments},
        "currencyCode": c.account.currency,
    }


def dv360_row(c: Campaign, day: dt.date, r: AdDay) -> dict[str, Any]:
    conversions = r.leads + r.purchases
    post_click = conversions // 3
    row = {
        "Date": day.strftime("%Y/%m/%d"), "Advertiser": c.account.name,
        "Advertiser ID": c.account.id, "Advertiser Currency": c.account.currency,
        "Campaign ID": c.parent_id, "Insertion Order": c.name, "Insertion Order ID": c.id,
        "Line Item": r.ad.ad_group_name, "Line Item ID": r.ad.ad_group_id,
        "Creative": r.ad.name, "Creative ID": r.ad.id,
        "Impressions": _n(r.impressions), "Clicks": _n(r.clicks),
        "Total Conversions": _n(conversions), "Post-Click Conversions": _n(post_click),
        "Post-View Conversions": _n(conversions - post_click),
        "Media Cost (Advertiser Currency)": _n(r.spend),
        "Revenue (Adv Currency)": _n(round(r.spend * 1.15, 2)),
        "CM360 Post-Click Revenue": _n(round(r.purchase_value / 3, 2)),
        "CM360 Post-View Revenue": _n(round(r.purchase_value - round(r.purchase_value / 3, 2),
                                            2)),
    }
    if r.video_views is not None:
        row["TrueView: Views"] = _n(r.video_views)
    return row


def ttd_campaign(world: World, c: Campaign) -> dict[str, Any]:
    money = {"Amount": c.budget, "CurrencyCode": c.account.currency}
    return {
        "CampaignId": c.id, "AdvertiserId": c.account.id, "CampaignName": c.name,
        "Description": None, "Availability": _TTD_STATUS[c.status(world.s.as_of)],
        "Budget": money if c.budget_type == "lifetime" else None,
        "DailyBudget": money if c.budget_type == "daily" else None,
        "StartDate": f"{c.start.isoformat()}T00:00:00",
        "EndDate": None if c.end is None else f"{c.end.isoformat()}T23:59:59",
        "PacingMode": "PaceEvenly",
        "LastUpdatedAtUTC": _updated(world, c).strftime("%Y-%m-%dT%H:%M:%S.%f0"),
    }


def ttd_row(c: Campaign, day: dt.date, r: AdDay) -> dict[str, Any]:
    conversions = r.leads + r.purchases
    click = conversions // 3
    click_revenue = round(r.purchase_value / 3, 2)
    row = {
        "Date": f"{day.isoformat()}T00:00:00", "Advertiser ID": c.account.id,
        "Advertiser": c.account.name, "Advertiser Currency Code": c.account.currency,
        "Campaign ID": c.id, "Campaign": c.name, "Ad Group ID": r.ad.ad_group_id,
        "Ad Group": r.ad.ad_group_name, "Creative ID": r.ad.id, "Creative": r.ad.name,
        "Impressions": str(r.impressions), "Clicks": str(r.clicks),
        "Advertiser Cost (Adv Currency)": f"{r.spend:.6f}",
        "01 - Total Click + View Conversions": str(conversions),
        "01 - Click Conversion": str(click), "01 - View Through Conversion": str(
            conversions - click),
        "01 - Click Conversion Revenue": f"{click_revenue:.2f}",
        "01 - View Through Conversion Revenue": f"{r.purchase_value - click_revenue:.2f}",
    }
    if r.video_views is not None:
        row["Player Completed Views"] = str(r.video_views)
    return row


def hubspot_deal(world: World, d: Deal) -> dict[str, Any]:
    stage = (("closedwon" if d.is_won else "closedlost") if d.is_closed
             else _HUBSPOT_STAGES[int(d.progress * len(_HUBSPOT_STAGES))])
    source = _HUBSPOT_SOURCE.get(d.utm_source or "", "ORGANIC_SEARCH")
    created, modified = _iso_z(d.created_at), _iso_z(d.modified_at)
    return {
        "id": d.id,
        "properties": {
            "amount": f"{d.amount:g}", "closedate": f"{d.close_date.isoformat()}T15:00:00Z",
            "createdate": created, "dealname": d.name, "dealstage": stage,
            "pipeline": "default", "deal_currency_code": d.currency,
            "hs_is_closed": str(d.is_closed).lower(), "hs_is_closed_won": str(d.is_won).lower(),
            "hs_analytics_source": source, "utm_source": d.utm_source,
            "utm_medium": d.utm_medium, "utm_campaign": d.utm_campaign,
            "hs_lastmodifieddate": modified, "hs_object_id": d.id,
        },
        "createdAt": created, "updatedAt": modified, "archived": False,
    }


def salesforce_opportunity(world: World, d: Deal) -> dict[str, Any]:
    sf_id = "006" + base_repr(int(d.id), 36).rjust(12, "0") + "AAQ"
    stage = (("Closed Won" if d.is_won else "Closed Lost") if d.is_closed
             else _SALESFORCE_STAGES[int(d.progress * len(_SALESFORCE_STAGES))])

    def stamp(moment: dt.datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    return {
        "attributes": {"type": "Opportunity",
                       "url": f"/services/data/v62.0/sobjects/Opportunity/{sf_id}"},
        "Id": sf_id, "Name": d.name, "Amount": d.amount, "CurrencyIsoCode": d.currency,
        "StageName": stage, "IsClosed": d.is_closed, "IsWon": d.is_won,
        "CreatedDate": stamp(d.created_at), "CloseDate": d.close_date.isoformat(),
        "LeadSource": "Advertisement" if d.utm_source else "Web",
        "UTM_Source__c": d.utm_source, "UTM_Medium__c": d.utm_medium,
        "UTM_Campaign__c": d.utm_campaign, "LastModifiedDate": stamp(d.modified_at),
    }


RowFn = Callable[[Campaign, dt.date, AdDay], dict[str, Any]]
CampaignFn = Callable[[World, Campaign], dict[str, Any]]
_PLATFORM: dict[str, tuple[str, str, CampaignFn, RowFn]] = {
    "meta": ("meta.campaigns", "meta.ad_insights_daily", meta_campaign, meta_insight),
    "dv360": ("dv360.insertion_orders", "dv360.report_daily", dv360_insertion_order, dv360_row),
    "ttd": ("ttd.campaigns", "ttd.report_daily", ttd_campaign, ttd_row),
}
_CRM: dict[str, tuple[str, Callable[[World, Deal], dict[str, Any]]]] = {
    "hubspot": ("hubspot.deals", hubspot_deal),
    "salesforce": ("salesforce.opportunities", salesforce_opportunity),
}
