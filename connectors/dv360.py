"""Google Display & Video 360: Bid Manager API v2 reports, Display & Video 360 API v4 entities.

Streams, for the advertisers of the ``advertiser_ids`` setting:

- ``dv360.insertion_orders``: ``GET {dv360_api_url}/advertisers/{id}/insertionOrders`` (``pageSize``
  100, ``pageToken`` / ``nextPageToken``, filtered on every ``entityStatus`` so archived insertion
  orders come too), each object plus ``currencyCode`` from the advertiser
  (``GET {dv360_api_url}/advertisers/{id}``, ``generalConfig.currencyCode``, fetched once per run).
- ``dv360.report_daily``: one Bid Manager query per ``chunk_days`` of the window for all
  advertisers (STANDARD, CSV, custom dates; by day, advertiser, campaign, insertion order, line item
  and creative): ``POST /v2/queries``, ``POST /v2/queries/{id}:run``, then ``GET
  /v2/queries/{id}/reports/{reportId}`` every ``poll_seconds`` (at most ``max_polls`` times) until
  ``DONE``; a ``FAILED`` report is run once more. The CSV comes from
  ``metadata.googleCloudStoragePath``, a signed URL: no Authorization header, its signature kept out
  of httpx's log lines, a body that does not match its ``x-goog-hash`` MD5 fetched again. Then
  ``DELETE /v2/queries/{id}`` (failures only logged; when the create call was repeated, twins with
  the same title go too). Records are the data rows keyed by the CSV header, blank cells left out;
  the totals row and the footer block are skipped; pages of ``page_rows`` (5,000) records.

Auth: OAuth2 refresh token (``client_id``, ``client_secret``, ``refresh_token``) at ``token_url``;
access tokens last an hour, are renewed before expiry and on a 401, and are stored with the
connection.

Throttling and errors: 429 and its ``Retry-After`` (the shared client), and Google error bodies
(``error.status``, ``error.errors[].reason``, ``error.details[].reason``): ``rateLimitExceeded``,
``userRateLimitExceeded`` or ``RESOURCE_EXHAUSTED`` are throttles (retried with back-off),
``quotaExceeded`` / ``dailyLimitExceeded`` or a per-day quota a ``QuotaExceededError``, any other
403 an ``AccessError`` naming the advertiser.

Write-back (DV360 API): ``campaign`` = insertion order, ``ad_group`` = line item, found under the
first configured advertiser that has it. Status: ``PATCH ...?updateMask=entityStatus``. Budget of
an insertion order: its budget segment covering today (else the next one) in the advertiser's time
zone, ``PATCH ...?updateMask=budget.budgetSegments`` with every segment; of a line item: its fixed
``budget.maxAmount`` (``updateMask=budget.maxAmount``); automatic or unlimited budgets are the
insertion order's. Amounts are micros of the advertiser currency.

Settings: ``advertiser_ids`` (required: a list, or comma-separated text), ``base_url`` (Bid
Manager), ``dv360_api_url``, ``token_url``, ``chunk_days`` (31), ``poll_seconds`` (10),
``max_polls`` (360), ``page_rows`` (5000), and the shared client settings (``timeout_seconds``,
``max_attempts``, ``backoff_seconds``, ``requests_per_second``...).
"""

from __future__ import annotations

import base64
import copy
import csv
import datetime as dt
import hashlib
import io
import logging
import re
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx

from connectors.base import (
    Account,
    ConnectionConfig,
    CredentialField,
    EntityState,
    Page,
    PermanentWriteError,
    StreamSpec,
    Window,
    money,
)
from connectors.http import Auth, MalformedResponseError, OAuth2Refresh, retry_after, stored_expiry
from connectors.platform import HttpPlatformWriter, PlatformConnector, WriteJournal, chunks
from workbench.errors import (
    AccessError,
    ApiError,
    QuotaExceededError,
    ThrottledError,
    TransientApiError,
    ValidationError,
)
from workbench.medallion.parsers.dv360 import STATUS

log = logging.getLogger("connectors.dv360")



