"""Salesforce REST API: Opportunities by SOQL, read incrementally by ``LastModifiedDate``.

API used (``api_version`` setting, default ``v62.0``):

- auth: OAuth2 ``refresh_token`` grant at ``{login_url}/services/oauth2/token`` (``login_url``
  default ``https://login.salesforce.com``; ``https://test.salesforce.com`` for sandboxes). The
  token response carries no ``expires_in`` but an ``instance_url``: every later call goes there,
  and it is stored with the credentials (with the access token) so the next run starts there.
  A 401 ``INVALID_SESSION_ID`` mid-sync refreshes once and repeats the call.
- ``GET /services/data/{v}/sobjects/Opportunity/describe`` once per run: which fields exist, so
  a wrong ``utm_fields`` / ``extra_fields`` name fails before the query with close matches, and
  ``CurrencyIsoCode`` is selected only in multi-currency orgs (``multi_currency=auto``).
- ``GET /services/data/{v}/query?q=SELECT ... FROM Opportunity WHERE LastModifiedDate >= {start}
  AND LastModifiedDate < {end + 1 day} ORDER BY LastModifiedDate, Id``; batches of up to 2,000
  records: follow ``nextRecordsUrl`` until ``done``. An expired query locator
  (``INVALID_QUERY_LOCATOR``) resumes after the last record read (keyset on the sort key), so no
  record is read twice or skipped.
- ``SELECT Id, Name, DefaultCurrencyIsoCode FROM Organization``: the org (``accounts()``), its
  currency for single-currency orgs, and the optional ``org_id`` check.

Records are landed as the API returns them (``attributes``, ``Id``, ``Amount``...) except that
the org's own UTM field names (``utm_fields``) are renamed to ``UTM_Source__c``,
``UTM_Medium__c`` and ``UTM_Campaign__c``, and single-currency orgs get ``CurrencyIsoCode``
from the org's default currency, so the silver parser sees one format. Opportunities are not
dated report rows: a day without modified opportunities is not a gap, so no coverage is kept.

Throttling and errors: every response's ``Sforce-Limit-Info: api-usage=n/m`` is recorded; at or
above ``stop_at_usage_pct`` (90) of the org's daily allocation the run stops with a
``QuotaExceededError`` so the org's other integrations do not run dry. 403
``REQUEST_LIMIT_EXCEEDED`` (``TotalRequests``) is final; the concurrent long-request limit is a
throttle (retried). 400 ``INVALID_FIELD`` / ``MALFORMED_QUERY`` name the field and the setting
to fix; ``INSUFFICIENT_ACCESS`` / ``API_DISABLED_FOR_ORG`` name the missing permission; 5xx,
timeouts and truncated pages are retried. Read only: no write-back.

Settings: ``login_url``, ``api_version``, ``utm_fields`` (``{"UTM_Source__c": "Org_Field__c",
...}``, default identity), ``extra_fields`` (more Opportunity fields to land), ``multi_currency``
(``auto`` / true / false), ``stop_at_usage_pct``, ``org_id`` (optional: the org the credentials
must reach), ``base_url`` (only before the first token), plus the client's retry and rate
settings (``connectors.http.RetryPolicy``, ``requests_per_second``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import httpx

from connectors.base import Account, ConnectionConfig, CredentialField, Page, StreamSpec, Window
from connectors.http import ApiClient, Auth, OAuth2Refresh
from connectors.platform import PlatformConnector
from workbench.errors import (
    AccessError,
    ApiError,
    QuotaExceededError,
    RequestError,
    ThrottledError,
    ValidationError,
)

log = logging.getLogger("connectors.salesforce")

STREAM = "salesforce.opportunities"
DEFAULT_LOGIN_URL = "https://login.salesforce.com"
UTM_FIELDS = ("UTM_Source__c", "UTM_Medium__c", "UTM_Campaign__c")
#: the fields the silver parser reads, in the order the API returns them
FIELDS = ("Id", "Name", "Amount", "CurrencyIsoCode", "StageName", "IsClosed", "IsWon", "CreatedDate",
          "CloseDate", "LeadSource", *UTM_FIELDS, "LastModifiedDate")

_API_VERSION = re.compile(r"^v\d{2,3}\.\d$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
_NO_COLUMN = re.compile(r"No such column '([^']+)'")
_FLAGS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False,
          "0": False}


class ExpiredQueryLocatorError(RequestError):
    """The server forgot a query's cursor (``INVALID_QUERY_LOCATOR``); ``read`` resumes after it."""


