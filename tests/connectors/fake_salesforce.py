"""A local Salesforce org for the connector tests, following the REST API's documented contract.

- ``POST /services/oauth2/token`` (``grant_type=refresh_token``): an access token without
  ``expires_in`` and the org's ``instance_url`` (its own URL, or ``instance_url`` when set, so a
  login server and an instance server can be two fakes sharing one token set);
  ``invalid_client`` / ``invalid_grant`` otherwise;
- ``GET /services/data/vXX.X/sobjects/Opportunity/describe``: the org's Opportunity fields
  (``CurrencyIsoCode`` only in multi-currency orgs, the org's own UTM field names);
- ``GET /services/data/vXX.X/query?q=SOQL``: ``SELECT <fields> FROM Opportunity WHERE
  LastModifiedDate >= <t> AND LastModifiedDate < <t> [AND (LastModifiedDate > <t> OR
  (LastModifiedDate = <t> AND Id > '<id>'))] ORDER BY LastModifiedDate, Id`` and ``SELECT ... FROM
  Organization``; at most ``batch_size`` records per batch, the rest behind ``nextRecordsUrl``
  (``GET /services/data/vXX.X/query/01g...-<offset>``); unknown fields -> 400 ``INVALID_FIELD``
  with Salesforce's message, other text -> 400 ``MALFORMED_QUERY``;
- every API answer carries ``Sforce-Limit-Info: api-usage=n/m``; past the allocation: 403
  ``REQUEST_LIMIT_EXCEEDED``; an expired session: 401 ``INVALID_SESSION_ID``; ``deny`` set to an
  error code (``INSUFFICIENT_ACCESS``...) refuses every data call with 403 and that code;
- amounts of ten million and more are written as Salesforce writes them (``1.5E7``).

Schema changes: ``row_extras`` (fields added to every row, even unselected: a new field the
connector does not know) and ``omitted`` (record id -> keys left out of its rows).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
from typing import Any

from platform_fakes import FakePlatform, Reply, Request

STAMP = "%Y-%m-%dT%H:%M:%S.000+0000"
STANDARD_FIELDS = ("Id", "Name", "Amount", "StageName", "IsClosed", "IsWon", "CreatedDate", "CloseDate",
                   "LeadSource", "LastModifiedDate", "Probability", "Type", "AccountId", "OwnerId")
UTM = ("UTM_Source__c", "UTM_Medium__c", "UTM_Campaign__c")
_SELECT = re.compile(r"^SELECT (?P<fields>.+?) FROM (?P<object>\w+)(?: WHERE (?P<where>.+?))?"
                     r"(?: ORDER BY (?P<order>.+))?$", re.S)
_AFTER = re.compile(r"\(LastModifiedDate > (\S+) OR \(LastModifiedDate = (\S+) AND Id > '([^']*)'\)\)")


def stamp(moment: dt.datetime) -> str:
    return moment.strftime(STAMP)


def _soql_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _sf_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, [{"message": message, "errorCode": code}])


def sf_json(body: Any) -> Reply:
    """A 200 JSON reply with large amounts in Salesforce's exponent notation."""
    text = json.dumps(body)
    text = re.sub(r'"Amount": (\d{8,})\.0\b', lambda m: f'"Amount": {_exponent(int(m.group(1)))}', text)
    return Reply(200, text, {"Content-Type": "application/json;charset=UTF-8"})


def _exponent(value: int) -> str:
    digits = str(value).rstrip("0")
    return f"{digits[0]}.{digits[1:] or '0'}E{len(str(value)) - 1}"


