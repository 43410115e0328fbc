"""The Salesforce connector against a local org: SOQL paging, instance_url, limits, errors, ingest."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import Counter
from typing import Any

import polars as pl
import pytest
from connector_helpers import FAST, connect, workspace
from fake_salesforce import FakeSalesforce
from platform_fakes import Reply

from connectors.base import Account, ConnectionConfig, PermanentWriteError, Window
from connectors.salesforce import SalesforceConnector
from connectors.synthetic import SyntheticConnector
from workbench.errors import (
    AccessError,
    AuthError,
    FinalApiError,
    QuotaExceededError,
    RequestError,
    ValidationError,
)
from workbench.oltp import repo

TODAY = dt.datetime.now(dt.UTC).date()
WINDOW = Window(TODAY - dt.timedelta(days=3), TODAY)
DEAL_COLUMNS = ("deal_id", "name", "amount", "currency", "stage", "is_closed", "is_won", "source",
                "utm_source", "utm_medium", "utm_campaign")


def at(days_ago: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    day = TODAY - dt.timedelta(days=days_ago)
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def seed(fake: FakeSalesforce) -> dict[str, str]:
    """A few opportunities: six modified in WINDOW (two at the same moment), one before it."""
    ids = {
        "won": fake.add("Acme renewal", 1200.0, at(5), at(3), stage="Closed Won", close=at(3).date(),
                        lead_source="Advertisement", utm=("facebook", "paid_social", "Spring Sale")),
        "big": fake.add("Beta expansion", 15_000_000.0, at(3, 8), at(2, 9), currency="EUR",
                        stage="Negotiation/Review", lead_source="Advertisement", utm=("dv360", "display", "222")),
        "lost": fake.add("Gamma new", 850, at(2, 9), at(2, 11, 30), currency="GBP", stage="Closed Lost",
                         close=at(2).date()),
        "open": fake.add("Delta", None, at(1, 12), at(1, 13), utm=("ttd", "cpm", "Retarget")),
        "today": fake.add("Epsilon", 4321.99, at(1, 7), at(0, 0, 5), stage="Closed Won", close=TODAY,
                          lead_source="Advertisement", utm=("facebook", "paid_social", "Spring Sale")),
        "tie": fake.add("Eta", 2500.0, at(4), at(3), stage="Qualification"),
        "old": fake.add("Zeta", 99.5, at(12), at(10), stage="Prospecting"),
    }
    return ids


@pytest.fixture(autouse=True)
def registered() -> None:
    from connectors.registry import connectors

    connectors.register("salesforce", SalesforceConnector)


@pytest.fixture
def fake():
    with FakeSalesforce(batch_size=3) as f:
        f.ids = seed(f)
        yield f


def settings(fake: FakeSalesforce, **extra: Any) -> dict[str, Any]:
    return {**FAST, "base_url": fake.url, "login_url": fake.url, **extra}


def connector(fake: FakeSalesforce | None, stored: list[dict[str, str]] | None = None,
              **extra: Any) -> SalesforceConnector:
    config = ConnectionConfig(org_id="acme", connection_id="conn-sf",
                              settings=settings(fake, **extra) if fake else extra,
                              credentials=(fake or FakeSalesforce()).credentials, lookback_days=3,
                              on_credentials=None if stored is None else stored.append)
    return SalesforceConnector(config)


def read(fake: FakeSalesforce, window: Window = WINDOW, **extra: Any) -> list[dict[str, Any]]:
    c = connector(fake, **extra)
    try:
        return [r for page in c.read(window) for r in page.records]
    finally:
        c.close()


def in_window(fake: FakeSalesforce, window: Window = WINDOW) -> list[dict[str, Any]]:
    """What the org holds for ``window``, sorted as the connector reads it."""
    return fake.modified_between(dt.datetime.combine(window.start, dt.time(), dt.UTC),
                                 dt.datetime.combine(window.end + dt.timedelta(days=1), dt.time(), dt.UTC))


def sf_connect(ws: Any, fake: FakeSalesforce, **extra: Any) -> Any:
    return connect(ws, "salesforce", fake, fake.credentials, login_url=fake.url, **extra)


def deals(ws: Any) -> pl.DataFrame:
    return ws.table("silver.crm_deals").sort("deal_id")


def bronze(ws: Any) -> pl.DataFrame:
    return ws.table("bronze.raw_records").filter(pl.col("source") == "salesforce")


def stored_credentials(stores: Any, org: str = "acme") -> dict[str, str]:
    conn = repo.get_connection(stores.db, org, "salesforce")
    return repo.decrypt_credentials(stores.settings.credentials_key, conn.credentials_encrypted)


# -- declaration and format ----------------------------------------------------------------------

def test_declares_stream_credentials_and_no_write_back() -> None:
    assert SalesforceConnector.name == "salesforce" and SalesforceConnector.default_lookback_days == 3
    synthetic = {s.name for s in SyntheticConnector.streams if s.name.startswith("salesforce.")}
    assert {s.name for s in SalesforceConnector.streams} == synthetic == {"salesforce.opportunities"}
    assert SalesforceConnector.capabilities == frozenset({"read"})
    assert [(f.name, f.secret) for f in SalesforceConnector.credential_fields] == [
        ("client_id", False), ("client_secret", True), ("refresh_token", True)]
    with pytest.raises(PermanentWriteError, match="cannot change entities"):
        connector(None).writer(None)  # type: ignore[arg-type]


def test_records_have_the_synthetic_connectors_keys_and_value_formats(fake: FakeSalesforce) -> None:
    config = ConnectionConfig(org_id="acme", connection_id="synthetic", settings={
        "platforms": ["meta"], "crms": ["salesforce"], "malformed_rate": 0, "as_of": "2026-11-25",
        "accounts_per_platform": 1, "campaigns_per_account": 1, "ad_groups_per_campaign": 1, "ads_per_ad_group": 1})
    pages = SyntheticConnector(config).read(Window(dt.date(2026, 11, 20), dt.date(2026, 11, 24)))
    reference = next(r for p in pages if p.stream == "salesforce.opportunities" for r in p.records)
    records = read(fake)
    assert records and all(list(r) == list(reference) for r in records)  # same keys, same order
    stamp_format = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000$")
    for r in records:
        assert r["attributes"] == {"type": "Opportunity", "url": f"/services/data/v62.0/sobjects/Opportunity/{r['Id']}"}
        assert stamp_format.match(r["CreatedDate"]) and stamp_format.match(r["LastModifiedDate"])
        assert re.match(r"^\d{4}-\d\d-\d\d$", r["CloseDate"]) and len(r["Id"]) == 18
        assert isinstance(r["IsClosed"], bool) and isinstance(r["IsWon"], bool)
        assert r["Amount"] is None or isinstance(r["Amount"], int | float)
    big = next(r for r in records if r["Id"] == fake.ids["big"])
    assert big["Amount"] == 15_000_000  # served as 1.5E7


def test_reads_the_window_in_batches_with_one_soql_query_and_refreshes_a_session_mid_sync(
        fake: FakeSalesforce) -> None:
    stored: list[dict[str, str]] = []
    fake.expire_tokens_after = 2  # describe, first batch; then the session expires
    c = connector(fake, stored)
    pages = list(c.read(WINDOW))
    c.close()
    assert [len(p.records) for p in pages] == [3, 3] and {p.stream for p in pages} == {"salesforce.opportunities"}
    assert [r["Id"] for p in pages for r in p.records] == [r["Id"] for r in in_window(fake)]
    assert fake.ids["old"] not in {r["Id"] for p in pages for r in p.records}
    start, end = WINDOW.start.isoformat(), (WINDOW.end + dt.timedelta(days=1)).isoformat()
    assert fake.queries() == [
        "SELECT Id, Name, Amount, CurrencyIsoCode, StageName, IsClosed, IsWon, CreatedDate, CloseDate, "
        "LeadSource, UTM_Source__c, UTM_Medium__c, UTM_Campaign__c, LastModifiedDate FROM Opportunity "
        f"WHERE LastModifiedDate >= {start}T00:00:00Z AND LastModifiedDate < {end}T00:00:00Z "
        "ORDER BY LastModifiedDate, Id"]
    assert len(fake.requests_to("/query/01g")) == 2
    assert len(fake.requests_to("/oauth2/token")) == 2  # the first token, then one refresh after the 401
    assert [s["access_token"].split("!")[1] in fake.access_tokens for s in stored if "access_token" in s] == [
        False, True]
    assert {"instance_url": fake.url} in stored
    assert c.api_usage == (fake.api_used, fake.api_limit)


def test_an_expired_query_locator_resumes_after_the_last_record_read(fake: FakeSalesforce) -> None:
    fake.batch_size = 1  # the two records modified at the same moment land in separate batches
    fake.fail_next(Reply(400, [{"errorCode": "INVALID_QUERY_LOCATOR", "message": "invalid query locator"}]),
                   path="/query/01g")
    records = read(fake)
    assert [r["Id"] for r in records] == [r["Id"] for r in in_window(fake)]  # each once, none skipped
    first = in_window(fake)[0]
    moment = first["LastModifiedDate"][:19] + "Z"
    assert fake.queries()[1].endswith(
        f"AND (LastModifiedDate > {moment} OR (LastModifiedDate = {moment} AND Id > '{first['Id']}')) "
        "ORDER BY LastModifiedDate, Id")


def test_transient_failures_and_the_concurrency_limit_are_retried(fake: FakeSalesforce) -> None:
    fake.fail_next("500", "slow", "drop", "malformed", "429", "503", path="/query")
    fake.fail_next(Reply(403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                "message": "ConcurrentPerOrgLongTxn Limit exceeded"}]), path="/describe")
    fake.fail_next("malformed", path="/query/01g")
    assert [r["Id"] for r in read(fake)] == [r["Id"] for r in in_window(fake)]
    assert fake.faults_served == ["403", "500", "slow", "drop", "malformed", "429", "503", "malformed"]


# -- the org, instance_url and settings ------------------------------------------------------------

def test_accounts_is_the_org_and_org_id_guards_against_another_org(fake: FakeSalesforce) -> None:
    assert connector(fake).accounts() == [Account(fake.org_id, "Acme Corp", "USD")]
    assert len(read(fake, org_id=fake.org_id[:15])) == 6  # the 15-character form of the id
    with pytest.raises(AccessError, match=f"reach org {fake.org_id} \\(Acme Corp\\), not 00D000000000001 "
                                          "\\(setting org_id\\)"):
        read(fake, org_id="00D000000000001")


def test_the_instance_url_of_the_token_response_is_followed_and_kept_for_later_runs(stores: Any) -> None:
    with FakeSalesforce() as login, FakeSalesforce() as instance:
        instance.access_tokens = login.access_tokens  # one org: the instance accepts the login's tokens
        login.instance_url = instance.url
        seed(instance)
        ws = workspace(stores)
        sf_connect(ws, login)
        assert ws.ingest("salesforce", WINDOW.start, WINDOW.end).rows == 6
        assert [r.path for r in login.log] == ["/services/oauth2/token"]
        assert instance.queries() and not instance.requests_to("/oauth2/token")
        credentials = stored_credentials(stores)
        assert credentials["instance_url"] == instance.url and credentials["access_token"]

        assert ws.ingest("salesforce", WINDOW.start, WINDOW.end).rows == 6  # stored token and instance
        assert len(login.log) == 1
        instance.expire_tokens_after = 1  # mid-sync: refresh at the login server, go on at the instance
        assert ws.ingest("salesforce", WINDOW.start, WINDOW.end).rows == 6
        assert [r.path for r in login.log] == ["/services/oauth2/token"] * 2
        assert stored_credentials(stores)["access_token"] != credentials["access_token"]


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("utm_fields", {"UTM_Term__c": "X__c"}, "unknown key\\(s\\) UTM_Term__c"),
    ("utm_fields", "not json", "JSON object"),
    ("utm_fields", ["UTM_Source__c"], "JSON object"),
    ("utm_fields", {"UTM_Source__c": "Bad Name"}, "'Bad Name' is not a field API name"),
    ("extra_fields", ["Region__c", "1x"], "'1x' is not a field API name"),
    ("api_version", "62", "not an API version like v62.0"),
    ("multi_currency", "sometimes", "not auto, true or false"),
    ("stop_at_usage_pct", 0, "in percent \\(0 < value <= 100\\)"),
    ("stop_at_usage_pct", "most", "in percent"),
])
def test_settings_are_checked_up_front(setting: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=f"setting {setting}: .*{message}"):
        connector(None, **{setting: value})


def test_custom_utm_fields_are_queried_by_the_orgs_names_and_landed_under_the_canonical_keys() -> None:
    names = {"UTM_Source__c": "Lead_UTM_Source__c", "UTM_Medium__c": "Lead_UTM_Medium__c",
             "UTM_Campaign__c": "LeadSource"}  # an org that keeps campaigns in a standard field
    with FakeSalesforce(utm_fields=names) as f:
        sf_id = f.add("Omega", 10.0, at(1), at(1), utm=("facebook", "social", "Spring Sale"))
        f.opportunities[sf_id]["Region__c"] = "EMEA"
        records = read(f, utm_fields={"UTM_Source__c": "lead_utm_source__c", "UTM_Medium__c": "Lead_UTM_Medium__c",
                                      "UTM_Campaign__c": "LeadSource"}, extra_fields="Region__c")
    assert "LeadSource, Lead_UTM_Source__c, Lead_UTM_Medium__c, LastModifiedDate, Region__c FROM" in f.queries()[0]
    (record,) = records
    assert {k: record[k] for k in ("UTM_Source__c", "UTM_Medium__c", "UTM_Campaign__c", "LeadSource", "Region__c")} == {
        "UTM_Source__c": "facebook", "UTM_Medium__c": "social", "UTM_Campaign__c": "Spring Sale",
        "LeadSource": "Spring Sale", "Region__c": "EMEA"}
    assert not {"Lead_UTM_Source__c", "Lead_UTM_Medium__c"} & set(record)


@pytest.mark.parametrize(("extra", "message"), [
    ({"utm_fields": {"UTM_Source__c": "UTM_Src__c"}},
     "no readable Opportunity field 'UTM_Src__c' \\(the org has UTM_Source__c.*\\): set the setting utm_fields to "
     "the org's API name for UTM_Source__c"),
    ({"extra_fields": ["Regoin__c"]}, "'Regoin__c' \\(the org has Region__c\\): correct or remove it in the "
                                      "setting extra_fields"),
])
def test_a_field_the_org_lacks_fails_before_the_query_naming_the_setting(
        fake: FakeSalesforce, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        read(fake, **extra)
    assert not fake.queries()


@pytest.mark.parametrize(("reply", "error", "message"), [
    ([{"errorCode": "INVALID_FIELD", "message": "\nSELECT Id FROM Opportunity\n^\nERROR at Row:1:Column:8\nNo such "
       "column 'UTM_Campaign__c' on entity 'Opportunity'."}], RequestError,
     "INVALID_FIELD.*set the setting utm_fields to the org's API name for UTM_Campaign__c"),
    ([{"errorCode": "INVALID_FIELD", "message": "No such column 'Amount' on entity 'Opportunity'."}], RequestError,
     "cannot read Opportunity.Amount: grant field-level read access"),
    ([{"errorCode": "MALFORMED_QUERY", "message": "unexpected token: 'FROM'"}], RequestError,
     "MALFORMED_QUERY: unexpected token.*check the field names in the settings utm_fields and extra_fields"),
    ([{"errorCode": "INSUFFICIENT_ACCESS", "message": "insufficient access rights on object id"}], AccessError,
     "give them Read on Opportunity"),
    ([{"errorCode": "API_DISABLED_FOR_ORG", "message": "API is not enabled for this Organization or Partner"}],
     AccessError, "needs the 'API Enabled' permission"),
])
def test_salesforce_error_codes_become_final_errors_that_say_what_to_fix(
        fake: FakeSalesforce, reply: list[dict[str, str]], error: type[FinalApiError], message: str) -> None:
    status = 403 if error is AccessError else 400
    fake.fail_next(Reply(status, reply), path="/query")
    with pytest.raises(error, match=message):
        read(fake)
    assert len(fake.queries()) == 1  # not retried


# -- end to end ------------------------------------------------------------------------------------

def test_ingest_and_transform_land_exactly_what_the_org_served(stores: Any, fake: FakeSalesforce) -> None:
    ws = workspace(stores)
    sf_connect(ws, fake)
    result = ws.ingest("salesforce", WINDOW.start, WINDOW.end)
    assert result.rows == 6 and result.streams == {"salesforce.opportunities": 6} and result.gaps == []
    ws.transform()
    served = {r["Id"]: r for r in in_window(fake)}
    silver = deals(ws)
    assert silver.height == 6 and set(silver["deal_id"]) == set(served)
    expected = sorted((r["Id"], r["Name"], None if r["Amount"] is None else float(r["Amount"]), r["CurrencyIsoCode"],
                       r["StageName"], r["IsClosed"], r["IsWon"], r["LeadSource"], r["UTM_Source__c"],
                       r["UTM_Medium__c"], r["UTM_Campaign__c"]) for r in served.values())
    assert silver.select(DEAL_COLUMNS).with_columns(pl.col("amount").cast(pl.Float64)).rows() == expected
    assert silver.filter(pl.col("deal_id") == fake.ids["big"])["platform"].to_list() == ["dv360"]
    assert ws.quarantine().filter(pl.col("source") == "salesforce").is_empty()
    assert ws.table("silver.ad_performance_daily").is_empty() and ws.table("silver.campaigns").is_empty()

    converted = silver.filter(pl.col("amount").is_not_null())  # every currency had a rate
    assert converted.height == 5 and converted.select(
        (pl.col("amount_org") - pl.col("amount") * pl.col("fx_rate")).abs().max()).item() < 0.01

    gold = ws.table("gold.crm_attribution_daily")
    per_day = gold.group_by("date").agg(pl.col("leads").sum(), pl.col("deals_won").sum())
    assert {d.isoformat(): n for d, n, _ in per_day.rows() if n} == Counter(r["CreatedDate"][:10] for r in served.values())
    assert {d.isoformat(): n for d, _, n in per_day.rows() if n} == Counter(
        r["CloseDate"] for r in served.values() if r["IsWon"])
    assert gold["pipeline_value"].sum() == pytest.approx(silver["amount_org"].cast(pl.Float64).fill_null(0).sum())
    assert gold["won_value"].sum() == pytest.approx(
        silver.filter(pl.col("is_won"))["amount_org"].cast(pl.Float64).sum())


def test_a_sync_with_transient_faults_lands_every_record_exactly_once(stores: Any, fake: FakeSalesforce) -> None:
    clean = workspace(stores, "clean")
    sf_connect(clean, fake)
    clean.ingest("salesforce", WINDOW.start, WINDOW.end)
    clean.transform()
    fake.transient_rate = 0.2
    fake.expire_tokens_after = 3
    flaky = workspace(stores, "flaky")
    sf_connect(flaky, fake)
    flaky.ingest("salesforce", WINDOW.start, WINDOW.end)
    flaky.transform()
    assert fake.faults_served  # the seeded generator did inject failures
    payloads = [json.loads(p) for p in bronze(flaky)["payload"]]
    assert sorted(r["Id"] for r in payloads) == sorted(r["Id"] for r in in_window(fake))
    assert deals(flaky).select(DEAL_COLUMNS).equals(deals(clean).select(DEAL_COLUMNS))


FINAL_ERRORS: list[tuple[str, type[Exception], str]] = [
    ("revoked", AuthError, "refused the refresh token .*authorise the connection again with workbench connections add"),
    ("permission", AccessError, "give them Read on Opportunity"),
    ("quota", QuotaExceededError, "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.*daily API request allocation"),
    ("usage", QuotaExceededError, "used 95,0\\d\\d of its 100,000 daily API requests .* stop_at_usage_pct \\(90%\\)"),
]


def test_a_final_error_stops_the_run_lands_nothing_and_keeps_state_and_silver(
        stores: Any, fake: FakeSalesforce) -> None:
    ws = workspace(stores)
    sf_connect(ws, fake)
    ws.ingest("salesforce", WINDOW.start, WINDOW.end)
    ws.transform()
    before = (deals(ws), bronze(ws).height, repo.get_connection(stores.db, "acme", "salesforce").state)
    fake.update(fake.ids["open"], at(0, 0, 10), Amount=777.0)  # would change silver if anything landed
    for case, error, message in FINAL_ERRORS:
        calls = len(fake.log)
        if case == "revoked":
            fake.refresh_tokens.clear()
            fake.expire_tokens()
        elif case == "permission":
            fake.deny = "INSUFFICIENT_ACCESS"
        else:
            fake.api_used = fake.api_limit if case == "quota" else 95_000
        with pytest.raises(error, match=message):
            ws.ingest("salesforce", WINDOW.start, WINDOW.end)
        assert len(fake.log) - calls <= 3, case  # one call (and a token refresh): final, not retried
        assert bronze(ws).height == before[1], case
        assert repo.get_connection(stores.db, "acme", "salesforce").state == before[2], case
        fake.refresh_tokens.add(fake.refresh_token)  # the org is healthy again for the next case
        fake.deny, fake.api_used = None, 0
    ws.transform()
    assert deals(ws).equals(before[0])


def test_a_restated_opportunity_replaces_the_earlier_figure(stores: Any, fake: FakeSalesforce) -> None:
    ws = workspace(stores)
    sf_connect(ws, fake)
    ws.ingest("salesforce")
    ws.transform()
    assert deals(ws).filter(pl.col("deal_id") == fake.ids["today"])["amount"].cast(pl.Float64).to_list() == [4321.99]
    fake.update(fake.ids["today"], at(0, 0, 30), Amount=5000.0, StageName="Closed Lost", IsWon=False)
    ws.ingest("salesforce")
    ws.transform()
    silver = deals(ws)
    assert silver["deal_id"].is_unique().all()
    row = silver.filter(pl.col("deal_id") == fake.ids["today"])
    assert row.select("amount", "stage", "is_won").rows() == [(5000.0, "Closed Lost", False)]
    won = ws.table("gold.crm_attribution_daily").filter(pl.col("date") == TODAY)
    assert won["deals_won"].sum() == 0 and won["won_value"].sum() == 0


def test_the_default_window_is_the_look_back_then_everything_since_the_last_run(
        stores: Any, fake: FakeSalesforce) -> None:
    ws = workspace(stores)
    conn = sf_connect(ws, fake)
    first = ws.ingest("salesforce")
    assert first.window == Window(TODAY - dt.timedelta(days=2), TODAY)
    tomorrow = TODAY + dt.timedelta(days=1)
    assert f"LastModifiedDate >= {TODAY - dt.timedelta(days=2)}T00:00:00Z AND LastModifiedDate < " \
           f"{tomorrow}T00:00:00Z" in fake.queries()[-1]
    assert first.rows == len(in_window(fake, first.window)) == 4
    assert repo.get_connection(stores.db, "acme", "salesforce").state["last_window_end"] == TODAY.isoformat()

    state = repo.get_connection(stores.db, "acme", "salesforce").state
    repo.save_connection_state(stores.db, "acme", conn.id, {**state, "last_window_end": (TODAY - dt.timedelta(days=11)).isoformat()})
    later = ws.ingest("salesforce")  # ten days without a run: read from the day after the last window
    assert later.window == Window(TODAY - dt.timedelta(days=10), TODAY) and later.rows == 7


def test_schema_changes_a_new_field_and_missing_keys_still_land(stores: Any, fake: FakeSalesforce) -> None:
    fake.row_extras = {"Forecast_Bucket__c": "Commit", "Owner": {"attributes": {"type": "User"}, "Name": "Ann"}}
    fake.omitted[fake.ids["won"]] = {"LeadSource", "UTM_Medium__c"}
    ws = workspace(stores)
    sf_connect(ws, fake)
    assert ws.ingest("salesforce", WINDOW.start, WINDOW.end).rows == 6
    ws.transform()
    payload = json.loads(bronze(ws).filter(pl.col("payload").str.contains(fake.ids["won"]))["payload"][0])
    assert payload["Forecast_Bucket__c"] == "Commit" and "LeadSource" not in payload
    silver = deals(ws)
    assert silver.height == 6 and ws.quarantine().filter(pl.col("source") == "salesforce").is_empty()
    row = silver.filter(pl.col("deal_id") == fake.ids["won"])
    assert row.select("source", "utm_source", "utm_medium", "amount").rows() == [(None, "facebook", None, 1200.0)]


def test_a_single_currency_org_gets_its_default_currency(stores: Any) -> None:
    with FakeSalesforce(multi_currency=False, currency="EUR") as f:
        seed(f)
        with pytest.raises(RequestError, match="multi_currency is true but the org has no multi-currency"):
            read(f, multi_currency=True)
        ws = workspace(stores)
        sf_connect(ws, f)
        assert ws.ingest("salesforce", WINDOW.start, WINDOW.end).rows == 6
        assert "CurrencyIsoCode" not in f.queries()[-1] and "FROM Organization" in f.queries()[-2]
    ws.transform()
    silver = deals(ws)
    assert silver.height == 6 and set(silver["currency"]) == {"EUR"}
    assert silver.filter(pl.col("deal_id").is_not_null())["amount_org"].drop_nulls().len() == 5  # Delta has none


def test_no_secret_reaches_an_error_a_log_record_or_bronze(
        stores: Any, fake: FakeSalesforce, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.transient_rate, fake.transient_kinds = 0.3, ("500", "503", "429", "drop", "malformed")
    fake.expire_tokens_after = 2
    ws = workspace(stores)
    sf_connect(ws, fake)
    ws.ingest("salesforce", WINDOW.start, WINDOW.end)
    assert len(fake.issued) >= 2
    fake.fail_next(Reply(400, [{"errorCode": "MALFORMED_QUERY",  # a server that echoes what it was sent
                                "message": f"bad token {fake.issued[-1]} and {fake.client_secret}"}]), path="/query")
    with pytest.raises(RequestError) as echoed:
        ws.ingest("salesforce", WINDOW.start, WINDOW.end)
    fake.refresh_tokens.clear()
    fake.expire_tokens()
    with pytest.raises(AuthError) as revoked:
        ws.ingest("salesforce", WINDOW.start, WINDOW.end)
    texts = [str(echoed.value), str(revoked.value), *(r.getMessage() for r in caplog.records),
             *bronze(ws)["payload"]]
    assert "***" in str(echoed.value)
    for secret in [fake.client_secret, fake.refresh_token, *fake.issued, *(t.split("!")[-1] for t in fake.issued)]:
        assert not [t for t in texts if secret in t], secret
