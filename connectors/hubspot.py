"""HubSpot CRM v3 deals: every deal modified in the window, through the CRM search API.

- Auth: OAuth2 ``refresh_token`` grant at ``token_url`` (default ``{base_url}/oauth/v1/token``)
  with the app's ``client_id`` / ``client_secret``; access tokens last 30 minutes and are
  stored (encrypted) as they are issued, so the next run reuses them. A 401 mid-sync refreshes
  once and repeats the call.
- Account: ``GET /account-info/v3/details`` (``portalId``, ``timeZone``, ``companyCurrency``)
  at the start of every read: it checks the optional ``portal_id`` setting, and its currency
  fills ``deal_currency_code`` on deals HubSpot leaves without one (deals in the company
  currency of a single-currency portal), so their amounts convert.
- Deals: ``POST /crm/v3/objects/deals/search`` with one filter group: ``hs_lastmodifieddate``
  in [window start 00:00 UTC, window end + 1 day), sorted by ``hs_object_id``; the property
  list travels in the body (no URL-length limit). Paging is by id (keyset): each page adds
  ``hs_object_id GT <last id seen>``, so the 10,000-result cap of a search query never
  applies, and a deal that leaves the result set mid-sync (modified again) cannot shift an
  offset ``after`` cursor past a deal not yet read. ``paging.next`` says whether more follow.
  Results are landed as HubSpot returns them (``id``, ``properties``, ``createdAt``,
  ``updatedAt``, ``archived``).
- Throttling: about 4 search requests per second (``requests_per_second``). The
  ``X-HubSpot-RateLimit-Secondly-Remaining`` / ``-Remaining`` headers pause the limiter when a
  window is spent; a 429 ``RATE_LIMIT`` body with ``policyName`` ``SECONDLY`` or
  ``TEN_SECONDLY_ROLLING`` waits for ``Retry-After`` or the window's interval; ``DAILY`` stops
  the run (the daily limit resets at midnight in the account's time zone). A 403
  ``MISSING_SCOPES`` names the scopes to grant.
- Settings: ``properties`` (extra deal properties, a list or comma-separated text),
  ``page_size`` (100, at most 200), ``requests_per_second`` (4), ``portal_id`` (optional: the
  portal the credentials must reach), ``token_url``, ``base_url`` and the retry settings of
  ``connectors.http.RetryPolicy``. No write-back.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar

import httpx

from connectors.base import Account, ConnectionConfig, CredentialField, Page, StreamSpec, Window
from connectors.http import OAuth2Refresh, retry_after, stored_expiry
from connectors.platform import PlatformConnector
from workbench.errors import AccessError, ApiError, QuotaExceededError, ThrottledError, ValidationError

STREAM = "hubspot.deals"
#: the properties the silver parser reads (``workbench.medallion.parsers.hubspot``)
PROPERTIES = ("amount", "closedate", "createdate", "dealname", "dealstage", "pipeline",
              "deal_currency_code", "hs_is_closed", "hs_is_closed_won", "hs_analytics_source",
              "utm_source", "utm_medium", "utm_campaign", "hs_lastmodifieddate", "hs_object_id")
MAX_PAGE_SIZE = 200  # HubSpot's largest search ``limit``
DEALS_SCOPE = "crm.objects.deals.read"
SEARCH_PATH = "/crm/v3/objects/deals/search"


def epoch_ms(day: dt.date) -> int:
    """Milliseconds since the epoch at 00:00 UTC of ``day`` (HubSpot's date filter values)."""
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _page_problem(body: Any, after_id: int) -> str | None:
    """What is wrong with a search page, or None: the keyset paging needs numeric ids above
    the last one seen, and a page that announces more must carry results."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        return "no 'results' list"
    for deal in body["results"]:
        if not isinstance(deal, dict) or not isinstance(deal.get("properties"), dict):
            return "a result without 'properties'"
        if not str(deal.get("id", "")).isdigit() or int(deal["id"]) <= after_id:
            return f"a result with id {deal.get('id')!r} (expected a number above {after_id})"
    paging = body.get("paging")
    if paging is not None and not isinstance(paging, dict):
        return "'paging' is not an object"
    if paging and paging.get("next") and not body["results"]:
        return "'paging.next' without results"
    return None


class HubSpotConnector(PlatformConnector):
    """HubSpot CRM v3: deals modified in the window (``hubspot.deals``)."""

    name: ClassVar[str] = "hubspot"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec(STREAM, "HubSpot CRM v3 deal search results", daily=False),)
    default_lookback_days: ClassVar[int] = 3
    capabilities: ClassVar[frozenset[str]] = frozenset({"read"})
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("client_id", "HubSpot app client id", secret=False),
        CredentialField("client_secret", "HubSpot app client secret"),
        CredentialField("refresh_token", "OAuth refresh token of the portal (from the app's install flow)"),
    )
    default_base_url: ClassVar[str] = "https://api.hubapi.com"
    default_rate: ClassVar[float] = 4.0  # HubSpot's search limit per second
    default_burst: ClassVar[int] = 1

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        self.page_size = int(self.setting("page_size") or 100)
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValidationError(f"connection '{config.connection_id}' (hubspot): page_size must be "
                                  f"1..{MAX_PAGE_SIZE} (HubSpot's search limit), not {self.page_size}")
        extra = self.setting("properties") or ()
        if isinstance(extra, str):
            extra = [p for p in (s.strip() for s in extra.split(",")) if p]
        self.properties = list(dict.fromkeys([*PROPERTIES, *extra]))
        self.time_zone: str | None = None  # the portal's, once the account details arrived

    def make_auth(self) -> OAuth2Refresh:
        c = self.config.credentials
        base = str(self.setting("base_url") or self.default_base_url).rstrip("/")
        return OAuth2Refresh(str(self.setting("token_url") or f"{base}/oauth/v1/token"),
                             c["client_id"], c["client_secret"], c["refresh_token"],
                             token=c.get("access_token"), expires_at=stored_expiry(c),
                             on_token=self.store_credentials)

    # -- platform signals ------------------------------------------------------------------

    def check(self, response: httpx.Response) -> ApiError | None:
        """HubSpot's rate-limit headers and error bodies; None lets the status code decide."""
        if response.status_code == 429:
            return self._rate_limited(response)
        if response.status_code == 403:
            body = _json_body(response)
            if body.get("category") == "MISSING_SCOPES":
                return self._missing_scopes(body, response)
            return None
        # a window spent: hold the next call until it rolls over instead of collecting a 429
        interval = (_int_header(response, "X-HubSpot-RateLimit-Interval-Milliseconds") or 10_000) / 1000
        if _int_header(response, "X-HubSpot-RateLimit-Remaining") == 0:
            self.client.limiter.pause(interval)
        if _int_header(response, "X-HubSpot-RateLimit-Secondly-Remaining") == 0:
            self.client.limiter.pause(1.0)
        return None

    def _rate_limited(self, response: httpx.Response) -> ApiError | None:
        body = _json_body(response)
        policy = str(body.get("policyName") or "")
        said = str(body.get("message") or "rate limited").rstrip(".")
        message = self.client.mask(f"hubspot {response.request.url.path}: HTTP 429 {policy or 'RATE_LIMIT'}: {said}")
        if policy == "DAILY":
            return self._daily_limit(message)
        stated = retry_after(response.headers.get("Retry-After"))
        if policy == "SECONDLY":
            return ThrottledError(message, status=429, retry_after=1.0 if stated is None else stated)
        if policy.startswith("TEN_SECONDLY") or body.get("errorType") == "RATE_LIMIT":
            interval = _int_header(response, "X-HubSpot-RateLimit-Interval-Milliseconds") or 10_000
            return ThrottledError(message, status=429, retry_after=interval / 1000 if stated is None else stated)
        return None

    def _daily_limit(self, message: str) -> QuotaExceededError:
        """The daily limit is spent: final, saying when it resets (midnight in the account's time
        zone, known once the account details arrived)."""
        try:
            zone = zoneinfo.ZoneInfo(self.time_zone) if self.time_zone else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = None
        text = (f"{message}. HubSpot's daily API limit of this portal is spent; it resets at midnight in the "
                "account's time zone")
        if zone is None:
            return QuotaExceededError(f"{text}: run again after that", status=429)
        now = dt.datetime.now(dt.UTC)
        reset = dt.datetime.combine(now.astimezone(zone).date() + dt.timedelta(days=1), dt.time(), zone)
        reset_utc = reset.astimezone(dt.UTC)  # aware datetimes of one zone subtract as wall clocks
        return QuotaExceededError(
            f"{text}: run again after {reset:%Y-%m-%d %H:%M} {self.time_zone} ({reset_utc:%Y-%m-%d %H:%M} UTC)",
            status=429, retry_after=(reset_utc - now).total_seconds())

    def _missing_scopes(self, body: dict[str, Any], response: httpx.Response) -> AccessError:
        scopes: list[str] = []
        for error in body.get("errors") or []:
            context = (error.get("context") if isinstance(error, dict) else None) or {}
            for key in ("requiredGranularScopes", "requiredScopes", "missingScopes"):
                scopes += [str(s) for s in context.get(key) or []]
        if not scopes and response.request.url.path == SEARCH_PATH:
            scopes = [DEALS_SCOPE]
        needed = ", ".join(dict.fromkeys(scopes)) or "the scopes this call needs"
        return AccessError(f"hubspot {response.request.url.path}: HTTP 403 MISSING_SCOPES: the HubSpot app "
                           f"was not granted {needed}; add the scope(s) to the app, install it in the "
                           "portal again and store the new refresh token (workbench connections add "
                           "hubspot --update)", status=403)

    # -- reading -----------------------------------------------------------------------------

    def accounts(self) -> list[Account]:
        """The portal the credentials reach (``/account-info/v3/details``)."""
        body = self.client.get_json("/account-info/v3/details", what="account details",
                                    validate=lambda b: None if isinstance(b, dict) and b.get("portalId")
                                    else "no portalId")
        self.time_zone = body.get("timeZone")
        portal = str(body["portalId"])
        return [Account(portal, str(body.get("portalName") or f"HubSpot portal {portal}"),
                        body.get("companyCurrency"), body.get("accountType"))]

    def read(self, window: Window) -> Iterator[Page]:
        """Yield pages of the deals whose ``hs_lastmodifieddate`` falls in ``window`` (UTC days)."""
        portal = self.accounts()[0]
        wanted = self.setting("portal_id")
        if wanted and str(wanted) != portal.id:
            raise AccessError(f"the hubspot credentials reach portal {portal.id} ({portal.name}), not portal "
                              f"{wanted} (setting portal_id): install the app in portal {wanted} and update "
                              "the connection's refresh token, or change the setting", platform=self.name)
        start, end = epoch_ms(window.start), epoch_ms(window.end + dt.timedelta(days=1))
        after_id = 0
        while True:
            body = self.client.post_json(
                SEARCH_PATH, what=f"deal search, modified {window.start}..{window.end}, ids > {after_id}",
                json=self._search_body(start, end, after_id),
                validate=partial(_page_problem, after_id=after_id))
            deals = body["results"]
            for deal in deals:
                props = deal["properties"]
                if not props.get("deal_currency_code") and portal.currency:
                    props["deal_currency_code"] = portal.currency
            if deals:
                yield Page(STREAM, deals)
                after_id = max(int(d["id"]) for d in deals)
            if not (body.get("paging") or {}).get("next"):
                return

    def _search_body(self, start_ms: int, end_ms: int, after_id: int) -> dict[str, Any]:
        filters = [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(start_ms)},
                   {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": str(end_ms)}]
        if after_id:
            filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(after_id)})
        return {"filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": self.properties, "limit": self.page_size}
