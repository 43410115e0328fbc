"""A local The Trade Desk API v3 for the connector tests.

Serves under ``/v3`` (point the connection's ``base_url`` at ``api_url``): ``POST /authentication``
(login and password -> ``Token``, checked in the ``TTD-Auth`` header of every other call),
``GET /advertiser/{id}``, ``POST /campaign/query/advertiser`` (paged by ``PageStartIndex``),
``GET``/``PUT`` ``/campaign`` and ``/adgroup``, MyReports schedules and execution queries. A report
execution is ``Pending``, then ``Running``, then ``Complete`` after ``polls_to_complete`` queries
(or ``Failed`` while ``fail_executions`` is positive); the CSV is rendered from ``rows`` then and
served at a presigned ``/files/...?sig=`` URL (no token; an S3-style MD5 ``ETag``).

The data are the synthetic organisation's TTD payloads (``connectors.synthetic``: the formats the
silver parsers read) for the days before today: ``campaigns`` by id, report ``rows`` as dicts keyed
by column header. Tests change them, the template's ``columns`` (schema changes), ``date_style``
and ``thousands`` (CSV quirks), ``forbidden`` advertisers (403) and ``password`` (revoked login).
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import hashlib
import io
import itertools
import secrets
from typing import Any

from platform_fakes import FakePlatform, Reply, Request

from connectors.base import ConnectionConfig, Window
from connectors.synthetic import SyntheticConnector

TEMPLATE_ID = 4242
COLUMNS = (
    "Date", "Advertiser ID", "Advertiser", "Advertiser Currency Code", "Campaign ID", "Campaign",
    "Ad Group ID", "Ad Group", "Creative ID", "Creative", "Impressions", "Clicks",
    "Advertiser Cost (Adv Currency)", "01 - Total Click + View Conversions", "01 - Click Conversion",
    "01 - View Through Conversion", "01 - Click Conversion Revenue", "01 - View Through Conversion Revenue",
    "Player Completed Views",
)
COUNTS = ("Impressions", "Clicks", "Advertiser Cost (Adv Currency)", "Player Completed Views")
AVAILABILITY = ("Available", "Paused", "Archived")


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def synthetic_ttd(start: dt.date, end: dt.date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(campaign objects, report rows) of a small synthetic TTD organisation for ``start..end``."""
    config = ConnectionConfig("acme", "fake-ttd", org_currency="USD", settings={
        "platforms": ["ttd"], "crms": [], "malformed_rate": 0, "as_of": today().isoformat(), "seed": 11,
        "accounts_per_platform": 2, "campaigns_per_account": 2, "ad_groups_per_campaign": 1,
        "ads_per_ad_group": 2})
    campaigns: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for page in SyntheticConnector(config).read(Window(start, end)):
        (campaigns if page.stream == "ttd.campaigns" else rows).extend(page.records)
    return campaigns, rows


def message(status: int, text: str, **details: str) -> Reply:
    """A TTD error body: ``Message`` and ``ErrorDetails`` (property -> reason)."""
    return Reply(status, {"Message": text, "ErrorDetails": [
        {"Property": k, "Reasons": [v]} for k, v in details.items()]})


