"""A local HubSpot: OAuth2 token endpoint, account details and the CRM v3 deal search.

It follows HubSpot's contracts, failure modes included: search filters (``EQ``, ``NEQ``,
``GT``, ``GTE``, ``LT``, ``LTE``, ``BETWEEN``) with the filter-group limits (5 groups, 10
filters per group, 25 in all), ``limit`` up to 200, offset ``after`` paging refused at the
10,000-result cap (``search_cap``, lowered in tests), only the requested properties (plus
``createdate``, ``hs_lastmodifieddate`` and ``hs_object_id``) in each result, the
``X-HubSpot-RateLimit-*`` headers on every answer, 429 ``RATE_LIMIT`` bodies
(``rate_limited(policy)``, to queue with ``fail_next``), 401 ``EXPIRED_AUTHENTICATION``
(``expire_tokens()`` now, or ``expire_tokens_after(n)`` requests), 403 ``MISSING_SCOPES``
(remove a scope from ``scopes``) and ``BAD_REFRESH_TOKEN`` from the token endpoint.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from platform_fakes import FakePlatform, Reply, Request

REFRESH_TOKEN = "hs-refresh-7f3a9c1e-2b44-4d0e-9a51-0c6b8e2f1d77"
CLIENT_ID = "5d2c9b1a-7e3f-4a60-8c21-9f0e4b7a6d35"
CLIENT_SECRET = "hs-client-secret-b81f5e0a-44c2-4a6b-9e7d"
ALWAYS = ("createdate", "hs_lastmodifieddate", "hs_object_id")
DATE_PROPERTIES = {"createdate", "hs_lastmodifieddate", "closedate"}
OPERATORS = {"EQ", "NEQ", "GT", "GTE", "LT", "LTE", "BETWEEN", "HAS_PROPERTY", "NOT_HAS_PROPERTY"}
_CORRELATION = itertools.count(1)


def iso_z(moment: dt.datetime) -> str:
    """HubSpot's timestamp text: ``2026-11-24T10:00:00.000Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_ms(text: str) -> int:
    """Milliseconds since the epoch of a HubSpot timestamp text."""
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def deal(deal_id: int, created: dt.datetime, modified: dt.datetime, amount: float | None, *,
         currency: str | None = "USD", stage: str = "qualifiedtobuy", won: bool | None = None,
         close_date: dt.date | None = None, utm: tuple[str, str, str] | None = None,
         name: str | None = None) -> dict[str, Any]:
    """A deal as HubSpot stores it (every property), in the search result format; ``won`` True
    or False closes it on ``close_date``, None leaves it open."""
    closed = won is not None
    close_date = close_date or (created + dt.timedelta(days=20)).date()
    source, medium, campaign = utm or (None, None, None)
    return {
        "id": str(deal_id),
        "properties": {
            "amount": None if amount is None else f"{amount:g}",
            "closedate": f"{close_date.isoformat()}T15:00:00Z", "createdate": iso_z(created),
            "dealname": name or f"Deal {deal_id}",
            "dealstage": ("closedwon" if won else "closedlost") if closed else stage,
            "pipeline": "default", "deal_currency_code": currency,
            "hs_is_closed": str(closed).lower(), "hs_is_closed_won": str(bool(won)).lower(),
            "hs_analytics_source": {"facebook": "PAID_SOCIAL"}.get(source or "", "OTHER_CAMPAIGNS"
                                                                    if source else "ORGANIC_SEARCH"),
            "utm_source": source, "utm_medium": medium, "utm_campaign": campaign,
            "hs_lastmodifieddate": iso_z(modified), "hs_object_id": str(deal_id),
        },
        "createdAt": iso_z(created), "updatedAt": iso_z(modified), "archived": False,
    }


def error(status: int, message: str, category: str, **extra: Any) -> Reply:
    return Reply(status, {"status": "error", "message": message,
                          "correlationId": f"0b8c{next(_CORRELATION):08d}-fake", "category": category,
                          **extra})