REPORT_STREAM = "dv360.report_daily"
IO_STREAM = "dv360.insertion_orders"
DV360_API_URL = "https://displayvideo.googleapis.com/v4"
TOKEN_URL = "https://oauth2.googleapis.com/token"
PAGE_ROWS = 5000
MICROS = Decimal(1_000_000)

#: report dimensions and their CSV columns, in report order (the synthetic ``dv360_row`` keys)
DIMENSIONS = {
    "FILTER_DATE": "Date", "FILTER_ADVERTISER_NAME": "Advertiser", "FILTER_ADVERTISER": "Advertiser ID",
    "FILTER_ADVERTISER_CURRENCY": "Advertiser Currency", "FILTER_MEDIA_PLAN": "Campaign ID",
    "FILTER_INSERTION_ORDER_NAME": "Insertion Order", "FILTER_INSERTION_ORDER": "Insertion Order ID",
    "FILTER_LINE_ITEM_NAME": "Line Item", "FILTER_LINE_ITEM": "Line Item ID",
    "FILTER_CREATIVE": "Creative", "FILTER_CREATIVE_ID": "Creative ID",
}
#: report metrics and their CSV columns
METRICS = {
    "METRIC_IMPRESSIONS": "Impressions", "METRIC_CLICKS": "Clicks",
    "METRIC_TOTAL_CONVERSIONS": "Total Conversions", "METRIC_LAST_CLICKS": "Post-Click Conversions",
    "METRIC_LAST_IMPRESSIONS": "Post-View Conversions",
    "METRIC_MEDIA_COST_ADVERTISER": "Media Cost (Advertiser Currency)",
    "METRIC_REVENUE_ADVERTISER": "Revenue (Adv Currency)",
    "METRIC_CM360_POST_CLICK_REVENUE": "CM360 Post-Click Revenue",
    "METRIC_CM360_POST_VIEW_REVENUE": "CM360 Post-View Revenue",
    "METRIC_TRUEVIEW_VIEWS": "TrueView: Views",
}
# The list call leaves archived insertion orders out unless the filter names entityStatus.
_EVERY_STATUS = " OR ".join(f'entityStatus="ENTITY_STATUS_{s}"' for s in ("ACTIVE", "PAUSED", "DRAFT", "ARCHIVED"))
_THROTTLE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
_QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}
_DISABLED_REASONS = {"accessNotConfigured", "SERVICE_DISABLED"}
_ADVERTISER_IN_PATH = re.compile(r"/advertisers/(\d+)")


