"""Isolation: a user of globex tries to read or change acme's data through every path.

Two organisations with data (synthetic ingest, transform, a metric, a rule, an action request,
a connection, an API token); a globex admin, editor and viewer, each with a real access token;
every attempt must fail closed or see only globex's rows.
"""

from __future__ import annotations

import datetime as dt
import json
from base64 import urlsafe_b64decode, urlsafe_b64encode

import polars as pl
import pytest

import workbench
from workbench.auth import access, service
from workbench.auth.context import RequestContext
from workbench.errors import (
    AuthenticationError,
    FormulaError,
    IsolationError,
    NotFoundError,
    PermissionDenied,
    QueryError,
    ValidationError,
)
from workbench.oltp import repo
from workbench.workspace import Workspace

PASSWORD = "correct horse battery"
DAYS = ("2026-11-01", "2026-11-05")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from workbench.settings import load_settings
    from workbench.stores import close_all, init

    settings = load_settings(home=tmp_path_factory.mktemp("iso") / "home", progress=False)
    stores = init(settings)
    ids = {}
    for org, currency in (("acme", "USD"), ("globex", "EUR")):
        repo.create_org(stores.db, org, org.title(), currency)
        ws = Workspace(stores, org)
        ws.ingest("synthetic", *DAYS, settings={"platforms": ["meta"], "crms": ["hubspot"], "as_of": DAYS[1]},
                  progress=False)
        ws.transform(progress=False)
        ws.define_metric(f"{org}_fee", "spend * 1.1")
        ids[org] = {"token": ws.create_token(f"{org}-nightly", "viewer"),
                    "token_id": ws.tokens()["id"][0],
                    "campaign": ws.table("gold.campaign_daily")["campaign_id"][0]}
        for role in ("admin", "editor", "viewer"):
            email = f"{role}@{org}.test"
            service.create_user(stores.db, email, role, PASSWORD, actor="local:test")
            service.grant(stores.db, org, email, role, actor="local:test")
    ids["acme"]["action"] = _action(stores, ids["acme"]["campaign"]).id
    yield stores, ids
    close_all()


def _action(stores, campaign):
    from connectors.writers import platform_writers
    from workbench.rules import actions

    return actions.request_action(stores.db, "acme", rule="guard", evaluation_id="ev-acme", platform="meta",
                                  level="campaign", entity_id=campaign, spec={"type": "pause"},
                                  mode="approval", writer=platform_writers.get("meta", stores, "acme"))


def login(stores, role, org="globex"):
    return service.login(stores.db, stores.settings, f"{role}@{org}.test", PASSWORD, org)


def as_globex(stores, role="admin"):
    return workbench.open("globex", stores.settings, token=login(stores, role))


def test_a_globex_token_never_opens_acme(world):
    stores, ids = world
    for role in ("admin", "editor", "viewer"):
        with pytest.raises(AuthenticationError, match="another organisation"):
            workbench.open("acme", stores.settings, token=login(stores, role))
    with pytest.raises(AuthenticationError, match="another organisation"):
        workbench.open("acme", stores.settings, token=ids["globex"]["token"])  # an API token
    with pytest.raises(IsolationError):
        Workspace(stores, "acme", RequestContext("user:admin@globex.test", "globex", "admin"))
    with pytest.raises(AuthenticationError):  # a member of acme only, logging in to globex
        service.login(stores.db, stores.settings, "admin@acme.test", PASSWORD, "globex")


