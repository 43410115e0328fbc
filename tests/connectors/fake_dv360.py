"""A local Display & Video 360 for the connector tests: Bid Manager API v2 (queries, runs, reports),
the Display & Video 360 API v4 (advertisers, insertion orders, line items), Google's OAuth2 token
endpoint and Cloud Storage signed downloads, all on one real socket (``FakePlatform``).

Its data is a small synthetic organisation (``connectors.synthetic_world``: 2 advertisers, 2
campaign slots each, 2 line items per insertion order, 1 creative per line item), so report rows and
insertion orders have exactly the shapes the synthetic connector emits; insertion orders lose their
``currencyCode`` here (the real resource has none; the connector adds it from the advertiser).

Knobs for tests, besides ``FakePlatform``'s faults: ``polls_until_done``, ``fail_reports`` (the next
runs end FAILED), ``never_done``, ``denied`` (advertisers the user may not see), ``page_size``
(insertion orders per page), ``extra_columns`` / ``dropped_columns`` (report schema changes),
``write_faults`` (faults for PATCH calls only), ``expire_on`` (a path whose first request finds every
access token expired) and ``echo_secrets`` (error bodies quote the caller's secrets back).
"""

from __future__ import annotations

import base64
import copy
import csv
import datetime as dt
import hashlib
import io
import re
from typing import Any

from platform_fakes import FakePlatform, Reply, Request

from connectors.synthetic import dv360_insertion_order, dv360_row
from connectors.synthetic_world import World, WorldSettings

CLIENT_ID = "123456-fake.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-fake-client-secret-7Qx"
REFRESH_TOKEN = "1//fake-refresh-token-Zk93"
CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}
SEED = 20261127  # both always-on insertion orders run unpaused: every advertiser delivers every day

#: Bid Manager dimensions and metrics the fake knows, with the CSV column each produces
COLUMNS = {
    "FILTER_DATE": "Date", "FILTER_ADVERTISER_NAME": "Advertiser", "FILTER_ADVERTISER": "Advertiser ID",
    "FILTER_ADVERTISER_CURRENCY": "Advertiser Currency", "FILTER_MEDIA_PLAN": "Campaign ID",
    "FILTER_MEDIA_PLAN_NAME": "Campaign", "FILTER_INSERTION_ORDER_NAME": "Insertion Order",
    "FILTER_INSERTION_ORDER": "Insertion Order ID", "FILTER_LINE_ITEM_NAME": "Line Item",
    "FILTER_LINE_ITEM": "Line Item ID", "FILTER_CREATIVE": "Creative", "FILTER_CREATIVE_ID": "Creative ID",
    "METRIC_IMPRESSIONS": "Impressions", "METRIC_CLICKS": "Clicks",
    "METRIC_TOTAL_CONVERSIONS": "Total Conversions", "METRIC_LAST_CLICKS": "Post-Click Conversions",
    "METRIC_LAST_IMPRESSIONS": "Post-View Conversions",
    "METRIC_MEDIA_COST_ADVERTISER": "Media Cost (Advertiser Currency)",
    "METRIC_REVENUE_ADVERTISER": "Revenue (Adv Currency)",
    "METRIC_CM360_POST_CLICK_REVENUE": "CM360 Post-Click Revenue",
    "METRIC_CM360_POST_VIEW_REVENUE": "CM360 Post-View Revenue",
    "METRIC_TRUEVIEW_VIEWS": "TrueView: Views",
    "METRIC_ACTIVE_VIEW_VIEWABLE_IMPRESSIONS": "Active View: Viewable Impressions",
}
STATUSES = ("ENTITY_STATUS_ACTIVE", "ENTITY_STATUS_PAUSED", "ENTITY_STATUS_ARCHIVED", "ENTITY_STATUS_DRAFT")


