"""The Trade Desk: MyReports performance rows and campaigns (API v3), and campaign / ad group write-back.

Authentication: ``POST /authentication`` with ``{Login, Password, TokenExpirationInMinutes}``
returns ``{Token}``, sent as the ``TTD-Auth`` header. The token is stored with the connection
(``access_token``, ``expires_at``) and reused until it expires; a 401 mid-sync logs in again once.

Reading a window (settings ``advertiser_ids`` and ``report_template_id`` required):

- campaigns: ``POST /campaign/query/advertiser`` per advertiser, paged by ``PageStartIndex`` /
  ``PageSize`` (``page_size``, 100) until ``TotalFilteredCount`` objects are read; emitted as
  returned (stream ``ttd.campaigns``);
- performance (stream ``ttd.report_daily``), per chunk of ``chunk_days`` (31) days: a one-off
  report schedule on the template (``POST /myreports/reportschedule``, CSV, UTC, every configured
  advertiser), polled every ``poll_seconds`` (10) up to ``max_polls`` (360) times through
  ``POST /myreports/reportexecution/query/advertisers`` until the execution is ``Complete``; a
  ``Failed`` execution gets one new schedule, then a clear error. Each delivery's CSV is fetched
  from its presigned ``DownloadURL`` without the token (checked against the file's MD5 ``ETag``
  and for cut-off lines; a damaged file is fetched again), then the schedule is deleted. Rows are
  dicts keyed by the CSV headers with text values; empty cells are left out, so an optional
  column the template lacks (``Player Completed Views``) is simply absent.

Errors: 429 and 503 with ``Retry-After`` are throttles (the wait is honoured and shared through
the connection's limiter); a 400's ``Message`` / ``ErrorDetails`` becomes a ``RequestError``; a 403
or 404 names the advertisers the login cannot reach and those it can; a refused login says to
update the credentials. Write-back (``TtdWriter``): ``campaign`` (``GET /campaign/{id}``,
``PUT /campaign`` with ``Availability`` or the existing ``Budget`` / ``DailyBudget``) and
``ad_group`` (``GET /adgroup/{id}``, ``PUT /adgroup`` with ``IsEnabled`` or
``RTBAttributes.BudgetSettings``); budgets are in major units of the advertiser currency.
No token, password or presigned-URL signature reaches a message or a log line (httpx's own request
log lines lose their query strings).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
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
    TransientWriteError,
    Window,
    money,
)
from connectors.http import ApiClient, Auth, MalformedResponseError, stored_expiry
from connectors.platform import HttpPlatformWriter, PlatformConnector, WriteJournal, chunks
from workbench.errors import (
    AccessError,
    ApiError,
    AuthError,
    FinalApiError,
    RequestError,
    TransientApiError,
    ValidationError,
)

log = logging.getLogger("connectors.ttd")

REPORT_STREAM = "ttd.report_daily"
CAMPAIGN_STREAM = "ttd.campaigns"
PAGE_ROWS = 5000  # report rows per yielded page
TOKEN_MINUTES = 1440
STATUS = {"Available": "active", "Paused": "paused", "Archived": "archived"}
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MD5 = re.compile(r'^"?([0-9a-f]{32})"?$')
_UPDATE = "workbench connections add ttd --update"


class TtdLogin(Auth):
    """A TTD API token from the login and password, renewed when it expires or is refused."""

    header = "TTD-Auth"
    prefix = ""

    def __init__(self, login: str, password: str, *, token: str | None = None,
                 expires_at: float | None = None,
                 on_token: Callable[[dict[str, str]], None] | None = None) -> None:
        super().__init__(token, expires_at, on_token)
        self.login = login
        self.password = password

    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.password) if s]

    def fetch(self, client: ApiClient) -> tuple[str, float | None, dict[str, str]]:
        try:
            body = client.post_json("/authentication", what="authentication", auth=False, json={
                "Login": self.login, "Password": self.password,
                "TokenExpirationInMinutes": TOKEN_MINUTES})
        except (AuthError, AccessError) as exc:
            raise AuthError(f"ttd: the login or password was refused for login '{self.login}' "
                            f"(HTTP {exc.status}); update them with {_UPDATE}",
                            platform="ttd", status=exc.status) from None
        token = body.get("Token") if isinstance(body, dict) else None
        if not token:
            raise AuthError("ttd: the authentication answer carried no Token", platform="ttd")
        return str(token), time.time() + TOKEN_MINUTES * 60, {}


class TtdConnector(PlatformConnector):
    """The Trade Desk API v3: MyReports rows and campaign objects of the configured advertisers."""

    name: ClassVar[str] = "ttd"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec(REPORT_STREAM, "The Trade Desk MyReports rows"),
        StreamSpec(CAMPAIGN_STREAM, "The Trade Desk campaign objects", daily=False),
    )
    default_lookback_days: ClassVar[int] = 14
    capabilities: ClassVar[frozenset[str]] = frozenset({"read", "write", "async_reports"})
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("login", "The Trade Desk API login", secret=False),
        CredentialField("password", "The Trade Desk API password"),
    )
    default_base_url: ClassVar[str] = "https://api.thetradedesk.com/v3"
    default_rate: ClassVar[float] = 5.0  # TTD publishes no figure; its 429 Retry-After slows us further
    required_settings: ClassVar[tuple[str, ...]] = ("advertiser_ids", "report_template_id")

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        raw = self.config.settings["advertiser_ids"]
        ids = raw.split(",") if isinstance(raw, str) else list(raw)
        self.advertiser_ids = [str(a).strip() for a in ids if str(a).strip()]
        bad = [a for a in self.advertiser_ids if not _ID.match(a)]
        if bad or not self.advertiser_ids:
            raise ValidationError(f"ttd connection '{config.connection_id}': the setting advertiser_ids "
                                  f"needs advertiser ids (letters, digits), not {bad or raw!r}")

    def make_auth(self) -> Auth:
        creds = self.config.credentials
        return TtdLogin(creds["login"], creds["password"], token=creds.get("access_token"),
                        expires_at=stored_expiry(creds), on_token=self.store_credentials)

    def check(self, response: httpx.Response) -> ApiError | None:
        """A 400's ``Message`` says what was refused (a 503 with ``Retry-After`` is a throttle in the client)."""
        status = response.status_code
        if status == 400:
            try:
                body = response.json()
            except ValueError:
                return None
            if isinstance(body, dict) and body.get("Message"):
                details = "; ".join(
                    f"{d.get('Property') or 'request'}: {' '.join(map(str, d.get('Reasons') or []))}"
                    for d in body.get("ErrorDetails") or [] if isinstance(d, dict))
                text = (f"ttd {response.request.method} {response.request.url.path} was refused: "
                        f"{body['Message']}" + (f" ({details})" if details else "")
                        + "; check the ids in the connection's settings (advertiser_ids, report_template_id)")
                return RequestError(self.client.mask(text), status=status)
        return None

    # -- settings ------------------------------------------------------------------------------

    def _int(self, name: str, default: int) -> int:
        return int(self.number_setting(name, default, 1))

    @property
    def template_id(self) -> int | str:
        value = str(self.config.settings["report_template_id"]).strip()
        return int(value) if value.isdigit() else value

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: Window) -> Iterator[Page]:
        """Campaigns of every advertiser, then the report rows of ``window`` chunk by chunk."""
        for advertiser in self.advertiser_ids:
            for result in self._paged("/campaign/query/advertiser", {"AdvertiserId": advertiser},
                                      what=f"campaigns of advertiser {advertiser}", advertisers=[advertiser]):
                yield Page(CAMPAIGN_STREAM, result)
        for chunk in chunks(window, self._int("chunk_days", 31)):
            rows = self._report(chunk)
            for row in rows:
                if row.get("Advertiser ID"):
                    self.coverage.add(row["Advertiser ID"], _day(row.get("Date")))
            for i in range(0, len(rows), PAGE_ROWS):
                yield Page(REPORT_STREAM, rows[i:i + PAGE_ROWS])

    def _post(self, path: str, body: dict[str, Any], *, what: str, advertisers: Sequence[str],
              validate: Callable[[Any], str | None] | None = None) -> Any:
        try:
            return self.client.post_json(path, what=what, json=body, validate=validate)
        except AccessError as exc:
            raise self._unreachable(advertisers, what, exc) from None

    def _paged(self, path: str, query: dict[str, Any], *, what: str,
               advertisers: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        """``Result`` lists of a TTD query, page after page, until ``TotalFilteredCount`` is read."""
        size, start = self._int("page_size", 100), 0
        while True:
            body = self._post(path, {**query, "PageStartIndex": start, "PageSize": size},
                              what=f"{what} (from {start})", advertisers=advertisers, validate=_page_problem)
            result = body["Result"]
            if result:
                yield result
            start += len(result)
            if not result or start >= int(body["TotalFilteredCount"]):
                return

    def _report(self, chunk: Window) -> list[dict[str, str]]:
        """The rows of one report over ``chunk``: a schedule, polls, the files; one retry on Failed."""
        what = f"report {chunk.start}..{chunk.end}"
        failed: list[str] = []
        for _ in range(2):
            schedule = self._schedule(chunk, what)
            try:
                deliveries = self._wait(schedule, what)
                if deliveries is not None:
                    return [row for d in deliveries for row in self._download(d, what)]
                failed.append(str(schedule))
                log.warning("ttd %s: execution of schedule %s failed", what, schedule)
            finally:
                self._delete(schedule)
        raise TransientApiError(
            f"ttd {what} failed twice (report schedules {' and '.join(failed)}, template "
            f"{self.template_id}); run again later, and if it keeps failing check the template in "
            "MyReports (setting report_template_id) or lower chunk_days", platform=self.name)

    def _schedule(self, chunk: Window, what: str) -> Any:
        end = chunk.end + dt.timedelta(days=1)
        body = self._post("/myreports/reportschedule", {
            "ReportScheduleName": f"workbench {self.config.connection_id} {chunk.start}..{chunk.end}",
            "ReportTemplateId": self.template_id, "ReportFileFormat": "CSV", "ReportDateRange": "Custom",
            "ReportStartDateInclusive": f"{chunk.start.isoformat()}T00:00:00",
            "ReportEndDateExclusive": f"{end.isoformat()}T00:00:00", "ReportFrequency": "Once",
            "TimeZone": "UTC", "ReportDateFormat": "International", "ReportNumericFormat": "US",
            "IncludeHeaders": True, "AdvertiserFilters": self.advertiser_ids,
        }, what=f"{what}: schedule", advertisers=self.advertiser_ids,
            validate=lambda b: None if isinstance(b, dict) and b.get("ReportScheduleId") is not None
            else "no ReportScheduleId")
        log.info("ttd %s: report schedule %s created", what, body["ReportScheduleId"])
        return body["ReportScheduleId"]

    def _wait(self, schedule: Any, what: str) -> list[dict[str, Any]] | None:
        """The deliveries once every execution of ``schedule`` is Complete; None when one Failed."""
        polls, pause = self._int("max_polls", 360), self.number_setting("poll_seconds", 10)
        for _ in range(polls):
            time.sleep(pause)  # a report is never ready at once: wait before each poll
            executions = [e for page in self._paged(
                "/myreports/reportexecution/query/advertisers",
                {"AdvertiserIds": self.advertiser_ids, "ReportScheduleIds": [schedule]},
                what=f"{what}: status", advertisers=self.advertiser_ids)
                for e in page if e.get("ReportScheduleId", schedule) == schedule]
            states = {e.get("ReportExecutionState") for e in executions}
            if "Failed" in states:
                return None
            if executions and states == {"Complete"}:
                deliveries = [d for e in executions for d in e.get("ReportDeliveries") or []]
                if not any(d.get("DownloadURL") for d in deliveries):
                    raise TransientApiError(f"ttd {what}: the report is Complete but has no DownloadURL; "
                                            "run again later", platform=self.name)
                return deliveries
        raise TransientApiError(
            f"ttd {what}: the report was not complete after {polls} polls {pause:g} s apart; run again "
            "later, or raise max_polls / lower chunk_days", platform=self.name)

    def _download(self, delivery: dict[str, Any], what: str) -> list[dict[str, str]]:
        """The rows of one delivered CSV; a damaged file is fetched again like a transient error."""
        url = delivery.get("DownloadURL")
        if not url:
            return []
        what = f"{what}: file {delivery.get('DeliveredPath') or ''}".rstrip()
        # the presigned URL is its own credential: no TTD-Auth header goes to the file host
        return self.client.fetch("GET", str(url), what=what, auth=False,
                                 parse=lambda response: parse_csv(response, what))

    def _delete(self, schedule: Any) -> None:
        try:
            self.client.request("DELETE", f"/myreports/reportschedule/{schedule}",
                                what=f"deletion of report schedule {schedule}")
        except ApiError as exc:  # a leftover one-off schedule is harmless; never fail a run for it
            log.info("ttd: report schedule %s not deleted: %s", schedule, exc)

    # -- accounts and access -------------------------------------------------------------------

    def _advertiser(self, advertiser: str) -> dict[str, Any]:
        return self.client.get_json(f"/advertiser/{advertiser}", what=f"advertiser {advertiser}",
                                    validate=lambda b: None if isinstance(b, dict) else "not an object")

    def accounts(self) -> list[Account]:
        """The configured advertisers (``GET /advertiser/{id}``); an unreachable one is an AccessError."""
        found: list[Account] = []
        missing: list[str] = []
        for advertiser in self.advertiser_ids:
            try:
                body = self._advertiser(advertiser)
            except AccessError:
                missing.append(advertiser)
                continue
            found.append(Account(str(body.get("AdvertiserId") or advertiser), str(body.get("AdvertiserName") or ""),
                                 body.get("CurrencyCode"), STATUS.get(str(body.get("Availability")))))
        if missing:
            raise AccessError(self._reach_message(missing, [a.id for a in found]), platform=self.name, status=403)
        return found

    def _unreachable(self, advertisers: Sequence[str], what: str, exc: AccessError) -> AccessError:
        """The error of a 403/404: which advertisers the login cannot reach, or which permission it lacks."""
        reachable = []
        for advertiser in self.advertiser_ids:
            try:
                self._advertiser(advertiser)
                reachable.append(advertiser)
            except ApiError:  # unknown counts as unreachable: this only words the error
                pass
        blocked = [a for a in advertisers if a not in reachable]
        if blocked:
            message = self._reach_message(blocked, reachable)
        else:
            message = (f"ttd {what}: HTTP {exc.status}: the login '{self.config.credentials['login']}' reaches "
                       f"advertiser(s) {', '.join(advertisers)} but may not make this call; ask a TTD admin "
                       "to grant the API user the permission (MyReports reporting, campaign read)")
        return AccessError(message, platform=self.name, status=exc.status)

    def _reach_message(self, blocked: Sequence[str], reachable: Sequence[str]) -> str:
        return (f"ttd: the login '{self.config.credentials['login']}' cannot reach advertiser(s) "
                f"{', '.join(blocked)}; ask a TTD admin to give the API user access, or fix the setting "
                f"advertiser_ids. Of the configured advertisers it reaches: {', '.join(reachable) or 'none'}")

    def writer(self, journal: WriteJournal) -> TtdWriter:
        """Pause, resume and budgets of campaigns and ad groups."""
        return TtdWriter(self, journal)


# -- write-back ------------------------------------------------------------------------------

_RESOURCES = {"campaign": ("campaign", "CampaignId"), "ad_group": ("adgroup", "AdGroupId")}


class TtdWriter(HttpPlatformWriter):
    """Campaigns (``Availability``, ``Budget`` / ``DailyBudget``) and ad groups (``IsEnabled``,
    ``RTBAttributes.BudgetSettings``)."""

    def _resource(self, level: str, entity_id: str) -> tuple[str, str]:
        if level not in _RESOURCES:
            raise PermanentWriteError(f"ttd write-back changes campaigns and ad groups, not '{level}' "
                                      "(creatives have no status of their own: pause their ad group)")
        if not _ID.match(entity_id):
            raise PermanentWriteError(f"'{entity_id}' is not a TTD {level} id")
        return _RESOURCES[level]

    def read(self, level: str, entity_id: str) -> EntityState:
        resource, _ = self._resource(level, entity_id)
        try:
            body = self.client.get_json(f"/{resource}/{entity_id}", what=f"{level} {entity_id}",
                                        validate=lambda b: None if isinstance(b, dict) else "not an object")
        except TransientApiError as exc:
            raise TransientWriteError(str(exc), retry_after=exc.retry_after) from None
        except AccessError as exc:
            if exc.status == 404:
                raise PermanentWriteError(f"ttd has no {level} '{entity_id}' this login can see; "
                                          "check the id") from None
            raise PermanentWriteError(str(exc)) from None
        except FinalApiError as exc:
            raise PermanentWriteError(str(exc)) from None
        return entity_state(level, body)

    def apply(self, level: str, entity_id: str, before: EntityState, change: dict[str, Any]) -> EntityState:
        resource, id_key = self._resource(level, entity_id)
        if before.status == "archived":
            raise PermanentWriteError(f"ttd {level} {entity_id} is archived: it cannot be paused, resumed "
                                      "or given a budget")
        body: dict[str, Any] = {id_key: entity_id}
        if "status" in change:
            active = change["status"] == "active"
            if level == "campaign":
                body["Availability"] = "Available" if active else "Paused"
            else:
                body["IsEnabled"] = active
        else:
            key = "Budget" if before.budget_type == "lifetime" else "DailyBudget"
            amount = {"Amount": float(money(change["budget"])), "CurrencyCode": before.currency}
            body.update({key: amount} if level == "campaign"
                        else {"RTBAttributes": {"BudgetSettings": {key: amount}}})
        what = f"update of {level} {entity_id}"
        return entity_state(level, self.client.decode(
            self.client.request("PUT", f"/{resource}", what=what, json=body), what))


def entity_state(level: str, body: dict[str, Any]) -> EntityState:
    """A campaign or ad group object in canonical terms (a lifetime budget wins over a daily one)."""
    availability = body.get("Availability")
    if level == "campaign" or availability == "Archived":
        if availability not in STATUS:
            raise PermanentWriteError(f"ttd {level} has an unknown Availability {availability!r}")
        status = STATUS[str(availability)]
    else:
        status = "active" if body.get("IsEnabled") else "paused"
    holder = body if level == "campaign" else ((body.get("RTBAttributes") or {}).get("BudgetSettings") or {})
    for key, kind in (("Budget", "lifetime"), ("DailyBudget", "daily")):
        value = holder.get(key)
        if isinstance(value, dict) and value.get("Amount") is not None:
            return EntityState(status, money(value["Amount"]), kind, value.get("CurrencyCode"))
    return EntityState(status)


# -- payload helpers ---------------------------------------------------------------------------

def _page_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("Result"), list):
        return "no Result list"
    if not isinstance(body.get("TotalFilteredCount"), int):
        return "no TotalFilteredCount"
    return None