def test_tampered_expired_and_wrongly_signed_tokens_fail_closed(world, tmp_path):
    from workbench.settings import load_settings

    stores, _ = world
    token = login(stores, "viewer")
    head, body, sig = token.split(".")
    claims = json.loads(urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = urlsafe_b64encode(json.dumps(claims | {"org": "acme", "role": "admin"}).encode()).rstrip(b"=").decode()
    expired = access.issue(stores.settings, user_id=claims["sub"], email="viewer@globex.test", org_id="globex",
                           role="viewer", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    elsewhere = access.issue(load_settings(home=tmp_path / "other", progress=False), user_id=claims["sub"],
                             email="viewer@globex.test", org_id="acme", role="admin")
    required = load_settings(home=stores.settings.home, progress=False, auth="required")
    for org in ("acme", "globex"):
        for bad in (f"{head}.{forged}.{sig}", expired, elsewhere, token[:-2] + "xx", "wbt_0000000000000000_" + "A" * 43):
            with pytest.raises(AuthenticationError):
                workbench.open(org, stores.settings, token=bad)
        with pytest.raises(AuthenticationError):  # no token at all, where one is required
            workbench.open(org, required)


def test_queries_see_only_their_organisation_whatever_the_sql_says(world):
    stores, _ = world
    ws = as_globex(stores, "viewer")
    own = ws.query("SELECT count() AS n FROM gold.performance_daily")["n"][0]
    assert own > 0
    for sql in ("SELECT count() AS n FROM gold.performance_daily WHERE org_id = 'acme'",
                "SELECT count() AS n FROM gold.performance_daily WHERE org_id != 'globex'",
                "SELECT count() AS n FROM (SELECT * FROM silver.ad_performance_daily) WHERE org_id = 'acme'",
                "WITH a AS (SELECT * FROM gold.campaign_daily WHERE org_id = 'acme') SELECT count() AS n FROM a"):
        assert ws.query(sql)["n"][0] == 0, sql
    for sql, message in (
            ("SELECT * FROM icebergLocal('/tmp/warehouse/gold/performance_daily')", "table functions"),
            ("SELECT * FROM system.tables", "unknown table"),
            ("SELECT 1; SELECT * FROM gold.performance_daily", "one statement"),
            ("SELECT * FROM gold.performance_daily SETTINGS max_threads = 1", "SETTINGS"),
            ("INSERT INTO gold.performance_daily SELECT * FROM gold.performance_daily", "read statements"),
            ("SELECT * FROM file('/etc/passwd')", "table functions")):
        with pytest.raises(QueryError, match=message):
            ws.query(sql)
    with pytest.raises((QueryError, ValidationError)):
        ws.query("SELECT count() FROM gold.performance_daily WHERE org_id = {wb_org:String}", {"wb_org": "acme"})


def test_tables_formulas_and_rule_scopes_cannot_name_another_organisation(world):
    stores, _ = world
    ws = as_globex(stores, "editor")
    for name in ("gold.performance_daily", "silver.campaigns", "silver.crm_deals", "bronze.raw_records"):
        assert set(ws.table(name)["org_id"].unique().to_list()) <= {"globex"}, name
    with pytest.raises(FormulaError):
        ws.metrics(["spend"], where="org_id = 'acme'")
    with pytest.raises(FormulaError, match="unknown metric 'acme_fee'"):
        ws.metrics(["acme_fee"])  # acme's own metric is not globex's
    totals = ws.metrics(["spend"], by=["platform"])
    assert totals.height == 1
    with pytest.raises((ValidationError, FormulaError)):
        ws.rules.preview({"name": "peek", "level": "campaign", "condition": "spend[last_7d] > 0",
                          "scope": "org_id = 'acme'", "actions": []})


def test_direct_ids_of_another_organisation_are_not_found(world):
    stores, ids = world
    admin = as_globex(stores, "admin")
    acme = ids["acme"]
    with pytest.raises(NotFoundError):
        admin.rules.approve(acme["action"])
    with pytest.raises(NotFoundError):
        admin.rules.reject(acme["action"])
    with pytest.raises(NotFoundError):
        admin.revoke_token(acme["token_id"])
    assert acme["token_id"] not in admin.tokens()["id"].to_list()
    assert admin.rules.actions().is_empty()
    with pytest.raises(NotFoundError, match="never defined a metric 'acme_fee'"):
        admin.metric_history("acme_fee")
    with pytest.raises(NotFoundError):
        admin.remove_connection("does-not-exist")
    assert set(admin.audit()["org_id"].unique().to_list()) <= {"globex"}
    assert set(admin.members()["email"].to_list()) == {"admin@globex.test", "editor@globex.test",
                                                        "viewer@globex.test"}
    with pytest.raises(NotFoundError):
        admin.revoke_member("admin@acme.test")
    # the acme API token still works for acme only
    assert workbench.open("acme", stores.settings, token=acme["token"]).ctx.org_id == "acme"


def test_roles_bound_what_a_globex_user_can_change(world):
    stores, _ = world
    viewer = as_globex(stores, "viewer")
    for attempt in (lambda: viewer.define_metric("x", "spend"), lambda: viewer.ingest("synthetic", *DAYS),
                    lambda: viewer.transform(), lambda: viewer.rules.evaluate(),
                    lambda: viewer.add_connection("synthetic", "s2"), lambda: viewer.grant("viewer@globex.test", "admin"),
                    lambda: viewer.create_token("t", "viewer"), lambda: viewer.audit(), lambda: viewer.usage()):
        with pytest.raises(PermissionDenied):
            attempt()
    editor = as_globex(stores, "editor")
    for attempt in (lambda: editor.grant("viewer@globex.test", "admin"), lambda: editor.create_token("t", "viewer"),
                    lambda: editor.remove_connection("synthetic"), lambda: editor.audit()):
        with pytest.raises(PermissionDenied):
            attempt()


def test_a_revoked_member_and_a_revoked_token_lose_access_at_once(world):
    stores, _ = world
    admin = as_globex(stores, "admin")
    service.create_user(stores.db, "temp@globex.test", "temp", PASSWORD, actor="local:test")
    admin.grant("temp@globex.test", "editor")
    token = service.login(stores.db, stores.settings, "temp@globex.test", PASSWORD, "globex")
    api = admin.create_token("short-lived", "viewer")
    assert workbench.open("globex", stores.settings, token=token).ctx.role == "editor"
    admin.revoke_member("temp@globex.test")
    admin.revoke_token(admin.tokens().filter(pl.col("name") == "short-lived")["id"][0])
    for t in (token, api):
        with pytest.raises(AuthenticationError):
            workbench.open("globex", stores.settings, token=t)


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_every_public_operation_refuses_a_context_of_another_organisation(world, role):
    """Whatever the operation and its arguments, a context for globex on acme's workspace fails
    closed before the operation runs (the guard comes first; arguments are never looked at)."""
    from workbench.config_service import WorkspaceConfigs

    stores, _ = world
    ws = Workspace(stores, "acme")
    object.__setattr__(ws, "ctx", RequestContext(f"user:{role}@globex.test", "globex", role))  # as if smuggled in
    checked = 0
    for obj in (ws, ws.rules, WorkspaceConfigs(ws)):
        for name, fn in vars(type(obj)).items():
            if hasattr(fn, "__permission__"):
                with pytest.raises(IsolationError, match="acts for organisation 'globex', not 'acme'"):
                    getattr(obj, name)()
                checked += 1
    assert checked >= 40, checked