def _dv360_date(day: dt.date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def _custom_dates(window: Window) -> dict[str, Any]:
    return {"range": "CUSTOM_DATES", "customStartDate": _dv360_date(window.start),
            "customEndDate": _dv360_date(window.end)}


def _report_date(text: str | None) -> dt.date | None:
    """A report date (``2026/11/24``; ISO accepted too), None when it is not one."""
    for fmt in ("%Y/%m/%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text or "", fmt).date()
        except ValueError:
            continue
    return None


def _google_error(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Google API error body, if the body is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, list) and body:  # some Google endpoints wrap the error in a list
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _reasons(error: dict[str, Any]) -> tuple[set[str], bool]:
    """The reasons of a Google error (legacy ``errors[]`` and ``details[]`` ErrorInfo), and
    whether a per-day quota is what ran out."""
    items = [e for key in ("errors", "details") for e in error.get(key) or [] if isinstance(e, dict)]
    reasons = {str(e["reason"]) for e in items if e.get("reason")}
    meta = [e.get("metadata") or {} for e in items]
    daily = any(re.search(r"(^|/)1/d(/|$)", str(m.get("quota_unit", ""))) or "PerDay" in str(m.get("quota_limit", ""))
                for m in meta if isinstance(m, dict))
    return reasons, daily


def _segment_bounds(segment: dict[str, Any]) -> tuple[dt.date, dt.date] | None:
    try:
        bounds = segment["dateRange"]
        return dt.date(**bounds["startDate"]), dt.date(**bounds["endDate"])
    except (KeyError, TypeError, ValueError):
        return None


def current_segment(segments: list[dict[str, Any]], today: dt.date) -> int | None:
    """Index of the budget segment whose dates cover ``today``, else of the next one to start
    (a flight not begun yet can still be re-budgeted), else None (the flight is over)."""
    upcoming: tuple[dt.date, int] | None = None
    for i, segment in enumerate(segments):
        bounds = _segment_bounds(segment)
        if bounds is None:
            continue
        if bounds[0] <= today <= bounds[1]:
            return i
        if bounds[0] > today and (upcoming is None or bounds[0] < upcoming[0]):
            upcoming = (bounds[0], i)
    return None if upcoming is None else upcoming[1]


def _micros(amount: Decimal) -> str:
    return str(int((money(amount) * MICROS).to_integral_value()))


def _from_micros(value: Any) -> Decimal | None:
    try:
        return money(Decimal(str(value)) / MICROS)
    except (InvalidOperation, ValueError):
        return None


class ApiDisabledError(AccessError):
    """The Google Cloud project of the OAuth client has the API turned off (no advertiser can help)."""


class ReportFile:
    """A downloaded Bid Manager CSV report: header, data rows as dicts, totals and footer left out."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.header: list[str] = []

    def records(self) -> Iterator[dict[str, str]]:
        """The data rows keyed by the header, blank cells left out (a metric the row has no
        value for, as the platform's other exports). Raises ``MalformedResponseError`` for a row
        whose cells do not match the header (a file cut short)."""
        reader = csv.reader(io.StringIO(self.text))
        self.header = next(reader, [])
        if not self.header:
            raise MalformedResponseError("the report file is empty (no header row)", platform="dv360")
        width = len(self.header)
        date_column = self.header.index("Date") if "Date" in self.header else 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                return  # the blank line before the footer ("Report Time:", "Group By:"...)
            if len(row) == 1 and row[0].startswith("No data returned"):
                return
            if len(row) != width:
                raise MalformedResponseError(
                    f"report line {reader.line_num} has {len(row)} cells where the header has {width} "
                    "(a file cut short)", platform="dv360")
            if not row[date_column].strip():
                continue  # the totals row: summed figures without dimensions
            yield {name: cell for name, cell in zip(self.header, row, strict=True) if cell != ""}

    def check(self) -> None:
        """Read the whole file once so a damaged one fails before any page is yielded."""
        for _ in self.records():
            pass


def _integrity_problem(response: httpx.Response) -> str | None:
    """What is wrong with a downloaded file by its Cloud Storage headers (MD5 and stored length),
    or None. A body served transcoded (stored gzip) cannot be checked against them."""
    if response.headers.get("x-goog-stored-content-encoding", "identity") != "identity":
        return None
    stored = response.headers.get("x-goog-stored-content-length")
    if stored and stored.isdigit() and int(stored) != len(response.content):
        return f"{len(response.content)} bytes arrived of {stored}"
    hashes = dict(part.strip().split("=", 1) for part in response.headers.get("x-goog-hash", "").split(",")
                  if "=" in part)
    expected = hashes.get("md5")
    if expected:
        actual = base64.b64encode(hashlib.md5(response.content, usedforsecurity=False).digest()).decode()
        if actual != expected:
            return "the file does not match its MD5 (x-goog-hash)"
    return None


class DV360Connector(PlatformConnector):
    """Display & Video 360: Bid Manager reports and DV360 API insertion orders; write-back."""

    name: ClassVar[str] = "dv360"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec(REPORT_STREAM, "DV360 Bid Manager report rows (CSV columns)"),
        StreamSpec(IO_STREAM, "DV360 API insertion orders", daily=False),
    )
    default_lookback_days: ClassVar[int] = 14
    capabilities: ClassVar[frozenset[str]] = frozenset({"read", "write", "async_reports"})
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("client_id", "Google OAuth client ID", secret=False),
        CredentialField("client_secret", "Google OAuth client secret"),
        CredentialField("refresh_token", "OAuth refresh token (scopes doubleclickbidmanager and "
                                         "display-video)"),
    )
    default_base_url: ClassVar[str] = "https://doubleclickbidmanager.googleapis.com"
    # DV360 allows 300 requests a minute per advertiser and 1,500 per project.
    default_rate: ClassVar[float] = 4.0
    default_burst: ClassVar[int] = 4
    required_settings: ClassVar[tuple[str, ...]] = ("advertiser_ids",)

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        value = self.setting("advertiser_ids")
        items = value.split(",") if isinstance(value, str) else list(value)
        self.advertiser_ids = [str(i).strip() for i in items if str(i).strip()]
        bad = [i for i in self.advertiser_ids if not i.isdigit()]
        if bad or not self.advertiser_ids:
            raise ValidationError(f"connection '{config.connection_id}' (dv360): advertiser_ids must be DV360 "
                                  f"advertiser ids (numbers), not {bad or value!r}")
        self.api_url = str(self.setting("dv360_api_url") or DV360_API_URL).rstrip("/")
        self.chunk_days = int(self.number_setting("chunk_days", 31, 1))
        self.poll_seconds = self.number_setting("poll_seconds", 10, 0)
        self.max_polls = int(self.number_setting("max_polls", 360, 1))
        self.page_rows = int(self.number_setting("page_rows", PAGE_ROWS, 1))
        self._advertisers: dict[str, dict[str, Any]] = {}

    # -- client hooks ----------------------------------------------------------------------------

    def make_auth(self) -> Auth:
        c = self.config.credentials
        return OAuth2Refresh(str(self.setting("token_url") or TOKEN_URL), c["client_id"], c["client_secret"],
                             c["refresh_token"], token=c.get("access_token"), expires_at=stored_expiry(c),
                             on_token=self.store_credentials)

    def check(self, response: httpx.Response) -> ApiError | None:
        """Google's error bodies: throttles, spent quotas and missing permissions. A 401 is left
        to the client, which refreshes the token once before calling it an auth error."""
        if response.is_success or response.status_code == 401:
            return None
        error = _google_error(response)
        if error is None:
            return None
        reasons, daily = _reasons(error)
        status, code = str(error.get("status", "")), response.status_code
        # mask before cutting: a cut through a secret would leave its first characters readable
        detail = self.client.mask(" ".join(str(error.get("message", "")).split()))[:300]
        path = response.request.url.path
        advertiser = _ADVERTISER_IN_PATH.search(path)
        if daily or reasons & _QUOTA_REASONS:
            return QuotaExceededError(
                f"dv360 {path}: the API quota of the Google Cloud project is spent ({detail}); it resets "
                "daily at midnight Pacific time: run again then, or raise the quota in the Google Cloud "
                "console", status=code)
        if reasons & _THROTTLE_REASONS or status == "RESOURCE_EXHAUSTED":
            return ThrottledError(f"dv360 {path}: the platform asks to slow down ({detail})", status=code,
                                  retry_after=retry_after(response.headers.get("Retry-After")))
        if reasons & _DISABLED_REASONS:
            return ApiDisabledError(f"dv360 {path}: {detail}. Enable the Display & Video 360 API and the "
                                    "DoubleClick Bid Manager API in the Google Cloud project of the OAuth "
                                    "client", status=code)
        if status == "PERMISSION_DENIED" or code == 403:
            whom = (f"DV360 advertiser {advertiser.group(1)}" if advertiser else
                    f"one of the advertisers {', '.join(self.advertiser_ids)} (setting advertiser_ids)")
            return AccessError(f"dv360 {path}: the credentials cannot reach {whom} ({detail}). Ask a DV360 "
                               "admin to give the user who authorised this connection access to it, or "
                               "remove it from the advertiser_ids setting", status=code)
        return None

    # -- advertisers -----------------------------------------------------------------------------

    def advertiser(self, advertiser_id: str) -> dict[str, Any]:
        """The DV360 advertiser resource (fetched once per connector)."""
        if advertiser_id not in self._advertisers:
            self._advertisers[advertiser_id] = self.client.get_json(
                f"{self.api_url}/advertisers/{advertiser_id}", what=f"advertiser {advertiser_id}",
                validate=lambda b: None if isinstance(b, dict) and b.get("advertiserId") else "no advertiserId")
        return self._advertisers[advertiser_id]

    def advertisers(self) -> dict[str, dict[str, Any]]:
        """Every configured advertiser; an ``AccessError`` names those the credentials cannot
        reach, and which of the configured ones they do reach."""
        refused: list[tuple[str, AccessError]] = []
        for advertiser_id in self.advertiser_ids:
            try:
                self.advertiser(advertiser_id)
            except ApiDisabledError:
                raise
            except AccessError as exc:
                refused.append((advertiser_id, exc))
        if refused:
            reached = ", ".join(a for a in self.advertiser_ids if a in self._advertisers) or "none of them"
            names = ", ".join(a for a, _ in refused)
            statuses = ", ".join(sorted({f"HTTP {exc.status}" for _, exc in refused}))
            raise AccessError(
                f"the credentials cannot reach DV360 advertiser(s) {names} ({statuses}). Ask a DV360 admin to "
                "give the user who authorised this connection access to them, or remove them from the "
                f"advertiser_ids setting; of the configured advertisers they reach: {reached}",
                platform=self.name, status=refused[0][1].status)
        return {a: self._advertisers[a] for a in self.advertiser_ids}

    @staticmethod
    def currency(advertiser: dict[str, Any]) -> str | None:
        return (advertiser.get("generalConfig") or {}).get("currencyCode")

    def today(self, advertiser: dict[str, Any]) -> dt.date:
        """Today in the advertiser's time zone (budget segments are dated in it)."""
        name = (advertiser.get("generalConfig") or {}).get("timeZone") or self.config.org_timezone
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = zoneinfo.ZoneInfo("UTC")
        return dt.datetime.now(zone).date()

    def accounts(self) -> list[Account]:
        return [Account(a, str(adv.get("displayName") or a), self.currency(adv),
                        STATUS.get(str(adv.get("entityStatus")), adv.get("entityStatus")))
                for a, adv in self.advertisers().items()]

    # -- reading ---------------------------------------------------------------------------------

    def read(self, window: Window) -> Iterator[Page]:
        """Insertion orders of every advertiser, then the report rows, chunk by chunk."""
        for advertiser_id, advertiser in self.advertisers().items():
            yield from self._insertion_orders(advertiser_id, self.currency(advertiser))
        run = uuid.uuid4().hex[:8]
        for chunk in chunks(window, self.chunk_days):
            yield from self._report(chunk, f"workbench {self.config.connection_id} {run} {chunk.start}..{chunk.end}")

    def _insertion_orders(self, advertiser_id: str, currency: str | None) -> Iterator[Page]:
        url = f"{self.api_url}/advertisers/{advertiser_id}/insertionOrders"
        token: str | None = None
        seen: set[str] = set()
        while True:
            params = {"pageSize": 100, "filter": _EVERY_STATUS, **({"pageToken": token} if token else {})}
            body = self.client.get_json(url, what=f"insertion orders of advertiser {advertiser_id}", params=params,
                                        validate=_list_problem("insertionOrders"))
            records = [{**order, "currencyCode": currency} for order in body.get("insertionOrders") or []]
            if records:
                yield Page(IO_STREAM, records)
            token = body.get("nextPageToken") or None
            if token is None:
                return
            if token in seen:  # a platform bug would otherwise loop for ever
                raise TransientApiError(f"dv360 insertion orders of advertiser {advertiser_id}: the page token "
                                        "repeats; run again later", platform=self.name)
            seen.add(token)

    def _report(self, chunk: Window, title: str) -> Iterator[Page]:
        what = f"report {chunk.start}..{chunk.end}"
        calls = self.client.calls
        query = self.client.post_json("/v2/queries", what=f"{what}: create query", json=self._query(chunk, title),
                                      validate=lambda b: None if isinstance(b, dict) and b.get("queryId")
                                      else "no queryId")
        # more than one call: an answer was lost or garbled, and a twin query may exist
        repeated = self.client.calls - calls > 1
        query_id = str(query["queryId"])
        try:
            report = ReportFile(self._download(self._run(query_id, chunk, what), what))
        finally:
            self._delete(query_id, title if repeated else None)
        page: list[dict[str, str]] = []
        for record in report.records():
            day = _report_date(record.get("Date"))
            if day is not None and record.get("Advertiser ID"):
                self.coverage.add(record["Advertiser ID"], day)
            page.append(record)
            if len(page) >= self.page_rows:
                yield Page(REPORT_STREAM, page)
                page = []
        if page:
            yield Page(REPORT_STREAM, page)
        expected = [*DIMENSIONS.values(), *METRICS.values()]
        missing = [c for c in expected if c not in report.header]
        if missing:
            log.warning("dv360 %s: the report has no column %s; those figures stay empty", what, ", ".join(missing))
        new = [c for c in report.header if c not in expected]
        if new:
            log.info("dv360 %s: new report columns %s are kept in bronze", what, ", ".join(new))

    def _query(self, chunk: Window, title: str) -> dict[str, Any]:
        return {
            "metadata": {"title": title, "dataRange": _custom_dates(chunk), "format": "CSV"},
            "params": {"type": "STANDARD", "groupBys": list(DIMENSIONS), "metrics": list(METRICS),
                       "filters": [{"type": "FILTER_ADVERTISER", "value": a} for a in self.advertiser_ids]},
            "schedule": {"frequency": "ONE_TIME"},
        }

    def _run(self, query_id: str, chunk: Window, what: str) -> str:
        """Run the query until a report is DONE (a FAILED one is run once more); its file URL."""
        for attempt in (1, 2):
            report = self.client.post_json(
                f"/v2/queries/{query_id}:run", what=f"{what}: run query {query_id}",
                json={"dataRange": _custom_dates(chunk)},
                validate=lambda b: None if isinstance(b, dict) and (b.get("key") or {}).get("reportId")
                else "no key.reportId")
            metadata = self._poll(query_id, str(report["key"]["reportId"]), what)
            if metadata["status"]["state"] == "DONE":
                return str(metadata["googleCloudStoragePath"])
            failure = self.client.mask(str(metadata["status"].get("failure") or ""))
            log.warning("dv360 %s: report of query %s FAILED %s(attempt %d of 2)", what, query_id,
                        f"({failure}) " if failure else "", attempt)
        raise TransientApiError(f"dv360 {what}: DV360 could not build the report (query {query_id} failed twice); "
                                "run again later, and if it keeps failing use a smaller chunk_days",
                                platform=self.name)

    def _poll(self, query_id: str, report_id: str, what: str) -> dict[str, Any]:
        """Report metadata once its state is DONE or FAILED, polled ``poll_seconds`` apart."""
        state = "QUEUED"
        for _ in range(self.max_polls):
            time.sleep(self.poll_seconds)  # a report just run is never ready at once
            body = self.client.get_json(f"/v2/queries/{query_id}/reports/{report_id}",
                                        what=f"{what}: report {report_id}", validate=_report_problem)
            state = body["metadata"]["status"]["state"]
            if state in ("DONE", "FAILED"):
                return dict(body["metadata"])
        raise TransientApiError(
            f"dv360 {what}: report {report_id} of query {query_id} was still {state} after {self.max_polls} "
            f"polls {self.poll_seconds:g} s apart; run again later, or raise max_polls / poll_seconds",
            platform=self.name)

    def _download(self, url: str, what: str) -> str:
        """The report file at its signed URL, checked whole (retried like a malformed page)."""
        def parse(response: httpx.Response) -> str:
            problem = _integrity_problem(response)
            try:
                text = response.content.decode("utf-8-sig")
            except UnicodeDecodeError:
                problem = problem or "the file is not UTF-8 text"
            if problem:
                raise MalformedResponseError(f"dv360 {what}: download: {problem}", platform=self.name)
            try:
                ReportFile(text).check()
            except MalformedResponseError as exc:
                raise MalformedResponseError(f"dv360 {what}: download: {exc}", platform=self.name) from None
            return text

        # the signed URL is its own credential: no Authorization header goes to the file host
        return self.client.fetch("GET", url, what=f"{what}: download", auth=False, parse=parse)

    def _delete(self, query_id: str, twins_titled: str | None) -> None:
        """Delete the run's query (and any twin of it); failures only log, a query left behind
        costs nothing but clutter in the user's DV360 reports."""
        doomed = [query_id]
        if twins_titled is not None:
            doomed += [q for q in self._queries_titled(twins_titled) if q != query_id]
        for q in doomed:
            try:
                self.client.request("DELETE", f"/v2/queries/{q}", what=f"clean-up: delete query {q}")
            except ApiError as exc:
                if exc.status != 404:  # a repeated delete whose first answer was lost
                    log.warning("dv360: could not delete report query %s (%s); delete it in DV360", q, exc)

    def _queries_titled(self, title: str) -> list[str]:
        found: list[str] = []
        token: str | None = None
        try:
            while True:
                body = self.client.get_json("/v2/queries", what="clean-up: list queries",
                                            params={"pageSize": 100, **({"pageToken": token} if token else {})},
                                            validate=_list_problem("queries"))
                found += [str(q.get("queryId")) for q in body.get("queries") or []
                          if (q.get("metadata") or {}).get("title") == title]
                token = body.get("nextPageToken") or None
                if token is None:
                    return found
        except ApiError as exc:
            log.warning("dv360: could not list report queries to clean up (%s)", exc)
            return found

    # -- writing ---------------------------------------------------------------------------------

    def writer(self, journal: WriteJournal) -> DV360Writer:
        return DV360Writer(self, journal)


def _list_problem(key: str) -> Callable[[Any], str | None]:
    def problem(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the answer is not an object"
        if not isinstance(body.get(key, []), list):
            return f"'{key}' is not a list"
        return None
    return problem


def _report_problem(body: Any) -> str | None:
    status = ((body.get("metadata") or {}).get("status") or {}) if isinstance(body, dict) else {}
    if not status.get("state"):
        return "no metadata.status.state"
    if status["state"] == "DONE" and not body["metadata"].get("googleCloudStoragePath"):
        return "a DONE report without metadata.googleCloudStoragePath"
    return None


_ENTITIES = {"campaign": ("insertionOrders", "insertion order"), "ad_group": ("lineItems", "line item")}
_TO_PLATFORM = {"active": "ENTITY_STATUS_ACTIVE", "paused": "ENTITY_STATUS_PAUSED"}
_FIXED = "LINE_ITEM_BUDGET_ALLOCATION_TYPE_FIXED"


class DV360Writer(HttpPlatformWriter):
    """Pause, resume and budgets of insertion orders (``campaign``) and line items (``ad_group``)."""

    connector: DV360Connector

    def __init__(self, connector: DV360Connector, journal: WriteJournal) -> None:
        super().__init__(connector, journal)
        self._owner: dict[tuple[str, str], str] = {}  # (level, id) -> advertiser id
        self._entity: dict[tuple[str, str], dict[str, Any]] = {}  # as last read, for apply

    def read(self, level: str, entity_id: str) -> EntityState:
        advertiser_id, entity = self._fetch(level, entity_id)
        return self._state(level, entity_id, entity, advertiser_id)

    def apply(self, level: str, entity_id: str, before: EntityState, change: dict[str, Any]) -> EntityState:
        collection, noun = _ENTITIES[level]
        advertiser_id, entity = self._owner[(level, entity_id)], self._entity[(level, entity_id)]
        if before.status == "archived":
            raise PermanentWriteError(f"dv360 {noun} {entity_id} is archived; DV360 does not change archived "
                                      "entities")
        body: dict[str, Any]
        if "status" in change:
            mask, body = "entityStatus", {"entityStatus": _TO_PLATFORM[change["status"]]}
        elif level == "campaign":
            segments = copy.deepcopy((entity.get("budget") or {}).get("budgetSegments") or [])
            index = current_segment(segments, self.connector.today(self.connector.advertiser(advertiser_id)))
            if index is None:  # the flight ended since read() (midnight passed)
                raise PermanentWriteError(f"dv360 {noun} {entity_id} has no budget segment left to change")
            segments[index]["budgetAmountMicros"] = _micros(change["budget"])
            mask, body = "budget.budgetSegments", {"budget": {"budgetSegments": segments}}
        else:
            mask = "budget.maxAmount"
            body = {"budget": {"budgetAllocationType": _FIXED, "maxAmount": _micros(change["budget"])}}
        what = f"{noun} {entity_id}: update {mask}"
        url = f"{self.connector.api_url}/advertisers/{advertiser_id}/{collection}/{entity_id}"
        response = self.client.request("PATCH", url, what=what, params={"updateMask": mask}, json=body)
        updated = self.client.decode(response, what)
        if not isinstance(updated, dict) or not updated.get("entityStatus"):
            raise MalformedResponseError(f"dv360 {what}: the answer is not the updated {noun}", platform="dv360")
        self._entity[(level, entity_id)] = updated
        return self._state(level, entity_id, updated, advertiser_id)

    def _fetch(self, level: str, entity_id: str) -> tuple[str, dict[str, Any]]:
        """The entity and its advertiser: the one it was found under before, else the first
        configured advertiser that has it."""
        if level == "ad":
            raise PermanentWriteError("dv360 creatives have no status or budget of their own; pause or resume "
                                      "their line item (level ad_group) instead")
        if level not in _ENTITIES:
            raise PermanentWriteError(f"level '{level}' cannot be changed; dv360 writes apply to campaign "
                                      "(insertion order) and ad_group (line item)")
        collection, noun = _ENTITIES[level]
        if not entity_id.isdigit():
            raise PermanentWriteError(f"'{entity_id}' is not a DV360 {noun} id (a number)")
        key = (level, entity_id)
        known = self._owner.get(key)
        for advertiser_id in [known] if known else self.connector.advertiser_ids:
            try:
                entity = self.client.get_json(
                    f"{self.connector.api_url}/advertisers/{advertiser_id}/{collection}/{entity_id}",
                    what=f"{noun} {entity_id}",
                    validate=lambda b: None if isinstance(b, dict) and b.get("entityStatus") else "no entityStatus")
            except AccessError as exc:
                if exc.status == 404:  # not this advertiser's: try the next one
                    continue
                raise
            self._owner[key], self._entity[key] = advertiser_id, entity
            return advertiser_id, entity
        raise PermanentWriteError(f"dv360 has no {noun} {entity_id} under the connection's advertisers "
                                  f"({', '.join(self.connector.advertiser_ids)}); check the id, or add its "
                                  "advertiser to the advertiser_ids setting")

    def _state(self, level: str, entity_id: str, entity: dict[str, Any], advertiser_id: str) -> EntityState:
        raw = str(entity.get("entityStatus"))
        status = STATUS.get(raw)
        if status is None:
            raise PermanentWriteError(f"dv360 {_ENTITIES[level][1]} {entity_id} has the status {raw}, which the "
                                      "workbench does not know")
        advertiser = self.connector.advertiser(advertiser_id)
        currency = self.connector.currency(advertiser)
        budget = entity.get("budget") or {}
        amount: Decimal | None = None
        if budget.get("budgetUnit", "BUDGET_UNIT_CURRENCY") == "BUDGET_UNIT_CURRENCY":
            if level == "campaign":
                segments = budget.get("budgetSegments") or []
                index = current_segment(segments, self.connector.today(advertiser))
                amount = None if index is None else _from_micros(segments[index].get("budgetAmountMicros"))
            elif budget.get("budgetAllocationType") == _FIXED:
                amount = _from_micros(budget.get("maxAmount"))
        return EntityState(status, amount, None if amount is None else "lifetime", currency)