class SalesforceConnector(PlatformConnector):
    """Opportunities of one Salesforce org, modified in the window."""

    name: ClassVar[str] = "salesforce"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec(STREAM, "Salesforce SOQL Opportunity records modified in the window", daily=False),)
    default_lookback_days: ClassVar[int] = 3
    capabilities: ClassVar[frozenset[str]] = frozenset({"read"})
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("client_id", "Connected app consumer key", secret=False),
        CredentialField("client_secret", "Connected app consumer secret"),
        CredentialField("refresh_token", "OAuth refresh token (connected app with the refresh_token scope)"),
    )
    default_base_url: ClassVar[str] = DEFAULT_LOGIN_URL
    default_rate: ClassVar[float] = 10.0  # the daily allocation binds long before any rate does

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        settings = config.settings
        self.api_version = str(settings.get("api_version") or "v62.0")
        if not _API_VERSION.match(self.api_version):
            raise self._invalid("api_version", f"'{self.api_version}' is not an API version like v62.0")
        self.utm_fields = self._utm_setting(settings.get("utm_fields"))
        self.extra_fields = self._extra_setting(settings.get("extra_fields"))
        self.multi_currency = self._currency_setting(settings.get("multi_currency", "auto"))
        try:
            self.stop_at_pct = float(settings.get("stop_at_usage_pct", 90))
        except (TypeError, ValueError):
            self.stop_at_pct = -1.0
        if not 0 < self.stop_at_pct <= 100:
            raise self._invalid("stop_at_usage_pct",
                                "give a share of the daily API allocation in percent (0 < value <= 100)")
        self.login_url = str(settings.get("login_url") or DEFAULT_LOGIN_URL).rstrip("/")
        self.expected_org = str(settings.get("org_id") or "")
        self.instance_url: str | None = config.credentials.get("instance_url") or None
        self.api_usage: tuple[int, int] | None = None  # (used, allocation) from the last response
        self._organization: Account | None = None

    # -- settings ------------------------------------------------------------------------------

    def _invalid(self, setting: str, problem: str) -> ValidationError:
        return ValidationError(f"connection '{self.config.connection_id}' (salesforce): setting {setting}: "
                               f"{problem} (workbench connections add salesforce --update -s {setting}=...)")

    def _utm_setting(self, value: Any) -> dict[str, str]:
        """Canonical UTM key -> the org's field name (default: the same name)."""
        if isinstance(value, str) and value.strip():  # given on the command line as JSON text
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        if value and not isinstance(value, Mapping):
            raise self._invalid("utm_fields", 'give a JSON object such as {"UTM_Source__c": "Source__c"}')
        mapping = dict(value or {})
        unknown = sorted(set(mapping) - set(UTM_FIELDS))
        if unknown:
            raise self._invalid("utm_fields", f"unknown key(s) {', '.join(unknown)}; the keys are "
                                f"{', '.join(UTM_FIELDS)}")
        out = {key: str(mapping.get(key) or key).strip() for key in UTM_FIELDS}
        bad = [f for f in out.values() if not _FIELD_NAME.match(f)]
        if bad:
            raise self._invalid("utm_fields", f"'{bad[0]}' is not a field API name")
        return out

    def _extra_setting(self, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is None:
            value = []
        if not isinstance(value, list | tuple):
            raise self._invalid("extra_fields", "give a list of Opportunity field API names")
        fields = [str(v).strip() for v in value]
        bad = [f for f in fields if not _FIELD_NAME.match(f)]
        if bad:
            raise self._invalid("extra_fields", f"'{bad[0]}' is not a field API name")
        return fields

    def _currency_setting(self, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if text in _FLAGS:
            return _FLAGS[text]
        raise self._invalid("multi_currency", f"'{value}' is not auto, true or false")

    # -- client, auth and the platform's signals ------------------------------------------------

    def make_client(self) -> ApiClient:
        """The shared client, pointed at the org's instance when an earlier run learnt it."""
        client = super().make_client()
        if self.instance_url:  # a previous token response said where the org lives
            client.set_base_url(self.instance_url)
        return client

    def make_auth(self) -> Auth:
        """Refresh-token OAuth2 at ``login_url``; a stored access token is reused while it works."""
        c = self.config.credentials
        return OAuth2Refresh(f"{self.login_url}/services/oauth2/token", c["client_id"], c["client_secret"],
                             c["refresh_token"], token=(c.get("access_token") or None) if self.instance_url else None,
                             on_token=self.store_credentials, on_response=self._follow_instance)

    def _follow_instance(self, body: dict[str, Any]) -> None:
        """Send every later call to the org's instance named by the token response."""
        url = body.get("instance_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return
        self.instance_url = url.rstrip("/")
        if self._client is not None:
            self._client.set_base_url(self.instance_url)
        self.store_credentials({"instance_url": self.instance_url})

    def check(self, response: httpx.Response) -> ApiError | None:
        """Usage header and Salesforce error codes -> the error to raise (None: the status decides)."""
        usage = self._usage(response.headers.get("Sforce-Limit-Info"))
        if response.is_success:
            return usage
        what = _describe_call(response.request.url.path)
        for code, message in _errors(response):
            text = self.client.mask(" ".join(message.split()))[:400].rstrip(".")
            where = f"salesforce {what}: HTTP {response.status_code} {code}: {text}"
            if code == "INVALID_SESSION_ID":
                return None  # the client refreshes the token once and repeats the call
            if code == "REQUEST_LIMIT_EXCEEDED":
                if "concurrent" in message.lower():  # too many long requests at once: it passes
                    return ThrottledError(where, status=response.status_code)
                return QuotaExceededError(
                    f"{where}. The org has spent its daily API request allocation; run again once "
                    "the rolling 24-hour usage has dropped, or ask the Salesforce admin for a larger "
                    "allocation", status=response.status_code)
            if code == "INVALID_QUERY_LOCATOR":
                return ExpiredQueryLocatorError(f"{where}. The query cursor expired; read the window "
                                                "again", status=response.status_code)
            if code in ("INVALID_FIELD", "MALFORMED_QUERY", "INVALID_QUERY_FILTER_OPERATOR"):
                column = _NO_COLUMN.search(message)
                hint = self._field_hint(column.group(1)) if column else (
                    "check the field names in the settings utm_fields and extra_fields")
                return RequestError(f"{where}. {hint}", status=response.status_code)
            if code in ("INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY", "INVALID_TYPE"):
                return AccessError(
                    f"{where}. The connected user cannot read Opportunity records: give them Read on "
                    "Opportunity (profile or permission set) and field-level read access to the "
                    "fields queried", status=response.status_code)
            if code in ("API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED"):
                return AccessError(
                    f"{where}. API access is off: the connected user needs the 'API Enabled' "
                    "permission and the org an edition with API access", status=response.status_code)
            if code == "NOT_FOUND" and "/services/data/" in response.request.url.path:
                return RequestError(f"{where}. Check the setting api_version ({self.api_version}: the org "
                                    "may not offer it yet) and that the connected user can read Opportunity",
                                    status=response.status_code)
        return usage

    def _usage(self, header: str | None) -> ApiError | None:
        """Record ``api-usage=n/m``; at or above ``stop_at_usage_pct`` stop the run."""
        match = _USAGE.search(header or "")
        if match is None:
            return None
        used, allocation = int(match.group(1)), int(match.group(2))
        self.api_usage = (used, allocation)
        if allocation <= 0 or used * 100 < self.stop_at_pct * allocation:
            return None
        return QuotaExceededError(
            f"salesforce: the org has used {used:,} of its {allocation:,} daily API requests "
            f"({used * 100 / allocation:.0f}%), at or above stop_at_usage_pct ({self.stop_at_pct:g}%); "
            "the run stops so the org's other integrations keep their share. Run again once the "
            "rolling 24-hour usage has dropped, or raise the setting stop_at_usage_pct")

    def _field_hint(self, field: str, known: set[str] | None = None) -> str:
        """What to change when the org has no (readable) Opportunity field ``field``."""
        close = difflib.get_close_matches(field, sorted(known or ()), n=3, cutoff=0.6)
        similar = f" (the org has {', '.join(close)})" if close else ""
        for canonical, actual in self.utm_fields.items():
            if actual.lower() == field.lower():
                return (f"The org has no readable Opportunity field '{field}'{similar}: set the setting "
                        f"utm_fields to the org's API name for {canonical} (Setup > Object Manager > "
                        "Opportunity > Fields & Relationships)")
        if field.lower() in (f.lower() for f in self.extra_fields):
            return (f"The org has no readable Opportunity field '{field}'{similar}: correct or remove it "
                    "in the setting extra_fields")
        if field == "CurrencyIsoCode":
            return ("The org has no multi-currency (no Opportunity.CurrencyIsoCode field): set the "
                    "setting multi_currency=auto")
        return (f"The connected user cannot read Opportunity.{field}{similar}: grant field-level read "
                f"access to it, or check the setting api_version ({self.api_version})")

    # -- reading -----------------------------------------------------------------------------------

    def read(self, window: Window) -> Iterator[Page]:
        """Pages (one per API batch) of the opportunities modified in ``window`` (UTC days)."""
        if self.expected_org:
            self._check_org()
        fields, currency = self._plan()
        start = f"{window.start.isoformat()}T00:00:00Z"
        end = f"{(window.end + dt.timedelta(days=1)).isoformat()}T00:00:00Z"
        what = f"opportunities modified {window.start}..{window.end}"
        after: tuple[str, str] | None = None  # sort key of the last record read
        resumed = 0
        while True:
            try:
                for records in self._query(_soql(fields, start, end, after), what):
                    if records:
                        last = records[-1]
                        if last.get("LastModifiedDate") and last.get("Id"):
                            after = (str(last["LastModifiedDate"]), str(last["Id"]))
                        yield Page(STREAM, [self._native(r, currency) for r in records])
                break
            except ExpiredQueryLocatorError:
                resumed += 1
                if resumed > 3:
                    raise
                log.info("salesforce: the query locator expired; resuming after %s", after)
        if self.api_usage:
            log.info("salesforce: the org has used %d of %d daily API requests", *self.api_usage)

    def _plan(self) -> tuple[list[str], str | None]:
        """The fields to select (checked against the org's describe) and, for single-currency
        orgs, the currency to fill in."""
        described = self.client.get_json(
            f"/services/data/{self.api_version}/sobjects/Opportunity/describe", what="describe of Opportunity",
            validate=lambda b: None if isinstance(b, dict) and isinstance(b.get("fields"), list)
            else "no fields list")
        names = {str(f["name"]) for f in described["fields"] if isinstance(f, dict) and f.get("name")}
        by_lower = {n.lower(): n for n in names}
        has_currency = "currencyisocode" in by_lower
        multi = has_currency if self.multi_currency is None else self.multi_currency
        if multi and not has_currency:
            raise RequestError("salesforce: the setting multi_currency is true but the org has no "
                               "multi-currency (no Opportunity.CurrencyIsoCode field): set multi_currency=auto",
                               platform=self.name)
        wanted = [f for f in FIELDS if f != "CurrencyIsoCode" or multi]
        wanted = [self.utm_fields.get(f, f) for f in wanted] + self.extra_fields
        missing = [f for f in wanted if f.lower() not in by_lower]
        if missing:
            raise RequestError(f"salesforce: {self._field_hint(missing[0], set(names))}", platform=self.name)
        # the org's own spelling, so records can be renamed by exact key
        self.utm_fields = {k: by_lower[v.lower()] for k, v in self.utm_fields.items()}
        fields = list(dict.fromkeys(by_lower[f.lower()] for f in wanted))
        return fields, None if multi else self._org_currency()

    def _org_currency(self) -> str:
        org = self.organization()
        if org.currency:
            return org.currency
        log.warning("salesforce: org %s has no DefaultCurrencyIsoCode; amounts are taken as %s (the "
                    "workbench organisation's currency)", org.id, self.config.org_currency)
        return self.config.org_currency

    def _native(self, record: dict[str, Any], currency: str | None) -> dict[str, Any]:
        """The record with the canonical UTM keys and, for single-currency orgs, a currency."""
        out = dict(record)
        for canonical, actual in self.utm_fields.items():
            if actual != canonical and actual in record:
                out[canonical] = record[actual]
                if actual not in FIELDS:  # LeadSource mapped as a UTM field is still LeadSource too
                    out.pop(actual)
        if currency is not None:
            out.setdefault("CurrencyIsoCode", currency)
        ordered = {k: out.pop(k) for k in ("attributes", *FIELDS) if k in out}
        return {**ordered, **out}

    def _query(self, soql: str, what: str) -> Iterator[list[dict[str, Any]]]:
        """Batches of a SOQL query, following ``nextRecordsUrl`` until ``done``."""
        body = self.client.get_json(f"/services/data/{self.api_version}/query", what=f"query of {what}",
                                    params={"q": soql}, validate=_batch_problem)
        yield body["records"]
        fetched = len(body["records"])
        while not body["done"]:
            body = self.client.get_json(body["nextRecordsUrl"], what=f"query of {what} (record {fetched + 1} on)",
                                        validate=_batch_problem)
            fetched += len(body["records"])
            yield body["records"]

    # -- the org ---------------------------------------------------------------------------------

    def organization(self) -> Account:
        """The org the credentials reach (queried once)."""
        if self._organization is None:
            records = [r for batch in self._query("SELECT Id, Name, DefaultCurrencyIsoCode FROM Organization",
                                                  "the Organization") for r in batch]
            if not records:
                raise AccessError("salesforce: the Organization query returned no row; the connected user "
                                  "needs the 'View Setup and Configuration' permission", platform=self.name)
            r = records[0]
            self._organization = Account(str(r.get("Id")), str(r.get("Name") or ""),
                                         r.get("DefaultCurrencyIsoCode") or None)
        return self._organization

    def accounts(self) -> list[Account]:
        """The one org the credentials reach."""
        return [self.organization()]

    def _check_org(self) -> None:
        org = self.organization()
        if org.id[:15] != self.expected_org[:15]:  # 15- and 18-character forms of one id agree
            raise AccessError(
                f"salesforce: the credentials reach org {org.id} ({org.name}), not {self.expected_org} "
                "(setting org_id): authorise the connection as a user of that org (workbench "
                "connections add salesforce --update) or correct the setting org_id", platform=self.name)


def _soql(fields: list[str], start: str, end: str, after: tuple[str, str] | None) -> str:
    where = f"LastModifiedDate >= {start} AND LastModifiedDate < {end}"
    if after is not None:  # resume a forgotten cursor right after the last record read
        moment, last_id = _soql_datetime(after[0]), after[1].replace("'", "")
        where += (f" AND (LastModifiedDate > {moment} OR (LastModifiedDate = {moment} AND Id > "
                  f"'{last_id}'))")
    return f"SELECT {', '.join(fields)} FROM Opportunity WHERE {where} ORDER BY LastModifiedDate, Id"


def _soql_datetime(value: str) -> str:
    """``2026-11-02T10:00:00.000+0000`` as a SOQL datetime literal (``2026-11-02T10:00:00Z``)."""
    moment = dt.datetime.fromisoformat(value)
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _batch_problem(body: Any) -> str | None:
    """What is wrong with a query batch (None when it is whole)."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list) or not isinstance(
            body.get("done"), bool):
        return "no records list or done flag"
    if any(not isinstance(r, dict) for r in body["records"]):
        return "a record is not an object"
    next_url = body.get("nextRecordsUrl")
    # a relative locator only: the bearer token must never be sent to another host
    if not body["done"] and not (isinstance(next_url, str) and next_url.startswith("/services/data/")):
        return "done is false but nextRecordsUrl is not a /services/data/ path"
    return None


def _errors(response: httpx.Response) -> list[tuple[str, str]]:
    """``[{"errorCode", "message"}]`` of an error response."""
    try:
        body = response.json()
    except ValueError:
        return []
    items = body if isinstance(body, list) else [body]
    return [(str(i["errorCode"]), str(i.get("message") or "")) for i in items
            if isinstance(i, dict) and i.get("errorCode")]


def _describe_call(path: str) -> str:
    if "/describe" in path:
        return "describe of Opportunity"
    if "/query" in path:
        return "SOQL query"
    return path