class FakeSalesforce(FakePlatform):
    """One Salesforce org: its opportunities, fields, API allocation and tokens."""

    def __init__(self, *, org_id: str = "00D5e000000AbCdEAF", org_name: str = "Acme Corp",
                 currency: str = "USD", multi_currency: bool = True, utm_fields: dict[str, str] | None = None,
                 custom_fields: tuple[str, ...] = ("Region__c",), batch_size: int = 2000,
                 api_limit: int = 100_000) -> None:
        super().__init__()
        self.org_id, self.org_name, self.currency = org_id, org_name, currency
        self.multi_currency = multi_currency
        self.utm_fields = {k: (utm_fields or {}).get(k, k) for k in UTM}
        self.custom_fields = custom_fields
        self.batch_size = batch_size
        self.api_limit = api_limit
        self.api_used = 0
        self.client_id, self.client_secret = "3MVG9-consumer-key", "consumer-secret-8c1f2e"
        self.refresh_token = "5Aep861-refresh-token-b7d4"
        self.refresh_tokens.add(self.refresh_token)
        self.instance_url: str | None = None
        self.issued: list[str] = []  # every access token handed out
        self.deny: str | None = None
        self.opportunities: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str] = {}  # the tests' names of seeded opportunities
        self.row_extras: dict[str, Any] = {}
        self.omitted: dict[str, set[str]] = {}
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        self.expire_tokens_after: int | None = None  # data calls served before every token expires
        self._serial = itertools.count(1)
        self.route("POST", "/services/oauth2/token", self.token, auth=False)
        version = r"/services/data/(?P<version>v\d+\.\d)"
        self._api("GET", f"{version}/sobjects/Opportunity/describe", self.describe)
        self._api("GET", f"{version}/query/?", self.query)
        self._api("GET", f"{version}/query/(?P<cursor>01g\\w+)-(?P<offset>\\d+)", self.query_more)

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "refresh_token": self.refresh_token}

    # -- data ------------------------------------------------------------------------------------

    def add(self, name: str, amount: float | None, created: dt.datetime, modified: dt.datetime, *,
            currency: str | None = None, stage: str = "Prospecting", close: dt.date | None = None,
            lead_source: str | None = "Web", utm: tuple[str | None, str | None, str | None] = (None, None, None),
            **extra: Any) -> str:
        """Store an opportunity (in the org's own field names); return its id."""
        sf_id = f"0065e{next(self._serial):010d}AAQ"
        closed = stage in ("Closed Won", "Closed Lost")
        record: dict[str, Any] = {
            "Id": sf_id, "Name": name, "Amount": amount, "StageName": stage, "IsClosed": closed,
            "IsWon": stage == "Closed Won", "CreatedDate": stamp(created),
            "CloseDate": (close or created.date() + dt.timedelta(days=30)).isoformat(),
            "LeadSource": lead_source, "LastModifiedDate": stamp(modified), "Probability": 10.0,
            "Type": "New Customer", "AccountId": "0015e00000Acme01AAQ", "OwnerId": "0055e00000Owner1AAQ",
            **{f: None for f in self.custom_fields},
            **{self.utm_fields[k]: v for k, v in zip(UTM, utm, strict=True)}, **extra,
        }
        if self.multi_currency:
            record["CurrencyIsoCode"] = currency or self.currency
        self.opportunities[sf_id] = record
        return sf_id

    def update(self, sf_id: str, modified: dt.datetime, **changes: Any) -> None:
        """Change an opportunity (a restatement): its fields and ``LastModifiedDate``."""
        self.opportunities[sf_id].update(changes, LastModifiedDate=stamp(modified))

    def fields(self) -> list[str]:
        names = [*STANDARD_FIELDS, *self.utm_fields.values(), *self.custom_fields]
        return [*names, "CurrencyIsoCode"] if self.multi_currency else names

    # -- endpoints ---------------------------------------------------------------------------------

    def _api(self, method: str, pattern: str, handler: Any) -> None:
        """A data endpoint: counted against the allocation, answered with the usage header."""
        def serve(request: Request) -> Reply:
            with self.lock:
                if self.api_used >= self.api_limit:
                    reply = _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                else:
                    self.api_used += 1
                    reply = _error(403, self.deny, "insufficient access rights on object id") if self.deny \
                        else handler(request)
                    if self.expire_tokens_after is not None:
                        self.expire_tokens_after -= 1
                        if self.expire_tokens_after <= 0:
                            self.expire_tokens_after = None
                            self.expire_tokens()
                reply.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.api_limit}"
                return reply

        self.route(method, pattern, serve)

    def unauthorised(self, request: Request) -> Reply:
        return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def token(self, request: Request) -> Reply:
        form = request.form()
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.refresh_tokens:
            return Reply(400, {"error": "invalid_grant", "error_description": "expired access/refresh token"})
        token = f"{self.org_id}!{self.issue_token()}"
        self.issued.append(token)
        return Reply(200, {"access_token": token,
                           "instance_url": self.instance_url or self.url,
                           "id": f"{self.url}/id/{self.org_id}/0055e00000Owner1AAQ", "token_type": "Bearer",
                           "issued_at": str(int(time.time() * 1000)), "signature": "c2lnbmF0dXJl",
                           "scope": "api refresh_token"})

    def authorised(self, request: Request) -> bool:
        token = self.bearer(request) or ""
        return token.split("!", 1)[-1] in self.access_tokens

    def describe(self, request: Request) -> Reply:
        types = {"Amount": "currency", "IsClosed": "boolean", "IsWon": "boolean", "CloseDate": "date",
                 "CreatedDate": "datetime", "LastModifiedDate": "datetime", "Id": "id"}
        return sf_json({"name": "Opportunity", "label": "Opportunity", "queryable": True, "fields": [
            {"name": f, "label": f.removesuffix("__c").replace("_", " "), "type": types.get(f, "string"),
             "custom": f.endswith("__c")} for f in self.fields()]})

    def query(self, request: Request) -> Reply:
        soql = " ".join((request.arg("q") or "").split())
        m = _SELECT.match(soql)
        if m is None:
            return _error(400, "MALFORMED_QUERY", f"unexpected token: '{soql[:20]}'")
        fields = [f.strip() for f in m["fields"].split(",")]
        version = request.match["version"] if request.match else "v62.0"
        if m["object"] == "Organization":
            rows = [{"Id": self.org_id, "Name": self.org_name, "DefaultCurrencyIsoCode": self.currency}]
            known = ["Id", "Name", "DefaultCurrencyIsoCode"]
        elif m["object"] == "Opportunity":
            rows, known = self._opportunities(m["where"] or ""), self.fields()
        else:
            return _error(400, "INVALID_TYPE", f"sObject type '{m['object']}' is not supported.")
        by_lower = {k.lower(): k for k in known}
        for f in fields:
            if f.lower() not in by_lower:
                return _error(400, "INVALID_FIELD", (
                    f"\n{soql[:60]}\n ^\nERROR at Row:1:Column:8\nNo such column '{f}' on entity "
                    f"'{m['object']}'. If you are attempting to use a custom field, be sure to append the "
                    "'__c' after the custom field name. Please reference your WSDL or the describe call "
                    "for the appropriate names."))
        out = []
        for row in rows:
            skip = self.omitted.get(row["Id"], set())
            record = {"attributes": {"type": m["object"],
                                     "url": f"/services/data/{version}/sobjects/{m['object']}/{row['Id']}"}}
            record.update({by_lower[f.lower()]: row.get(by_lower[f.lower()]) for f in fields
                           if by_lower[f.lower()] not in skip})
            if m["object"] == "Opportunity":
                record.update(self.row_extras)
            out.append(record)
        cursor = f"01g5e{next(self._serial):013d}"
        self.cursors[cursor] = out
        return self._batch(version, cursor, 0)

    def query_more(self, request: Request) -> Reply:
        assert request.match is not None
        cursor, offset = request.match["cursor"], int(request.match["offset"])
        if cursor not in self.cursors:
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._batch(request.match["version"], cursor, offset)

    def _batch(self, version: str, cursor: str, offset: int) -> Reply:
        rows = self.cursors[cursor]
        batch = rows[offset:offset + self.batch_size]
        done = offset + len(batch) >= len(rows)
        body: dict[str, Any] = {"totalSize": len(rows), "done": done, "records": batch}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{cursor}-{offset + len(batch)}"
        return sf_json(body)

    def _opportunities(self, where: str) -> list[dict[str, Any]]:
        lo = re.search(r"LastModifiedDate >= (\S+)", where)
        hi = re.search(r"LastModifiedDate < (\S+)", where)
        after = _AFTER.search(where)
        rows = self.modified_between(_soql_time(lo.group(1)) if lo else None, _soql_time(hi.group(1)) if hi else None)
        if after:  # resuming a cursor: strictly after (LastModifiedDate, Id)
            at = _soql_time(after.group(1))
            rows = [r for r in rows if (_sf_time(r["LastModifiedDate"]), r["Id"]) > (at, after.group(3))]
        return rows

    def modified_between(self, start: dt.datetime | None, end: dt.datetime | None) -> list[dict[str, Any]]:
        """Opportunities with ``start <= LastModifiedDate < end``, by (LastModifiedDate, Id)."""
        rows = [r for r in self.opportunities.values()
                if (start is None or start <= _sf_time(r["LastModifiedDate"]))
                and (end is None or _sf_time(r["LastModifiedDate"]) < end)]
        return sorted(rows, key=lambda r: (r["LastModifiedDate"], r["Id"]))

    # -- assertions ------------------------------------------------------------------------------

    def queries(self) -> list[str]:
        """The SOQL text of every query request received."""
        return [" ".join((r.arg("q") or "").split()) for r in self.requests_to(r"/query/?$")]