class FakeTTD(FakePlatform):
    """The Trade Desk API v3 with two advertisers of synthetic data; see the module docstring."""

    def __init__(self, days: int = 5, login: str = "api-user@acme.test", password: str = "Pw-s3cret-TTD") -> None:
        super().__init__()
        self.slow_seconds = 0.6  # past the tests' 0.5 s timeout, no longer
        self.login, self.password = login, password
        self.template_id = TEMPLATE_ID
        self.columns = list(COLUMNS)
        self.date_style = "datetime"  # or "date": 2026-11-24
        self.thousands = False  # numbers as 12,345.67
        self.first_day, self.last_day = today() - dt.timedelta(days=days), today() - dt.timedelta(days=1)
        campaigns, self.rows = synthetic_ttd(self.first_day, self.last_day)
        self.campaigns = {c["CampaignId"]: c for c in campaigns}
        self.advertisers: dict[str, dict[str, Any]] = {}
        self.ad_groups: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            self.advertisers.setdefault(r["Advertiser ID"], {
                "AdvertiserId": r["Advertiser ID"], "AdvertiserName": r["Advertiser"], "PartnerId": "ptn1",
                "CurrencyCode": r["Advertiser Currency Code"], "Availability": "Available"})
            budget = {"Amount": 150.0, "CurrencyCode": r["Advertiser Currency Code"]} if not self.ad_groups else None
            self.ad_groups.setdefault(r["Ad Group ID"], {
                "AdGroupId": r["Ad Group ID"], "CampaignId": r["Campaign ID"], "AdGroupName": r["Ad Group"],
                "IsEnabled": True, "Availability": "Available",
                "RTBAttributes": {"BudgetSettings": {"Budget": None, "DailyBudget": budget, "PacingMode": "PaceEvenly"}}})
        self.forbidden: set[str] = set()
        self.polls_to_complete = 2
        self.fail_executions = 0
        self.expire_tokens_on_poll = False  # the next execution query finds every token expired
        self.schedules: dict[int, dict[str, Any]] = {}
        self.executions: dict[int, dict[str, Any]] = {}
        self.deleted: list[int] = []
        self.files: dict[str, tuple[bytes, str]] = {}  # name -> (CSV, signature)
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.issued: list[str] = []
        self._ids = itertools.count(9001)
        v3 = "/v3"
        self.route("POST", f"{v3}/authentication", self.authenticate, auth=False)
        self.route("GET", f"{v3}/advertiser/(?P<id>[^/]+)", self.advertiser)
        self.route("POST", f"{v3}/campaign/query/advertiser", self.campaign_query)
        self.route("GET", f"{v3}/campaign/(?P<id>[^/]+)", lambda r: self.entity(r, "campaign"))
        self.route("PUT", f"{v3}/campaign", self.put_campaign)
        self.route("GET", f"{v3}/adgroup/(?P<id>[^/]+)", lambda r: self.entity(r, "adgroup"))
        self.route("PUT", f"{v3}/adgroup", self.put_ad_group)
        self.route("POST", f"{v3}/myreports/reportschedule", self.create_schedule)
        self.route("DELETE", f"{v3}/myreports/reportschedule/(?P<id>[0-9]+)", self.delete_schedule)
        self.route("POST", f"{v3}/myreports/reportexecution/query/advertisers", self.execution_query)
        self.route("GET", "/files/(?P<name>[^/]+)", self.file)

    @property
    def api_url(self) -> str:
        return f"{self.url}/v3"

    # -- auth ----------------------------------------------------------------------------------

    def issue_token(self) -> str:
        token = super().issue_token()
        self.issued.append(token)
        return token

    def authorised(self, request: Request) -> bool:
        if request.path.startswith("/files/"):  # a presigned URL carries its own signature
            stored = self.files.get(request.match["name"]) if request.match else None
            return stored is not None and request.arg("sig") == stored[1]
        return request.header("TTD-Auth") in self.access_tokens

    def unauthorised(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return Reply(403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        return Reply(401, {"Message": "Authorization has been denied for this request."})

    def authenticate(self, request: Request) -> Reply:
        body = request.json() or {}
        if body.get("Login") != self.login or body.get("Password") != self.password:
            return Reply(401, {"Message": "Invalid login or password."})
        return Reply(200, {"Token": self.issue_token()})

    # -- advertisers and campaigns -------------------------------------------------------------

    def refused(self, advertiser: str) -> Reply | None:
        if advertiser in self.forbidden:
            return message(403, f"The user does not have permission to access advertiser {advertiser}.")
        if advertiser not in self.advertisers:
            return message(404, f"Advertiser {advertiser} was not found.")
        return None

    def advertiser(self, request: Request) -> Reply:
        advertiser = request.match["id"] if request.match else ""
        return self.refused(advertiser) or Reply(200, self.advertisers[advertiser])

    def campaign_query(self, request: Request) -> Reply:
        body = request.json()
        refused = self.refused(body.get("AdvertiserId"))
        if refused:
            return refused
        start, size = body.get("PageStartIndex"), body.get("PageSize")
        if not isinstance(start, int) or not isinstance(size, int) or not 1 <= size <= 100:
            return message(400, "The request failed validation.", PageSize="PageSize must be between 1 and 100.")
        found = sorted((c for c in self.campaigns.values() if c["AdvertiserId"] == body["AdvertiserId"]),
                       key=lambda c: c["CampaignId"])
        result = found[start:start + size]
        return Reply(200, {"Result": result, "ResultCount": len(result), "TotalFilteredCount": len(found)})

    def entity(self, request: Request, kind: str) -> Reply:
        entity_id = request.match["id"] if request.match else ""
        store = self.campaigns if kind == "campaign" else self.ad_groups
        if entity_id not in store:
            return message(404, f"The {kind} {entity_id} was not found.")
        return Reply(200, store[entity_id])

    def put_campaign(self, request: Request) -> Reply:
        body = request.json()
        campaign = self.campaigns.get(body.get("CampaignId"))
        if campaign is None:
            return message(404, f"The campaign {body.get('CampaignId')} was not found.")
        if "Availability" in body and body["Availability"] not in AVAILABILITY:
            return message(400, "The request failed validation.", Availability="Unknown value.")
        for key in ("Budget", "DailyBudget"):
            if key in body and not body[key]["Amount"] > 0:
                return message(400, "The request failed validation.", **{f"{key}.Amount": "Must be positive."})
        self.writes.append(("campaign", body))
        campaign.update({k: v for k, v in body.items() if k != "CampaignId"})
        return Reply(200, campaign)

    def put_ad_group(self, request: Request) -> Reply:
        body = request.json()
        group = self.ad_groups.get(body.get("AdGroupId"))
        if group is None:
            return message(404, f"The ad group {body.get('AdGroupId')} was not found.")
        self.writes.append(("adgroup", body))
        if "IsEnabled" in body:
            group["IsEnabled"] = bool(body["IsEnabled"])
        settings = (body.get("RTBAttributes") or {}).get("BudgetSettings") or {}
        group["RTBAttributes"]["BudgetSettings"].update(settings)
        return Reply(200, group)

    # -- MyReports -----------------------------------------------------------------------------

    def create_schedule(self, request: Request) -> Reply:
        body = request.json()
        required = ("ReportScheduleName", "ReportTemplateId", "ReportFileFormat", "ReportDateRange",
                    "ReportStartDateInclusive", "ReportEndDateExclusive", "ReportFrequency", "TimeZone",
                    "AdvertiserFilters")
        missing = [k for k in required if body.get(k) in (None, "", [])]
        if missing:
            return message(400, "The request failed validation.", **{k: "Required." for k in missing})
        if body["ReportTemplateId"] != self.template_id:
            return message(400, "The request failed validation.",
                           ReportTemplateId=f"Report template {body['ReportTemplateId']} does not exist.")
        for advertiser in body["AdvertiserFilters"]:
            refused = self.refused(advertiser)
            if refused:
                return refused
        schedule_id, execution_id = next(self._ids), next(self._ids)
        with self.lock:
            self.schedules[schedule_id] = {**body, "ReportScheduleId": schedule_id}
            self.executions[execution_id] = {
                "ReportExecutionId": execution_id, "ReportScheduleId": schedule_id, "polls": 0,
                "fails": self.fail_executions > 0, "ReportExecutionState": "Pending", "ReportDeliveries": []}
            self.fail_executions = max(0, self.fail_executions - 1)
        return Reply(200, {"ReportScheduleId": schedule_id, "ReportScheduleName": body["ReportScheduleName"],
                           "ReportFrequency": "Once", "ReportTemplateId": self.template_id})

    def delete_schedule(self, request: Request) -> Reply:
        schedule_id = int(request.match["id"]) if request.match else 0
        if self.schedules.pop(schedule_id, None) is None:
            return message(404, f"Report schedule {schedule_id} was not found.")
        self.deleted.append(schedule_id)
        return Reply(200, {"ReportScheduleId": schedule_id})

    def execution_query(self, request: Request) -> Reply:
        if self.expire_tokens_on_poll:
            self.expire_tokens_on_poll = False
            self.expire_tokens()
            return self.unauthorised(request)
        body = request.json()
        for advertiser in body.get("AdvertiserIds") or []:
            refused = self.refused(advertiser)
            if refused:
                return refused
        wanted = set(body.get("ReportScheduleIds") or [])
        found = []
        with self.lock:
            for e in self.executions.values():
                if e["ReportScheduleId"] in wanted:
                    self._advance(e)
                    found.append({k: v for k, v in e.items() if k not in ("polls", "fails")})
        start, size = body.get("PageStartIndex", 0), body.get("PageSize", 100)
        result = found[start:start + size]
        return Reply(200, {"Result": result, "ResultCount": len(result), "TotalFilteredCount": len(found)})

    def _advance(self, execution: dict[str, Any]) -> None:
        if execution["ReportExecutionState"] in ("Complete", "Failed"):
            return
        execution["polls"] += 1
        if execution["polls"] < self.polls_to_complete:
            execution["ReportExecutionState"] = "Running"
        elif execution["fails"]:
            execution["ReportExecutionState"] = "Failed"
        else:
            schedule = self.schedules[execution["ReportScheduleId"]]
            name = f"report-{execution['ReportExecutionId']}.csv"
            self.files[name] = (self.render(schedule), secrets.token_hex(16))
            execution["ReportExecutionState"] = "Complete"
            execution["ReportDeliveries"] = [{
                "DownloadURL": f"{self.url}/files/{name}?sig={self.files[name][1]}",
                "DeliveredPath": f"reports/{name}", "DeliveredUTC": dt.datetime.now(dt.UTC).isoformat()}]

    def render(self, schedule: dict[str, Any]) -> bytes:
        """The CSV of a schedule's rows: its advertisers and dates, the template's columns."""
        start = dt.date.fromisoformat(schedule["ReportStartDateInclusive"][:10])
        end = dt.date.fromisoformat(schedule["ReportEndDateExclusive"][:10])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.columns)
        for row in self.rows:
            if row["Advertiser ID"] in schedule["AdvertiserFilters"] and \
                    start <= dt.date.fromisoformat(row["Date"][:10]) < end:
                writer.writerow([self._cell(row, c) for c in self.columns])
        return out.getvalue().encode()

    def _cell(self, row: dict[str, Any], column: str) -> str:
        value = str(row.get(column, "") or "")
        if column == "Date" and self.date_style == "date":
            return value[:10]
        if self.thousands and column in COUNTS and value:
            number = float(value)
            return f"{number:,.6f}" if "." in value else f"{int(number):,d}"
        return value

    def file(self, request: Request) -> Reply:
        content, _ = self.files[request.match["name"] if request.match else ""]
        return Reply(200, content, {"Content-Type": "text/csv", "ETag": f'"{hashlib.md5(content).hexdigest()}"'})

    # -- helpers for tests ---------------------------------------------------------------------

    def expected_rows(self, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        """The rows a report over ``start..end`` (inclusive) holds, without empty values."""
        return [copy.deepcopy(r) for r in self.rows if start <= dt.date.fromisoformat(r["Date"][:10]) <= end]