class FakeHubSpot(FakePlatform):
    """HubSpot's deal search, account details and token endpoint on a local socket."""

    def __init__(self, portal_id: int = 62515, time_zone: str = "US/Eastern", currency: str = "USD") -> None:
        super().__init__()
        self.details = {"portalId": portal_id, "accountType": "STANDARD", "timeZone": time_zone,
                        "companyCurrency": currency, "additionalCurrencies": ["EUR", "GBP"],
                        "utcOffset": "-05:00", "utcOffsetMilliseconds": -18_000_000,
                        "uiDomain": "app.hubspot.com", "dataHostingLocation": "na1"}
        self.deals: dict[str, dict[str, Any]] = {}
        self.scopes = {"oauth", "crm.objects.deals.read"}
        self.search_cap = 10_000
        self.issued: list[str] = []
        self.expire_countdown: int | None = None
        # X-HubSpot-RateLimit-* values on every answer
        self.remaining = 109
        self.secondly_remaining = 10
        self.interval_ms = 10_000
        self.refresh_tokens.add(REFRESH_TOKEN)
        self.route("POST", "/oauth/v1/token", self.oauth_token, auth=False)
        self.route("GET", "/account-info/v3/details", self.account_details)
        self.route("POST", "/crm/v3/objects/deals/search", self.search)

    # -- data ----------------------------------------------------------------------------------

    def add(self, *deals: dict[str, Any]) -> None:
        with self.lock:
            self.deals.update({d["id"]: d for d in deals})

    def modify(self, deal_id: str, at: dt.datetime, **properties: Any) -> None:
        """Change a deal's properties as a user would: ``hs_lastmodifieddate`` moves to ``at``."""
        with self.lock:
            d = self.deals[deal_id]
            d["properties"].update(properties, hs_lastmodifieddate=iso_z(at))
            d["updatedAt"] = iso_z(at)

    # -- tokens --------------------------------------------------------------------------------

    def issue_token(self) -> str:
        token = super().issue_token()
        self.issued.append(token)
        return token

    def expire_tokens_after(self, requests: int) -> None:
        """Every access token stops working after ``requests`` more authorised calls."""
        self.expire_countdown = requests

    def authorised(self, request: Request) -> bool:
        with self.lock:
            if self.expire_countdown is not None:
                self.expire_countdown -= 1
                if self.expire_countdown < 0:
                    self.expire_countdown = None
                    self.expire_tokens()
        return super().authorised(request)

    def unauthorised(self, request: Request) -> Reply:
        return error(401, "The OAuth token used to make this call expired 4 second(s) ago.",
                     "EXPIRED_AUTHENTICATION")

    def oauth_token(self, request: Request) -> Reply:
        form = request.form()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return Reply(400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id",
                               "correlationId": "c0ffee00-fake"})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.refresh_tokens:
            return Reply(400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
                               "correlationId": "c0ffee01-fake"})
        return Reply(200, {"token_type": "bearer", "refresh_token": form["refresh_token"],
                           "access_token": self.issue_token(), "expires_in": self.token_lifetime})

    # -- rate limits ---------------------------------------------------------------------------

    def limit_headers(self, remaining: int | None = None) -> dict[str, str]:
        return {"X-HubSpot-RateLimit-Max": "110",
                "X-HubSpot-RateLimit-Remaining": str(self.remaining if remaining is None else remaining),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
                "X-HubSpot-RateLimit-Secondly": "11",
                "X-HubSpot-RateLimit-Secondly-Remaining": str(self.secondly_remaining)}

    def rate_limited(self, policy: str = "TEN_SECONDLY_ROLLING", retry_after: str | None = None) -> Reply:
        """A 429 of ``policy`` (``SECONDLY``, ``TEN_SECONDLY_ROLLING`` or ``DAILY``)."""
        headers = self.limit_headers(remaining=0)
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        message = ("You have reached your daily limit." if policy == "DAILY" else
                   "You have reached your ten_secondly_rolling limit." if policy.startswith("TEN") else
                   "You have reached your secondly limit.")
        return Reply(429, {"status": "error", "message": message, "errorType": "RATE_LIMIT",
                           "correlationId": "f00d0000-fake", "policyName": policy,
                           "groupName": "app-api-1234"}, headers)

    def ok(self, body: Any) -> Reply:
        return Reply(200, body, self.limit_headers())

    # -- endpoints -----------------------------------------------------------------------------

    def account_details(self, request: Request) -> Reply:
        return self.ok(self.details)

    def search(self, request: Request) -> Reply:
        if "crm.objects.deals.read" not in self.scopes:
            return error(403, "This app hasn't been granted all required scopes to make this call.",
                         "MISSING_SCOPES", errors=[{"message": "One or more of the following scopes are required.",
                                                    "context": {"requiredGranularScopes": ["crm.objects.deals.read"]}}])
        body = request.json()
        groups = body.get("filterGroups") or []
        sizes = [len(g.get("filters") or []) for g in groups]
        if len(groups) > 5 or sum(sizes) > 25 or any(n > 10 for n in sizes):
            return error(400, f"Too many filters: {len(groups)} groups, {sum(sizes)} filters "
                         "(at most 5 groups, 10 filters per group, 25 in all)", "VALIDATION_ERROR")
        unknown = {f.get("operator") for g in groups for f in g.get("filters") or []} - OPERATORS
        if unknown:
            return error(400, f"Unknown filter operator(s) {sorted(map(str, unknown))}", "VALIDATION_ERROR")
        limit = int(body.get("limit") or 10)
        if not 1 <= limit <= 200:
            return error(400, f"limit must be 1..200, not {limit}", "VALIDATION_ERROR")
        after = int(body.get("after") or 0)
        if after >= self.search_cap:
            return error(400, f"The search API cannot page beyond {self.search_cap} results; "
                         f"after={after} was requested", "VALIDATION_ERROR")
        with self.lock:
            stored = [d for d in self.deals.values()
                      if not groups or any(all(self._match(d, f) for f in g.get("filters") or []) for g in groups)]
        for sort in reversed(body.get("sorts") or [{"propertyName": "hs_object_id"}]):
            stored.sort(key=lambda d, p=sort["propertyName"]: self._sort_key(d, p),
                        reverse=sort.get("direction") == "DESCENDING")
        wanted = list(dict.fromkeys([*(body.get("properties") or ALWAYS), *ALWAYS]))
        page = stored[after:after + limit]
        reply: dict[str, Any] = {"total": len(stored), "results": [self._served(d, wanted) for d in page]}
        if after + limit < len(stored):
            reply["paging"] = {"next": {"after": str(after + limit), "link": f"?after={after + limit}"}}
        return self.ok(reply)

    @staticmethod
    def _served(stored: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        # requested properties the deal has; a property the portal dropped is absent
        props = stored["properties"]
        extra = {k: v for k, v in stored.items() if k not in ("id", "properties")}
        return {"id": stored["id"], "properties": {p: props[p] for p in wanted if p in props}, **extra}

    @staticmethod
    def _value(stored: dict[str, Any], prop: str) -> Any:
        value = stored["properties"].get(prop)
        if value is None or value == "":
            return None
        if prop in DATE_PROPERTIES:
            return to_ms(value)
        try:
            return float(value)
        except ValueError:
            return value

    def _sort_key(self, stored: dict[str, Any], prop: str) -> tuple[int, Any]:
        value = self._value(stored, prop)
        return (1, 0) if value is None else (0, value)

    def _match(self, stored: dict[str, Any], f: dict[str, Any]) -> bool:
        value = self._value(stored, f["propertyName"])
        op = f["operator"]
        if value is None:
            return op == "NOT_HAS_PROPERTY"
        if op == "HAS_PROPERTY":
            return True

        def target(v: Any) -> Any:
            return float(v) if isinstance(value, float | int) else str(v)

        wanted = target(f.get("value"))
        checks = {"EQ": lambda: value == wanted, "NEQ": lambda: value != wanted,
                  "GT": lambda: value > wanted, "GTE": lambda: value >= wanted,
                  "LT": lambda: value < wanted, "LTE": lambda: value <= wanted,
                  "BETWEEN": lambda: wanted <= value <= target(f.get("highValue"))}
        return checks[op]()
