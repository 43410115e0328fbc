"""A local Meta Graph API (v21.0 shapes) for the connector tests.

Serves the endpoints the Meta connector uses, with Meta's payloads: ``GET /me/adaccounts``,
``GET /{act}``, ``GET /{act}/campaigns``, ``POST /{act}/insights`` (an async report run),
``GET /{run}`` (job status), ``GET /{run}/insights`` (results), ``GET /{id}`` and ``POST /{id}``
(campaigns, ad sets and ads). Lists are cursor-paged (``limit``, ``after``, ``paging.cursors`` /
``paging.next``); errors are Graph API error bodies (``{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}``); a bearer token that is not in force gets error 190.

Test controls besides the base's faults: ``rows`` (report rows by (ad id, day), editable),
``next_jobs`` (outcomes of the next jobs: "failed", "skipped", "stalled"), ``bad_days`` (every
job covering one of these (act, day) fails), ``usage`` (usage headers sent on every answer),
``extra_fields`` / ``dropped_fields`` (a schema change in report rows), ``writes`` (every update
applied) and ``error(...)`` / ``throttle(...)`` to build Meta error replies for ``fail_next``.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from typing import Any

from platform_fakes import FakePlatform, Reply, Request

TOKEN = "EAAGm0PX4ZCpsBAsecret-long-lived-token"
USD_ACT, EUR_ACT = "act_1001", "act_2002"


def cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def error(code: int, message: str, *, subcode: int | None = None, status: int = 400,
          kind: str = "OAuthException", headers: dict[str, str] | None = None, transient: bool = False) -> Reply:
    """A Graph API error reply."""
    body: dict[str, Any] = {"message": message, "type": kind, "code": code, "is_transient": transient,
                            "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        body["error_subcode"] = subcode
    return Reply(status, {"error": body}, headers or {})


def throttle(code: int = 80004, minutes: int = 0, *, business: str = "555") -> Reply:
    """A business-use-case throttle reply with its usage header."""
    usage = {business: [{"type": "ads_insights", "call_count": 100, "total_cputime": 40, "total_time": 60,
                         "estimated_time_to_regain_access": minutes}]}
    return error(code, "There have been too many calls to this ad-account. Wait a bit and try again.",
                 subcode=2446079, headers={"X-Business-Use-Case-Usage": json.dumps(usage)})


def split_by_platform(row: dict[str, Any], breakdowns: list[str]) -> list[dict[str, Any]]:
    """With ``breakdowns=["publisher_platform"]``: the row as Meta splits it, 60% on facebook and
    the rest on instagram (conversion lists stay with facebook); otherwise the row itself."""
    if breakdowns != ["publisher_platform"]:
        return [row]
    fb = {**row, "publisher_platform": "facebook"}
    ig = {k: v for k, v in row.items() if k not in ("actions", "action_values", "video_thruplay_watched_actions")}
    ig["publisher_platform"] = "instagram"
    for key in ("spend", "impressions", "clicks", "reach"):
        if key in row:
            whole = float(row[key])
            part = round(whole * 0.6, 2) if key == "spend" else int(whole * 0.6)
            fb[key] = f"{part:.2f}" if key == "spend" else str(part)
            ig[key] = f"{whole - part:.2f}" if key == "spend" else str(int(whole) - int(part))
    return [fb, ig]


class FakeMeta(FakePlatform):
    """Two ad accounts (USD and EUR), two campaigns each, one ad set per campaign, two ads per ad set,
    rows on ``days`` days ending yesterday."""

    def __init__(self, days: int = 6, today: dt.date | None = None) -> None:
        super().__init__()
        self.access_tokens.add(TOKEN)
        self.today = today or dt.datetime.now(dt.UTC).date()
        self.days = [self.today - dt.timedelta(days=i) for i in range(days, 0, -1)]
        self.accounts: dict[str, dict[str, Any]] = {
            USD_ACT: {"id": USD_ACT, "account_id": "1001", "name": "Acme US", "currency": "USD", "account_status": 1},
            EUR_ACT: {"id": EUR_ACT, "account_id": "2002", "name": "Acme DE", "currency": "EUR", "account_status": 1},
        }
        # nodes: campaigns, ad sets, ads by id; each with "_type" and Meta's fields
        self.nodes: dict[str, dict[str, Any]] = {}
        self.rows: dict[tuple[str, dt.date], dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.next_jobs: list[str] = []
        self.bad_days: set[tuple[str, dt.date]] = set()
        self.usage: dict[str, str] = {}
        self.extra_fields: dict[str, Any] = {}
        self.dropped_fields: set[str] = set()
        self.writes: list[tuple[str, dict[str, str]]] = []
        self.write_faults: list[Any] = []  # faults for the next updates (POST /{id}) only
        self._ids = itertools.count(1)
        self._build()
        self.route("GET", r"/me/adaccounts", self.get_adaccounts)
        self.route("GET", r"/(act_\d+)", self.get_account)
        self.route("GET", r"/(act_\d+)/campaigns", self.get_campaigns)
        self.route("POST", r"/(act_\d+)/insights", self.post_insights)
        self.route("GET", r"/(\d+)/insights", self.get_results)
        self.route("GET", r"/(\d+)", self.get_node)
        self.route("POST", r"/(\d+)", self.post_node)

    # -- data ----------------------------------------------------------------------------------

    def _build(self) -> None:
        for a, act in enumerate(self.accounts.values()):
            account_id = act["account_id"]
            for c in range(2):
                cid = f"12000{account_id}{c}"
                budget = {"daily_budget": str(5000 * (c + 1))} if c == 0 else {"lifetime_budget": "250000"}
                self.nodes[cid] = {
                    "_type": "campaign", "id": cid, "account_id": account_id,
                    "name": f"{act['name']} campaign {c}", "status": "ACTIVE" if c == 0 else "PAUSED",
                    "effective_status": "ACTIVE" if c == 0 else "PAUSED", "objective": "OUTCOME_SALES",
                    "buying_type": "AUCTION", **budget,
                    "start_time": f"{self.days[0]}T00:00:00-0500", "created_time": "2026-01-05T10:12:31-0500",
                    "updated_time": "2026-02-01T09:00:00+0000", "adlabels": [{"id": "77", "name": f"label{a}"}],
                }
                if c == 1:
                    self.nodes[cid]["stop_time"] = f"{self.today + dt.timedelta(days=30)}T23:59:59-0500"
                sid = f"{cid}1"
                self.nodes[sid] = {"_type": "adset", "id": sid, "account_id": account_id, "campaign_id": cid,
                                   "name": f"set {cid}", "status": "ACTIVE"}
                for k in range(2):
                    ad = f"{sid}{k}"
                    self.nodes[ad] = {"_type": "ad", "id": ad, "account_id": account_id, "adset_id": sid,
                                      "campaign_id": cid, "name": f"ad {ad}", "status": "ACTIVE"}
                    for d, day in enumerate(self.days):
                        self.rows[(ad, day)] = self._row(act, self.nodes[cid], self.nodes[sid], ad, day,
                                                         1 + a * 7 + c * 3 + k * 2 + d)

    def _row(self, act: dict[str, Any], campaign: dict[str, Any], adset: dict[str, Any], ad: str,
             day: dt.date, n: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "account_id": act["account_id"], "account_name": act["name"], "account_currency": act["currency"],
            "campaign_id": campaign["id"], "campaign_name": campaign["name"], "adset_id": adset["id"],
            "adset_name": adset["name"], "ad_id": ad, "ad_name": f"ad {ad}", "spend": f"{n * 1.25:.2f}",
            "impressions": str(1000 * n), "clicks": str(10 * n), "reach": str(800 * n),
            "actions": [{"action_type": "link_click", "value": str(8 * n)},
                        {"action_type": "offsite_conversion.fb_pixel_lead", "value": "1"},
                        {"action_type": "offsite_conversion.fb_pixel_purchase", "value": str(n % 3)}],
            "action_values": [{"action_type": "offsite_conversion.fb_pixel_purchase", "value": f"{n * 10.5:.2f}"}],
            "date_start": day.isoformat(), "date_stop": day.isoformat(),
        }
        if n % 2:  # Meta omits a list with nothing in it
            row["video_thruplay_watched_actions"] = [{"action_type": "video_view", "value": str(50 * n)}]
        return row

    def served_rows(self, start: dt.date | None = None, end: dt.date | None = None) -> list[dict[str, Any]]:
        return [r for (_, day), r in sorted(self.rows.items())
                if (start is None or day >= start) and (end is None or day <= end)]

    def campaigns(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes.values() if n["_type"] == "campaign"]

    # -- helpers -------------------------------------------------------------------------------

    def ok(self, body: Any) -> Reply:
        return Reply(200, body, dict(self.usage))

    def new_id(self) -> str:
        return f"6{next(self._ids):012d}"

    def page(self, request: Request, items: list[dict[str, Any]]) -> Reply:
        limit = int(request.arg("limit", "25") or 25)
        after = request.arg("after")
        start = int(base64.b64decode(after).decode().split(":")[1]) if after else 0
        chunk = items[start:start + limit]
        body: dict[str, Any] = {"data": chunk}
        if chunk:
            body["paging"] = {"cursors": {"before": cursor(start), "after": cursor(start + len(chunk))}}
            if start + len(chunk) < len(items):
                body["paging"]["next"] = (f"https://graph.facebook.com/v21.0{request.path}?limit={limit}"
                                          f"&after={cursor(start + len(chunk))}")
        return self.ok(body)

    @staticmethod
    def fields(request: Request, source: dict[str, str] | None = None) -> list[str]:
        value = (source or {}).get("fields") if source else request.arg("fields")
        return [f for f in (value or "").split(",") if f]

    def unknown_object(self, node_id: str) -> Reply:
        return error(100, f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot be "
                          "loaded due to missing permissions, or does not support this operation.", subcode=33)

    def unauthorised(self, request: Request) -> Reply:
        token = self.bearer(request) or ""
        # Meta echoes a malformed token in its message: the connector must mask it
        message = (f"Malformed access token {token}" if token and not token.startswith("EAAG")
                   else "Error validating access token: Session has expired.")
        return error(190, message, subcode=463, status=401)

    def _next_fault(self, request: Request, exempt: bool) -> Any:
        with self.lock:
            if self.write_faults and request.method == "POST" and request.path[1:].isdigit():
                return self.write_faults.pop(0)
        return super()._next_fault(request, exempt)

    # -- endpoints -----------------------------------------------------------------------------

    def get_adaccounts(self, request: Request) -> Reply:
        wanted = self.fields(request) or ["id"]
        return self.page(request, [{k: a[k] for k in wanted if k in a} for a in self.accounts.values()])

    def get_account(self, request: Request) -> Reply:
        act = request.match.group(1) if request.match else ""
        if act not in self.accounts:
            return self.unknown_object(act)
        wanted = self.fields(request) or ["id"]
        return self.ok({k: self.accounts[act][k] for k in wanted if k in self.accounts[act]})

    def get_campaigns(self, request: Request) -> Reply:
        act = request.match.group(1) if request.match else ""
        if act not in self.accounts:
            return self.unknown_object(act)
        wanted = self.fields(request) or ["id"]
        account_id = self.accounts[act]["account_id"]
        found = [{k: c[k] for k in wanted if k in c} for c in self.campaigns() if c["account_id"] == account_id]
        return self.page(request, found)

    def post_insights(self, request: Request) -> Reply:
        act = request.match.group(1) if request.match else ""
        if act not in self.accounts:
            return self.unknown_object(act)
        form = request.form()
        span = json.loads(form["time_range"])
        since, until = dt.date.fromisoformat(span["since"]), dt.date.fromisoformat(span["until"])
        wanted = set(self.fields(request, form)) | {"date_start", "date_stop"}
        account_id = self.accounts[act]["account_id"]
        breakdowns = json.loads(form.get("breakdowns") or "[]")
        rows = []
        for r in self.served_rows(since, until):
            if r["account_id"] == account_id:
                row = {k: v for k, v in r.items() if k in wanted and k not in self.dropped_fields}
                rows.extend({**part, **self.extra_fields} for part in split_by_platform(row, breakdowns))
        with self.lock:
            outcome = self.next_jobs.pop(0) if self.next_jobs else "ok"
            if any(a == act and since <= d <= until for a, d in self.bad_days):
                outcome = "failed"
            run_id = self.new_id()
            self.jobs[run_id] = {"act": act, "since": since, "until": until, "params": form, "rows": rows,
                                 "outcome": outcome, "polls": 0}
        return self.ok({"report_run_id": run_id})

    def job_status(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            job = self.jobs[run_id]
            job["polls"] += 1
            polls, outcome = job["polls"], job["outcome"]
        status, percent = "Job Running", min(100, 50 * (polls - 1))
        if polls == 1:
            status = "Job Not Started"
        elif outcome == "stalled":
            status, percent = "Job Running", 10
        elif outcome == "failed" and polls >= 2:
            status = "Job Failed"
        elif outcome == "skipped" and polls >= 2:
            status = "Job Skipped"
        elif percent >= 100:
            status = "Job Completed"
        return {"id": run_id, "account_id": self.accounts[job["act"]]["account_id"], "async_status": status,
                "async_percent_completion": percent, "date_start": job["since"].isoformat(),
                "date_stop": job["until"].isoformat(), "is_running": status == "Job Running"}

    def get_results(self, request: Request) -> Reply:
        run_id = request.match.group(1) if request.match else ""
        job = self.jobs.get(run_id)
        if job is None:
            return self.unknown_object(run_id)
        return self.page(request, job["rows"])

    def get_node(self, request: Request) -> Reply:
        node_id = request.match.group(1) if request.match else ""
        if node_id in self.jobs:
            return self.ok(self.job_status(node_id))
        node = self.nodes.get(node_id)
        if node is None:
            return self.unknown_object(node_id)
        wanted = self.fields(request) or ["id"]
        allowed = {"campaign": {"daily_budget", "lifetime_budget", "objective"},
                   "adset": {"daily_budget", "lifetime_budget", "campaign_id"},
                   "ad": {"adset_id", "campaign_id"}}[node["_type"]] | {"id", "name", "status", "account_id"}
        bad = [f for f in wanted if f not in allowed]
        if bad:
            node_type = {"campaign": "Campaign", "adset": "AdSet", "ad": "Ad"}[node["_type"]]
            return error(100, f"(#100) Tried accessing nonexisting field ({bad[0]}) on node type ({node_type})")
        return self.ok({k: node[k] for k in wanted if k in node})

    def post_node(self, request: Request) -> Reply:
        node_id = request.match.group(1) if request.match else ""
        node = self.nodes.get(node_id)
        if node is None:
            return self.unknown_object(node_id)
        change = request.form()
        status = change.get("status")
        if status is not None and status not in ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED"):
            return error(100, "(#100) Param status must be one of {ACTIVE, PAUSED, DELETED, ARCHIVED}")
        for budget in ("daily_budget", "lifetime_budget"):
            if budget in change:
                if node["_type"] == "ad" or budget not in node:
                    return error(100, f"(#100) Invalid parameter: {budget} cannot be set on this object",
                                 subcode=1885272)
                if not change[budget].isdigit():
                    return error(100, f"(#100) Invalid parameter: {budget} must be an integer in minor units")
        with self.lock:
            self.writes.append((node_id, change))
            node.update(change)
            if status is not None and node["_type"] == "campaign":
                node["effective_status"] = status
        return self.ok({"success": True})
