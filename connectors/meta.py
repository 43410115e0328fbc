"""Meta Marketing API (Graph API v21.0): ad Insights, campaign objects and campaign write-back.

Reading, per ad account (the ``account_ids`` setting, else every account ``GET /me/adaccounts``
lists):

- ``GET /{act}?fields=id,account_id,name,currency,account_status``: the account's currency
  (campaign objects carry none) and, when the token cannot reach it, an error naming the
  account and the accounts the token does reach;
- ``GET /{act}/campaigns`` -> stream ``meta.campaigns`` (campaign objects plus
  ``account_currency``);
- Insights as async jobs, one per ``chunk_days``: ``POST /{act}/insights`` (``level=ad``,
  ``time_increment=1``, ``time_range``, ``action_breakdowns=["action_type"]`` and
  ``use_unified_attribution_setting=true`` so totals match Ads Manager, or the
  ``action_attribution_windows`` the ``attribution`` setting names) -> ``report_run_id``; poll
  ``GET /{run}`` every ``poll_seconds`` for ``async_status`` / ``async_percent_completion``; read
  ``GET /{run}/insights`` -> stream ``meta.ad_insights_daily``. A job that fails, is skipped or
  shows no progress for ``stall_polls`` polls is split in halves and each half run again, down
  to one day; a single day that still fails stops the run naming the account and the day.

Paging: cursors (``limit`` = ``page_size``; the next page is asked with ``after`` =
``paging.cursors.after``; ``paging.next`` only says there is one, and is not followed because
Meta writes the caller's access token into it). Records land exactly as Meta sends them.

Throttling (``check``): ``X-Business-Use-Case-Usage``, ``X-Ad-Account-Usage`` and
``X-FB-Ads-Insights-Throttle`` at or above ``usage_threshold_pct`` (90) pause the connection's
limiter for the stated time to regain access (else ``usage_pause_seconds``); error codes 4, 17,
32, 341, 613 and 80000-80014 are throttles retried after ``estimated_time_to_regain_access``
(else ``throttle_wait_seconds``), a stop with the time to run again when that is longer than
``max_wait_seconds``. Code 190 is a final ``AuthError`` (tokens do not refresh: make a new one),
10 and 200-299 a missing permission, 100 a bad request, 1 and 2 (and ``is_transient``) transient.

Write-back (``MetaWriter``): campaigns, ad sets (``ad_group``) and ads (status only). ``GET
/{id}?fields=status,daily_budget,lifetime_budget,account_id`` plus the account's currency
(cached) gives the state; ``POST /{id}`` with ``status=PAUSED|ACTIVE`` or the same budget type
in minor units (``ZERO_DECIMAL_CURRENCIES`` have none) changes it, sent once (never retried
blindly: a retry with the idempotency key reads the state first).

Settings: ``account_ids``, ``chunk_days`` (7), ``poll_seconds`` (5), ``stall_polls`` (60),
``attribution`` ("unified" or windows such as ``7d_click,1d_view``), ``page_size`` (500),
``throttle_wait_seconds`` (60), ``usage_threshold_pct`` (90), ``usage_pause_seconds`` (60),
``breakdowns`` (e.g. ``publisher_platform,age``: each row's values become its silver ``breakdown``,
part of the natural key, so broken-down rows never collapse),
``conversion_action_types`` (read by the silver parser), and the shared ones
(``base_url``, ``requests_per_second``, retry policy, ``start_date``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

import httpx

from connectors.base import (
    WRITE_LEVELS,
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
from connectors.http import ApiClient, Auth
from connectors.platform import HttpPlatformWriter, PlatformConnector, WriteJournal, chunks
from workbench.errors import (
    AccessError,
    ApiError,
    AuthError,
    FinalApiError,
    RequestError,
    ThrottledError,
    TransientApiError,
    ValidationError,
)
from workbench.medallion.parsers.meta import BREAKDOWNS, ZERO_DECIMAL_CURRENCIES

log = logging.getLogger("connectors.meta")

INSIGHTS_STREAM = "meta.ad_insights_daily"
CAMPAIGNS_STREAM = "meta.campaigns"
INSIGHT_FIELDS = ("account_id", "account_name", "account_currency", "campaign_id", "campaign_name",
                  "adset_id", "adset_name", "ad_id", "ad_name", "spend", "impressions", "clicks",
                  "reach", "actions", "action_values", "video_thruplay_watched_actions", "date_start",
                  "date_stop")
CAMPAIGN_FIELDS = ("id", "account_id", "name", "status", "effective_status", "objective", "buying_type",
                   "daily_budget", "lifetime_budget", "start_time", "stop_time", "created_time",
                   "updated_time", "adlabels")
ATTRIBUTION_WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view", "7d_view", "28d_view",
                       "1d_ev", "dda", "skan_click", "skan_view")
DONE, FAILED, SKIPPED = "Job Completed", "Job Failed", "Job Skipped"
STALLED = "stalled"  # ours: no progress for stall_polls polls

THROTTLE_CODES = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
AUTH_CODES = frozenset({102, 190})
PERMISSION_CODES = frozenset({10, *range(200, 300)})

# ad account_status codes (Marketing API AdAccount reference)
ACCOUNT_STATUS = {1: "active", 2: "disabled", 3: "unsettled", 7: "pending_risk_review",
                  8: "pending_settlement", 9: "in_grace_period", 100: "pending_closure", 101: "closed"}
ENTITY_STATUS = {"ACTIVE": "active", "PAUSED": "paused", "ARCHIVED": "archived", "DELETED": "archived"}
_ENTITY_FIELDS = {"campaign": "status,daily_budget,lifetime_budget,account_id",
                  "ad_group": "status,daily_budget,lifetime_budget,account_id",
                  "ad": "status,account_id"}
_LEVEL_NAMES = {"campaign": "campaign", "ad_group": "ad set", "ad": "ad"}
_ACT = re.compile(r"^act_\d+$")
_NODE_ID = re.compile(r"^\d+$")


class InsightsJobError(TransientApiError):
    """An Insights job kept failing for a single day: the run stops; a later run may succeed."""


class MetaToken(Auth):
    """A long-lived user or system-user token in ``Authorization: Bearer``; Meta has no refresh."""

    def __init__(self, token: str, org_id: str,
                 on_token: Callable[[dict[str, str]], None] | None = None) -> None:
        super().__init__(token, on_token=on_token)
        self.org_id = org_id

    def fetch(self, client: ApiClient) -> tuple[str, float | None, dict[str, str]]:
        raise AuthError(token_refused(self.org_id, "HTTP 401"), platform=client.platform)


def token_refused(org_id: str, detail: str) -> str:
    return (f"Meta refused the access token ({detail}): it expired, was revoked or its user lost "
            "access to the ad accounts. Create a new token (a system-user token does not expire) "
            "with ads_read (and ads_management to change campaigns), then update the connection: "
            f"workbench connections add meta --org {org_id} --update")


class MetaConnector(PlatformConnector):
    """Meta ad Insights (level=ad, daily) and campaign objects of one or more ad accounts."""

    name: ClassVar[str] = "meta"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec(INSIGHTS_STREAM, "Meta Insights rows, level=ad, time_increment=1"),
        StreamSpec(CAMPAIGNS_STREAM, "Meta Graph API campaign objects", daily=False),
    )
    default_lookback_days: ClassVar[int] = 28
    capabilities: ClassVar[frozenset[str]] = frozenset({"read", "write", "async_reports"})
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("access_token", "Meta access token (long-lived user or system-user token with "
                                        "ads_read; ads_management to change campaigns)"),
    )
    default_base_url: ClassVar[str] = "https://graph.facebook.com/v21.0"
    default_rate: ClassVar[float] = 4.0

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        s = config.settings
        self.account_ids = _account_ids(s.get("account_ids"))
        self.chunk_days = int(self.number_setting("chunk_days", 7, 1))
        self.poll_seconds = self.number_setting("poll_seconds", 5, 0)
        self.stall_polls = int(self.number_setting("stall_polls", 60, 1))
        self.page_size = int(self.number_setting("page_size", 500, 1))
        self.throttle_wait = self.number_setting("throttle_wait_seconds", 60, 0)
        self.usage_threshold = self.number_setting("usage_threshold_pct", 90, 1)
        self.usage_pause = self.number_setting("usage_pause_seconds", 60, 0)
        self.attribution = _attribution(s.get("attribution"))
        self.breakdowns = _breakdowns(s.get("breakdowns"))
        self.currencies: dict[str, str] = {}  # "act_..." -> ISO code, for campaigns and write-back

    # -- client ------------------------------------------------------------------------------

    def make_auth(self) -> Auth:
        return MetaToken(self.config.credentials["access_token"], self.config.org_id,
                         on_token=self.store_credentials)


    def check(self, response: httpx.Response) -> ApiError | None:
        """Slow down on high usage headers; map Graph API error codes to the right error."""
        stated = self._watch_usage(response.headers)
        if response.is_success:
            return None
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        text = " ".join(str(error.get("message") or "").split())[:300]
        where = f"{response.request.method} {response.request.url.path}"
        detail = self.client.mask(f"meta {where}: error {code}" + (f"/{subcode}" if subcode else "")
                                  + f": {text}" + (f" (fbtrace_id {error['fbtrace_id']})"
                                                   if error.get("fbtrace_id") else ""))
        status = response.status_code
        if code in AUTH_CODES:
            return AuthError(token_refused(self.config.org_id, detail), status=status)
        if code in PERMISSION_CODES:
            return AccessError(f"{detail}. The token lacks a permission: it needs ads_read to read "
                               "reports (ads_management to change campaigns) on this ad account; grant "
                               "it in Business Settings, then create a new token and update the "
                               f"connection (workbench connections add meta --org {self.config.org_id} "
                               "--update)", status=status)
        if code in THROTTLE_CODES:
            wait = stated or self.throttle_wait
            return ThrottledError(f"{detail}; Meta asks to slow down (for {wait:g} s)", status=status,
                                  retry_after=wait)
        if code in TRANSIENT_CODES or error.get("is_transient") is True:
            return TransientApiError(detail, status=status)
        if code == 100:
            return RequestError(f"{detail}. Meta refused the request (a bad field, value or id)",
                                status=status)
        return None

    def _watch_usage(self, headers: httpx.Headers) -> float:
        """Pause the limiter while a usage header is at the threshold (for the time it states to
        regain access, else ``usage_pause_seconds``); return the seconds until access returns that
        a header states (0: none)."""
        usages: list[tuple[float, float]] = []  # (percent used, seconds until access returns; 0 unknown)
        for entries in _json_header(headers.get("x-business-use-case-usage")).values():
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict):
                    usages.append((max(_float(entry.get(k)) for k in ("call_count", "total_cputime", "total_time")),
                                   _float(entry.get("estimated_time_to_regain_access")) * 60))
        account = _json_header(headers.get("x-ad-account-usage"))
        usages.append((_float(account.get("acc_id_util_pct")), _float(account.get("reset_time_duration"))))
        insights = _json_header(headers.get("x-fb-ads-insights-throttle"))
        usages.append((max(_float(insights.get("app_id_util_pct")), _float(insights.get("acc_id_util_pct"))), 0.0))
        # BUC states a time to regain access only when blocked; the others' reset times matter near the limit
        high = [(used, wait) for used, wait in usages if used >= self.usage_threshold]
        stated = max([wait for _, wait in high] + [wait for _, wait in usages[:-2]], default=0.0)
        if high:
            pause = max(wait or self.usage_pause for _, wait in high)
            used = max(u for u, _ in high)
            # a longer block is not slept through: Meta's next throttle code stops the run, saying
            # when to run again, instead of a silent pause that would hold writes back too
            if pause <= self.client.policy.max_wait:
                log.info("meta: API usage at %.0f%%; pausing calls for %g s", used, pause)
                self.client.limiter.pause(pause)
            else:
                log.warning("meta: API usage at %.0f%%; Meta states %.0f min until access returns", used, pause / 60)
        return stated

    # -- accounts ----------------------------------------------------------------------------

    def accounts(self) -> list[Account]:
        """The ad accounts the token reaches (``GET /me/adaccounts``)."""
        out = []
        for rows in self._paged("/me/adaccounts", {"fields": "id,name,currency,account_status"},
                                "ad accounts of the token"):
            for row in rows:
                account = Account(str(row["id"]), str(row.get("name") or ""), row.get("currency"),
                                  ACCOUNT_STATUS.get(_int(row.get("account_status")) or 0))
                if account.currency:
                    self.currencies[account.id] = account.currency
                out.append(account)
        return out

    def _targets(self) -> list[str]:
        """The "act_..." ids to read, each checked to be reachable and its currency known."""
        if not self.account_ids:
            reached = [a.id for a in self.accounts()]
            if not reached:
                raise AccessError("the Meta token reaches no ad account: grant its user (or system user) "
                                  "access to the ad accounts in Business Settings", platform=self.name)
            return reached
        for act in self.account_ids:
            self.account_currency(act)
        return list(self.account_ids)

    def account_currency(self, act: str) -> str:
        """The ad account's currency (cached), or an error naming what the token reaches."""
        if act not in self.currencies:
            try:
                body = self.client.get_json(f"/{act}", what=f"ad account {act}",
                                            params={"fields": "id,account_id,name,currency,account_status"},
                                            validate=lambda b: _missing(b, "currency"))
            except (RequestError, AccessError) as exc:
                raise AccessError(self._unreachable(act, exc), platform=self.name, status=exc.status) from None
            self.currencies[act] = str(body["currency"])
        return self.currencies[act]

    def _unreachable(self, act: str, exc: ApiError) -> str:
        try:
            reached = ", ".join(f"{a.id} ({a.name})" for a in self.accounts()) or "none"
        except ApiError:
            reached = "(could not list them)"
        return (f"ad account {act} is unknown to this Meta token or the token lacks ads_read on it "
                f"({exc}). The token reaches: {reached}. Fix the account_ids setting "
                f"(workbench connections add meta --org {self.config.org_id} --update -s account_ids=...) "
                "or grant the token's user access to the account")

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: Window) -> Iterator[Page]:
        """Per account: its campaign objects, then Insights rows in ``chunk_days`` async jobs."""
        for act in self._targets():
            yield from self._campaigns(act)
            for chunk in chunks(window, self.chunk_days):
                yield from self._insights(act, chunk)

    def _campaigns(self, act: str) -> Iterator[Page]:
        currency = self.account_currency(act)
        for rows in self._paged(f"/{act}/campaigns", {"fields": ",".join(CAMPAIGN_FIELDS)},
                                f"campaigns of {act}"):
            if rows:  # campaign objects have no currency; silver needs it for the budgets
                yield Page(CAMPAIGNS_STREAM, [{**row, "account_currency": currency} for row in rows])

    def _insights(self, act: str, window: Window) -> Iterator[Page]:
        what = f"insights of {act} for {_span(window)}"
        run = self.client.post_json(f"/{act}/insights", what=what, data=self._job_params(window),
                                    validate=lambda b: _missing(b, "report_run_id"))
        run_id = str(run["report_run_id"])
        outcome = self._wait(run_id, what)
        if outcome == DONE:
            for rows in self._paged(f"/{run_id}/insights", {}, what):
                for row in rows:
                    self.coverage.add(str(row.get("account_id") or act), _day(row.get("date_start")))
                if rows:
                    yield Page(INSIGHTS_STREAM, rows)
            return
        if window.days == 1:
            raise InsightsJobError(
                f"meta {what}: the Insights job ended '{outcome}' even for this single day, so the run "
                "stopped and nothing of it landed; Meta often recovers within hours: sync again later "
                "(if the day keeps failing, sync around it with --from/--to)", platform=self.name)
        first = Window(window.start, window.start + dt.timedelta(days=(window.days - 1) // 2))
        halves = (first, Window(first.end + dt.timedelta(days=1), window.end))
        log.warning("meta: %s: job %s ended '%s'; running %s and %s separately", what, run_id, outcome,
                    _span(halves[0]), _span(halves[1]))
        for half in halves:
            yield from self._insights(act, half)

    def _job_params(self, window: Window) -> dict[str, str]:
        params = {"level": "ad", "time_increment": "1", "fields": ",".join(INSIGHT_FIELDS),
                  "time_range": json.dumps({"since": window.start.isoformat(), "until": window.end.isoformat()}),
                  # explicit: the default breakdowns give totals that differ from Ads Manager
                  "action_breakdowns": json.dumps(["action_type"])}
        if self.breakdowns:  # each value lands in the row, and in silver's key: rows never collapse
            params["breakdowns"] = json.dumps(self.breakdowns)
        if self.attribution:
            params["action_attribution_windows"] = json.dumps(self.attribution)
        else:
            params["use_unified_attribution_setting"] = "true"
        return params

    def _wait(self, run_id: str, what: str) -> str:
        """Poll the job until it ends; STALLED when it shows no progress for ``stall_polls`` polls."""
        last: tuple[Any, Any] | None = None
        still = 0
        while True:
            time.sleep(self.poll_seconds)
            job = self.client.get_json(f"/{run_id}", what=f"{what} (job {run_id})",
                                       params={"fields": "id,async_status,async_percent_completion"},
                                       validate=lambda b: _missing(b, "async_status"))
            status = str(job["async_status"])
            if status in (DONE, FAILED, SKIPPED):
                return status
            progress = (status, job.get("async_percent_completion"))
            still = still + 1 if progress == last else 0
            last = progress
            if still >= self.stall_polls:
                return STALLED

    def _paged(self, path: str, params: Mapping[str, Any], what: str) -> Iterator[list[dict[str, Any]]]:
        """The ``data`` of every page of a cursor-paged edge."""
        after: str | None = None
        while True:
            query = {**params, "limit": self.page_size, **({"after": after} if after else {})}
            body = self.client.get_json(path, what=what, params=query, validate=_page_problem)
            yield list(body["data"])
            paging = body.get("paging") or {}
            if not paging.get("next"):
                return
            after = str(paging["cursors"]["after"])

    # -- write-back ----------------------------------------------------------------------------

    def writer(self, journal: WriteJournal) -> MetaWriter:
        return MetaWriter(self, journal)


class MetaWriter(HttpPlatformWriter):
    """Pause, resume and budgets of Meta campaigns, ad sets (``ad_group``) and ads (status)."""

    connector: MetaConnector

    def read(self, level: str, entity_id: str) -> EntityState:
        fields = _ENTITY_FIELDS.get(level)
        if fields is None:
            raise PermanentWriteError(f"meta cannot change a '{level}'; levels: {', '.join(WRITE_LEVELS)}")
        if not _NODE_ID.match(entity_id):
            raise PermanentWriteError(f"'{entity_id}' is not a Meta {_LEVEL_NAMES[level]} id (digits only)")
        try:
            body = self.client.get_json(f"/{entity_id}", what=f"{_LEVEL_NAMES[level]} {entity_id}",
                                        params={"fields": fields}, validate=lambda b: _missing(b, "status"))
            currency = self.connector.account_currency(f"act_{body.get('account_id')}")
        except TransientApiError as exc:
            raise TransientWriteError(str(exc), retry_after=exc.retry_after) from None
        except AuthError as exc:
            raise PermanentWriteError(str(exc)) from None
        except FinalApiError as exc:
            raise PermanentWriteError(f"meta {_LEVEL_NAMES[level]} {entity_id} does not exist or this "
                                      f"connection's token cannot reach it ({exc})") from None
        status = ENTITY_STATUS.get(str(body["status"]).upper(), str(body["status"]).lower())
        for budget_type in ("daily", "lifetime"):
            minor = _int(body.get(f"{budget_type}_budget")) or 0
            if minor > 0:  # an ad set under a campaign budget reports none (or "0")
                return EntityState(status, money(Decimal(minor) / _offset(currency)), budget_type, currency)
        return EntityState(status, currency=currency)

    def apply(self, level: str, entity_id: str, before: EntityState, change: dict[str, Any]) -> EntityState:
        what = f"{_LEVEL_NAMES[level]} {entity_id}"
        if "status" in change:
            if before.status == "archived":
                raise PermanentWriteError(f"meta {what} is archived or deleted: it cannot be paused or resumed")
            data = {"status": "PAUSED" if change["status"] == "paused" else "ACTIVE"}
        else:
            offset = _offset(before.currency or "")
            minor = (money(change["budget"]) * offset).quantize(Decimal(1), rounding=ROUND_HALF_UP)
            data = {f"{before.budget_type}_budget": str(minor)}
        # one attempt: a write whose answer was lost is re-read through the journal, not re-sent
        body = self.client.post_json(f"/{entity_id}", what=f"update of {what}", data=data, attempts=1)
        if not (isinstance(body, dict) and body.get("success") is True):
            raise TransientWriteError(f"meta did not confirm the update of {what}; retry with the same "
                                      "idempotency key (the retry reads the state first)")
        return self.read(level, entity_id)


# -- helpers ---------------------------------------------------------------------------------

def _account_ids(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in (str(i).strip() for i in items):
        act = f"act_{item}" if item.isdigit() else item
        if not _ACT.match(act):
            raise ValidationError(f"the account_ids setting holds '{item}', not a Meta ad account id "
                                  "(act_ followed by digits, as in Ads Manager's URL)")
        out.append(act)
    return tuple(dict.fromkeys(out))


def _attribution(value: Any) -> tuple[str, ...]:
    """() for the ad sets' own (unified) attribution setting, else the windows asked for."""
    if value in (None, "", "unified"):
        return ()
    windows = tuple(w.strip() for w in (value.split(",") if isinstance(value, str) else value))
    unknown = [w for w in windows if w not in ATTRIBUTION_WINDOWS]
    if unknown:
        raise ValidationError(f"the attribution setting holds {', '.join(unknown)}; use 'unified' (Ads "
                              f"Manager's numbers) or windows among {', '.join(ATTRIBUTION_WINDOWS)}")
    return windows


def _breakdowns(value: Any) -> list[str]:
    """The Insights breakdowns asked for (``breakdowns`` setting: a list or comma text)."""
    if value in (None, ""):
        return []
    names = [b.strip() for b in (value.split(",") if isinstance(value, str) else value) if b.strip()]
    unknown = [b for b in names if b not in BREAKDOWNS]
    if unknown:
        raise ValidationError(f"the breakdowns setting holds {', '.join(unknown)}; choose among "
                              f"{', '.join(BREAKDOWNS)}")
    return names


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _json_header(value: str | None) -> dict[str, Any]:
    try:
        parsed = json.loads(value) if value else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _missing(body: Any, key: str) -> str | None:
    return None if isinstance(body, dict) and body.get(key) is not None else f"no '{key}' in the answer"


def _page_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return "no 'data' list"
    paging = body.get("paging") or {}
    if paging.get("next") and not (paging.get("cursors") or {}).get("after"):
        return "a next page without an 'after' cursor"
    return None


def _day(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None  # a row without a date is the silver checks' business


def _span(window: Window) -> str:
    return window.start.isoformat() if window.days == 1 else f"{window.start}..{window.end}"


def _offset(currency: str) -> int:
    return 1 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 100