def parse_csv(response: httpx.Response, what: str) -> list[dict[str, str]]:
    """Rows of a MyReports CSV keyed by its headers, empty cells left out. A file whose MD5 differs
    from its ``ETag``, that ends mid-line or whose rows do not match the header is damaged."""
    content = response.content
    etag = _MD5.match(response.headers.get("ETag", ""))
    if etag and hashlib.md5(content).hexdigest() != etag.group(1):
        raise MalformedResponseError(f"ttd {what}: the file does not match its checksum ({len(content)} bytes)",
                                     platform="ttd")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:  # cut inside a character
        raise MalformedResponseError(f"ttd {what}: the file is not valid UTF-8", platform="ttd") from None
    if not text.strip():
        raise MalformedResponseError(f"ttd {what}: the file is empty, not even a header line", platform="ttd")
    if not text.endswith(("\n", "\r")):
        raise MalformedResponseError(f"ttd {what}: the file ends mid-line ({len(content)} bytes)", platform="ttd")
    lines = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(lines, [])]
    rows = []
    for number, values in enumerate(lines, start=2):
        if not values:
            continue
        if len(values) != len(header):
            raise MalformedResponseError(f"ttd {what}: line {number} has {len(values)} fields, the header "
                                         f"{len(header)}", platform="ttd")
        rows.append({k: v for k, v in zip(header, values, strict=True) if v != ""})
    return rows


def _day(value: str | None) -> dt.date | None:
    """The reporting date of ``2026-11-24T00:00:00`` or ``2026-11-24``; None otherwise."""
    try:
        return dt.date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None