def google_error(code: int, status: str, message: str, reason: str | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
    """A Google API error body (``error.code/message/status``, legacy ``errors[].reason``)."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["errors"] = [{"reason": reason, "domain": "usageLimits" if "imit" in reason or "uota" in reason
                            else "global", "message": message}]
    return Reply(code, {"error": error}, headers or {})


def unauthenticated() -> Reply:
    return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                        "access token, login cookie or other valid authentication credential.")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def dv360_number(value: float) -> str:
    """Thousands separators; two decimals only when fractional (as the report CSVs)."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def day_of(row: dict[str, str]) -> dt.date:
    return dt.datetime.strptime(row["Date"], "%Y/%m/%d").date()


class FakeDV360(FakePlatform):
    """Bid Manager v2 under ``/v2``, the DV360 API under ``/v4``, tokens at ``/token``, report files
    under ``/storage``."""

    def __init__(self, as_of: dt.date, days: int = 40) -> None:
        super().__init__()
        self.token_lifetime = 3600
        self.refresh_tokens.add(REFRESH_TOKEN)
        self.issued: list[str] = []
        self.polls_until_done = 2
        self.fail_reports = 0
        self.never_done = False
        self.denied: set[str] = set()
        self.page_size = 100
        self.extra_columns: dict[str, str] = {}
        self.dropped_columns: set[str] = set()
        self.write_faults: list[Any] = []
        self.expire_on: str | None = None
        self.echo_secrets = False
        self.queries: dict[str, dict[str, Any]] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.applied: list[tuple[str, str, str, Any]] = []  # (collection, id, updateMask, value)
        self._ids = 7_000_000
        self._seed(as_of, days)
        self.route("POST", "/token", self.oauth_token, auth=False)
        self.route("POST", "/v2/queries", self.create_query)
        self.route("GET", "/v2/queries", self.list_queries)
        self.route("POST", r"/v2/queries/(?P<q>\d+):run", self.run_query)
        self.route("GET", r"/v2/queries/(?P<q>\d+)/reports/(?P<r>\d+)", self.get_report)
        self.route("DELETE", r"/v2/queries/(?P<q>\d+)", self.delete_query)
        self.route("GET", r"/storage/reports/(?P<r>\d+)\.csv", self.download)
        self.route("GET", r"/v4/advertisers/(?P<a>\d+)", self.get_advertiser)
        self.route("GET", r"/v4/advertisers/(?P<a>\d+)/insertionOrders", self.list_insertion_orders)
        for method in ("GET", "PATCH"):
            self.route(method, r"/v4/advertisers/(?P<a>\d+)/(?P<kind>insertionOrders|lineItems)/(?P<id>\d+)",
                       self.entity)

    def _seed(self, as_of: dt.date, days: int) -> None:
        settings = WorldSettings(seed=SEED, as_of=as_of, accounts_per_platform=2, campaigns_per_account=2,
                                      ad_groups_per_campaign=2, ads_per_ad_group=1, malformed_rate=0.0,
                                      platforms=("dv360",), crms=())
        world = World("USD", settings)
        self.advertisers: dict[str, dict[str, Any]] = {a.id: {
            "name": f"advertisers/{a.id}", "advertiserId": a.id, "partnerId": "2345678", "displayName": a.name,
            "entityStatus": "ENTITY_STATUS_ACTIVE", "updateTime": "2026-01-05T10:00:00.000Z",
            "generalConfig": {"domainUrl": "https://www.example.com", "timeZone": "UTC", "currencyCode": a.currency},
        } for a in world.accounts["dv360"]}
        self.insertion_orders: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, dict[str, Any]] = {}
        for c in world.campaigns("dv360", as_of - dt.timedelta(days=days + 90), as_of):
            order = dv360_insertion_order(world, c)
            order.pop("currencyCode")
            order["insertionOrderType"] = "RTB"  # real fields the parser does not read
            order["frequencyCap"] = {"unlimited": True}
            self.insertion_orders[c.id] = order
            for g, ad in enumerate(c.ads):
                if ad.ad_group_id in self.line_items:
                    continue
                budget = ({"budgetAllocationType": "LINE_ITEM_BUDGET_ALLOCATION_TYPE_FIXED",
                           "budgetUnit": "BUDGET_UNIT_CURRENCY", "maxAmount": str(round(c.budget / 2) * 1_000_000)}
                          if g == 0 else {"budgetAllocationType": "LINE_ITEM_BUDGET_ALLOCATION_TYPE_AUTOMATIC",
                                          "budgetUnit": "BUDGET_UNIT_CURRENCY"})
                self.line_items[ad.ad_group_id] = {
                    "name": f"advertisers/{c.account.id}/lineItems/{ad.ad_group_id}",
                    "advertiserId": c.account.id, "campaignId": c.parent_id, "insertionOrderId": c.id,
                    "lineItemId": ad.ad_group_id, "displayName": ad.ad_group_name,
                    "lineItemType": "LINE_ITEM_TYPE_DISPLAY_DEFAULT", "entityStatus": order["entityStatus"],
                    "budget": budget,
                }
        self.rows: list[dict[str, str]] = [
            dv360_row(c, day, r)
            for day in (as_of - dt.timedelta(days=i) for i in range(days - 1, -1, -1))
            for c in world.campaigns("dv360", day, day) for r in world.ad_days(c, day)]

    def rows_between(self, start: dt.date, end: dt.date) -> list[dict[str, str]]:
        """The report rows of these days (what a report of the window serves)."""
        return [r for r in self.rows if start <= day_of(r) <= end]

    def set_cell(self, day: dt.date, creative_id: str, column: str, value: str) -> None:
        """Restate one figure (or change any cell) of one creative on one day."""
        row = next(r for r in self.rows if day_of(r) == day and r["Creative ID"] == creative_id)
        row[column] = value

    def drop_rows(self, advertiser_id: str, day: dt.date) -> None:
        self.rows = [r for r in self.rows if not (r["Advertiser ID"] == advertiser_id and day_of(r) == day)]

    def currency(self, advertiser_id: str) -> str:
        return self.advertisers[advertiser_id]["generalConfig"]["currencyCode"]

    def _new_id(self) -> str:
        with self.lock:
            self._ids += 1
            return str(self._ids)

    # -- tokens and faults -------------------------------------------------------------------

    def issue_token(self) -> str:
        token = super().issue_token()
        self.issued.append(token)
        return token

    def oauth_token(self, request: Request) -> Reply:
        form = request.form()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return Reply(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        if form.get("refresh_token") not in self.refresh_tokens:
            detail = f"Token {form.get('refresh_token')} has been expired or revoked." if self.echo_secrets else \
                "Token has been expired or revoked."
            return Reply(400, {"error": "invalid_grant", "error_description": detail})
        return super().oauth_token(request)

    def authorised(self, request: Request) -> bool:
        with self.lock:
            if self.expire_on and re.search(self.expire_on, request.path):
                self.expire_on = None
                self.expire_tokens()
        if request.path.startswith("/storage/"):  # a signed URL: the signature is the credential
            report_id = request.path.rsplit("/", 1)[-1].removesuffix(".csv")
            return request.header("authorization") is None and request.arg("X-Goog-Signature") == self.sign(
                report_id)
        return super().authorised(request)

    def unauthorised(self, request: Request) -> Reply:
        if request.path.startswith("/storage/"):
            code = "InvalidAuthentication" if request.header("authorization") else "SignatureDoesNotMatch"
            return Reply(400 if request.header("authorization") else 403,
                         f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>",
                         {"Content-Type": "application/xml"})
        return unauthenticated()

    def _next_fault(self, request: Request, exempt: bool) -> Any:
        with self.lock:
            if request.method == "PATCH" and self.write_faults:
                return self.write_faults.pop(0)
            if self.echo_secrets and not exempt and self.rng.random() < 0.3:
                return google_error(500, "INTERNAL", f"Internal error serving request with "
                                    f"{request.header('authorization')}")
        return super()._next_fault(request, exempt)

    def sign(self, report_id: str) -> str:
        return hashlib.sha256(f"signing-key/{report_id}".encode()).hexdigest()

    # -- Bid Manager -------------------------------------------------------------------------

    def create_query(self, request: Request) -> Reply:
        body = request.json() or {}
        metadata, params = body.get("metadata") or {}, body.get("params") or {}
        unknown = [n for n in [*params.get("groupBys", []), *params.get("metrics", [])] if n not in COLUMNS]
        if unknown or params.get("type") != "STANDARD" or metadata.get("format") != "CSV":
            return google_error(400, "INVALID_ARGUMENT", f"Request contains an invalid argument: {unknown}")
        if (metadata.get("dataRange") or {}).get("range") != "CUSTOM_DATES":
            return google_error(400, "INVALID_ARGUMENT", "dataRange.range must be CUSTOM_DATES here")
        advertisers = {f["value"] for f in params.get("filters", []) if f.get("type") == "FILTER_ADVERTISER"}
        if advertisers & self.denied or advertisers - set(self.advertisers):
            return google_error(403, "PERMISSION_DENIED", "The caller does not have permission")
        query_id = self._new_id()
        query = {"queryId": query_id, "metadata": metadata, "params": params, "schedule": body.get("schedule")}
        with self.lock:
            self.queries[query_id] = query
        return Reply(200, query)

    def list_queries(self, request: Request) -> Reply:
        size, start = int(request.arg("pageSize") or 100), int(request.arg("pageToken") or 0)
        with self.lock:
            queries = list(self.queries.values())
        body: dict[str, Any] = {"queries": queries[start:start + size]}
        if start + size < len(queries):
            body["nextPageToken"] = str(start + size)
        return Reply(200, body)

    def run_query(self, request: Request) -> Reply:
        assert request.match is not None
        query = self.queries.get(request.match["q"])
        if query is None:
            return google_error(404, "NOT_FOUND", "Query not found.")
        data_range = (request.json() or {}).get("dataRange") or query["metadata"]["dataRange"]
        start, end = (dt.date(**data_range[k]) for k in ("customStartDate", "customEndDate"))
        report_id = self._new_id()
        with self.lock:
            failing = self.fail_reports > 0
            self.fail_reports -= int(failing)
            self.reports[report_id] = {"query": query["queryId"], "start": start, "end": end, "polls": 0,
                                       "fails": failing, "csv": None}
        return Reply(200, self._report(report_id))

    def _report(self, report_id: str) -> dict[str, Any]:
        report = self.reports[report_id]
        state = "QUEUED" if report["polls"] == 0 else "RUNNING"
        if report["polls"] >= self.polls_until_done and not self.never_done:
            state = "FAILED" if report["fails"] else "DONE"
        metadata: dict[str, Any] = {
            "status": {"state": state, "format": "CSV"},
            "reportDataStartDate": {"year": report["start"].year, "month": report["start"].month,
                                    "day": report["start"].day},
            "reportDataEndDate": {"year": report["end"].year, "month": report["end"].month, "day": report["end"].day},
        }
        if state == "DONE":
            if report["csv"] is None:
                report["csv"] = self._csv(self.queries[report["query"]]["params"], report["start"], report["end"])
            metadata["status"]["finishTime"] = "2026-11-25T10:00:00.000Z"
            metadata["googleCloudStoragePath"] = (
                f"{self.url}/storage/reports/{report_id}.csv?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential="
                f"reports%40dbm.iam.gserviceaccount.com&X-Goog-Expires=3600&X-Goog-Signature={self.sign(report_id)}")
        elif state == "FAILED":
            metadata["status"]["finishTime"] = "2026-11-25T10:00:00.000Z"
        return {"key": {"queryId": report["query"], "reportId": report_id}, "metadata": metadata,
                "params": self.queries[report["query"]]["params"]}

    def get_report(self, request: Request) -> Reply:
        assert request.match is not None
        report = self.reports.get(request.match["r"])
        if report is None or report["query"] != request.match["q"] or report["query"] not in self.queries:
            return google_error(404, "NOT_FOUND", "Report not found.")
        with self.lock:
            report["polls"] += 1
            return Reply(200, self._report(request.match["r"]))

    def delete_query(self, request: Request) -> Reply:
        assert request.match is not None
        with self.lock:
            if self.queries.pop(request.match["q"], None) is None:
                return google_error(404, "NOT_FOUND", "Query not found.")
        return Reply(200, {})

    def _csv(self, params: dict[str, Any], start: dt.date, end: dt.date) -> str:
        """A report file: header, data rows, totals row, a blank line and the footer block."""
        dimensions = [COLUMNS[g] for g in params["groupBys"]]
        metrics = [COLUMNS[m] for m in params["metrics"]] + list(self.extra_columns)
        columns = [c for c in dimensions + metrics if c not in self.dropped_columns]
        advertisers = {f["value"] for f in params.get("filters", []) if f.get("type") == "FILTER_ADVERTISER"}
        rows = sorted((r for r in self.rows_between(start, end) if r["Advertiser ID"] in advertisers),
                      key=lambda r: (day_of(r), r["Advertiser ID"], r["Insertion Order ID"], r["Creative ID"]))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([r.get(c, self.extra_columns.get(c, "")) for c in columns])
        if rows:
            writer.writerow(["" if c in dimensions else dv360_number(sum(
                number(r.get(c, self.extra_columns.get(c, "")) or "0") for r in rows)) for c in columns])
        else:
            writer.writerow(["No data returned by the reporting service."])
        writer.writerow([])
        writer.writerow(["Report Time:", "2026/11/25 10:00"])
        writer.writerow(["Date Range:", f"{start:%Y/%m/%d} to {end:%Y/%m/%d}"])
        writer.writerow(["Group By:", *dimensions])
        writer.writerow(["MRC Accredited Metrics",
                         "Active View metrics are accredited only when Measurement Source = Measured"])
        writer.writerow(["Filter by Advertiser ID:", *sorted(advertisers)])
        return out.getvalue()

    def download(self, request: Request) -> Reply:
        assert request.match is not None
        report = self.reports.get(request.match["r"])
        if report is None or report["csv"] is None:
            return Reply(404, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>")
        content = report["csv"].encode()
        md5 = base64.b64encode(hashlib.md5(content).digest()).decode()
        return Reply(200, report["csv"], {"Content-Type": "text/csv", "x-goog-hash": f"crc32c=n03x6A==,md5={md5}",
                                          "x-goog-stored-content-length": str(len(content))})

    # -- Display & Video 360 API ---------------------------------------------------------------

    def _advertiser_problem(self, advertiser_id: str) -> Reply | None:
        if advertiser_id in self.denied or advertiser_id not in self.advertisers:
            return google_error(403, "PERMISSION_DENIED", "The caller does not have permission")
        return None

    def get_advertiser(self, request: Request) -> Reply:
        assert request.match is not None
        return self._advertiser_problem(request.match["a"]) or Reply(200, self.advertisers[request.match["a"]])

    def list_insertion_orders(self, request: Request) -> Reply:
        assert request.match is not None
        advertiser = request.match["a"]
        problem = self._advertiser_problem(advertiser)
        if problem:
            return problem
        with_archived = "entityStatus" in (request.arg("filter") or "")
        orders = [copy.deepcopy(o) for o in self.insertion_orders.values() if o["advertiserId"] == advertiser
                  and (with_archived or o["entityStatus"] != "ENTITY_STATUS_ARCHIVED")]
        orders.sort(key=lambda o: o["displayName"])
        size = min(int(request.arg("pageSize") or 100), self.page_size)
        start = int(base64.urlsafe_b64decode(request.arg("pageToken") or "MA==").decode())
        body: dict[str, Any] = {}
        if orders[start:start + size]:
            body["insertionOrders"] = orders[start:start + size]
        if start + size < len(orders):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return Reply(200, body)

    def entity(self, request: Request) -> Reply:
        assert request.match is not None
        advertiser, kind, entity_id = request.match["a"], request.match["kind"], request.match["id"]
        problem = self._advertiser_problem(advertiser)
        if problem:
            return problem
        store = self.insertion_orders if kind == "insertionOrders" else self.line_items
        with self.lock:
            entity = store.get(entity_id)
            if entity is None or entity["advertiserId"] != advertiser:
                return google_error(404, "NOT_FOUND", "Requested entity was not found.")
            if request.method == "PATCH":
                problem = self._patch(kind, entity, request.arg("updateMask") or "", request.json() or {})
                if problem:
                    return problem
            return Reply(200, copy.deepcopy(entity))

    def _patch(self, kind: str, entity: dict[str, Any], mask: str, body: dict[str, Any]) -> Reply | None:
        id_key = "insertionOrderId" if kind == "insertionOrders" else "lineItemId"
        if entity["entityStatus"] == "ENTITY_STATUS_ARCHIVED":
            return google_error(400, "FAILED_PRECONDITION", "Archived entities cannot be modified.")
        if mask == "entityStatus" and body.get("entityStatus") in STATUSES:
            value: Any = body["entityStatus"]
            entity["entityStatus"] = value
        elif mask == "budget.budgetSegments" and kind == "insertionOrders":
            value = (body.get("budget") or {}).get("budgetSegments")
            if not value or any(int(s["budgetAmountMicros"]) <= 0 for s in value):
                return google_error(400, "INVALID_ARGUMENT", "Budget segments must have positive amounts.")
            entity["budget"]["budgetSegments"] = value
        elif mask == "budget.maxAmount" and kind == "lineItems":
            if entity["budget"]["budgetAllocationType"] != "LINE_ITEM_BUDGET_ALLOCATION_TYPE_FIXED":
                return google_error(400, "INVALID_ARGUMENT", "The line item budget is allocated automatically.")
            value = (body.get("budget") or {}).get("maxAmount")
            entity["budget"]["maxAmount"] = value
        else:
            return google_error(400, "INVALID_ARGUMENT", f"Invalid update mask '{mask}' for this body.")
        entity["updateTime"] = "2026-11-26T09:00:00.000000Z"
        self.applied.append((kind, entity[id_key], mask, copy.deepcopy(value)))
        return None
