"""The synthetic platforms' write side: state, idempotency, recorded requests, faults, persistence."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from connectors.base import EntityState, PermanentWriteError, TransientWriteError, WriteResult
from connectors.synthetic_platform import SyntheticPlatform
from connectors.writers import platform_writers
from workbench.errors import TransientError

ACTIVE = EntityState("active", Decimal("100.00"), "daily", "USD")


@pytest.fixture
def meta(tmp_path):
    p = SyntheticPlatform(tmp_path / "acme.sqlite", "acme", "meta")
    p.seed_entity("campaign", "c1", ACTIVE)
    return p


def test_pause_resume_and_budget_change_the_state_and_are_recorded(meta):
    r = meta.pause("campaign", "c1", "k1")
    assert r == WriteResult(ACTIVE, EntityState("paused", Decimal("100.00"), "daily", "USD"))
    assert meta.read("campaign", "c1").status == "paused"
    r = meta.set_budget("campaign", "c1", Decimal("80.005"), "k2")  # cents, half up
    assert r.after.budget == Decimal("80.01") and r.after.status == "paused"
    meta.resume("campaign", "c1", "k3")
    assert meta.read("campaign", "c1") == EntityState("active", Decimal("80.01"), "daily", "USD")
    reqs = meta.requests()
    assert [(q.op, q.entity_id, q.params, q.idempotency_key, q.outcome) for q in reqs] == [
        ("pause", "c1", {}, "k1", "applied"),
        ("set_budget", "c1", {"amount": "80.01"}, "k2", "applied"),
        ("resume", "c1", {}, "k3", "applied"),
    ]
    assert reqs[1].before is not None and reqs[1].before.budget == Decimal("100.00")
    assert isinstance(reqs[0].at, dt.datetime) and reqs[0].as_dict()["after"]["status"] == "paused"


def test_a_retry_with_the_same_key_returns_the_first_result_and_applies_once(meta):
    first = meta.set_budget("campaign", "c1", Decimal(80), "key")
    meta.seed_entity("campaign", "c1", ACTIVE)  # someone puts it back to 100 meanwhile
    again = meta.set_budget("campaign", "c1", Decimal(80), "key")
    assert again == WriteResult(first.before, first.after, replayed=True)
    assert meta.read("campaign", "c1").budget == Decimal("100.00")  # not applied a second time
    assert [q.outcome for q in meta.requests()] == ["applied", "replayed"]
    with pytest.raises(PermanentWriteError, match="already used for set_budget"):
        meta.set_budget("campaign", "c1", Decimal(90), "key")


def test_concurrent_calls_with_one_key_apply_once(meta):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: meta.set_budget("campaign", "c1", Decimal(70), "same"), range(8)))
    assert sum(not r.replayed for r in results) == 1
    assert {r.after.budget for r in results} == {Decimal("70.00")}
    assert sorted(q.outcome for q in meta.requests()) == ["applied"] + ["replayed"] * 7


def test_refusals_are_permanent(meta):
    meta.seed_entity("ad_group", "g1", EntityState("active"))
    meta.seed_entity("campaign", "old", EntityState("archived", Decimal(5), "daily", "USD"))
    cases = [
        (lambda: meta.pause("campaign", "nope", "a"), "meta has no campaign 'nope' for 'acme'"),
        (lambda: meta.pause("account", "c1", "b"), "level 'account' cannot be changed"),
        (lambda: meta.set_budget("ad_group", "g1", Decimal(5), "c"), "has no budget of its own"),
        (lambda: meta.resume("campaign", "old", "d"), "archived"),
        (lambda: meta.set_budget("campaign", "c1", Decimal(0), "e"), "more than 0"),
        (lambda: meta.pause("campaign", "c1", ""), "idempotency key"),
    ]
    for call, message in cases:
        with pytest.raises(PermanentWriteError, match=message):
            call()
    assert [q.outcome for q in meta.requests()] == ["failed"] * 4  # level and key checks come first
    with pytest.raises(PermanentWriteError, match="no 'tiktok'"):
        SyntheticPlatform(meta.path, "acme", "tiktok")


def test_fault_injection(meta):
    meta.fail_next("transient")
    with pytest.raises(TransientWriteError, match="timed out") as caught:
        meta.pause("campaign", "c1", "k")
    assert isinstance(caught.value, TransientError)  # retried by whoever retries transient errors
    assert meta.read("campaign", "c1").status == "active"
    assert meta.pause("campaign", "c1", "k").after.status == "paused"  # the fault was used up

    meta.fail_next("permanent", message="policy says no", times=2)
    for key in ("p1", "p2"):
        with pytest.raises(PermanentWriteError, match="policy says no"):
            meta.resume("campaign", "c1", key)
    assert meta.read("campaign", "c1").status == "paused"

    meta.fail_next("transient", after_apply=True)  # the platform acts, the caller hears a timeout
    with pytest.raises(TransientWriteError):
        meta.resume("campaign", "c1", "r")
    assert meta.read("campaign", "c1").status == "active"
    assert meta.resume("campaign", "c1", "r").replayed
    assert [(q.idempotency_key, q.outcome, q.error is not None) for q in meta.requests()] == [
        ("k", "failed", True), ("k", "applied", False), ("p1", "failed", True), ("p2", "failed", True),
        ("r", "applied", True), ("r", "replayed", False)]


def test_state_is_per_platform_and_shared_by_instances_and_processes(meta, tmp_path):
    other = SyntheticPlatform(meta.path, "acme", "meta")
    other.pause("campaign", "c1", "k1")
    assert meta.read("campaign", "c1").status == "paused"
    with pytest.raises(PermanentWriteError, match="ttd has no campaign 'c1'"):
        SyntheticPlatform(meta.path, "acme", "ttd").read("campaign", "c1")
    script = textwrap.dedent(f"""
        from decimal import Decimal
        from connectors.synthetic_platform import SyntheticPlatform
        p = SyntheticPlatform({str(meta.path)!r}, "acme", "meta")
        p.set_budget("campaign", "c1", Decimal("42.5"), "from-another-process")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert meta.read("campaign", "c1").budget == Decimal("42.50")
    assert [q.idempotency_key for q in meta.requests()] == ["k1", "from-another-process"]
    assert SyntheticPlatform(meta.path, "acme", "ttd").requests() == []


def test_registry_gives_the_synthetic_platform_under_the_home(stores):
    assert platform_writers.platforms() == ["dv360", "meta", "ttd"]
    w = platform_writers.get("dv360", stores, "acme")
    assert isinstance(w, SyntheticPlatform) and w.platform == "dv360"
    assert w.path == stores.settings.home / "synthetic_platform" / "acme.sqlite"
    with pytest.raises(KeyError, match="no writer for platform 'tiktok'; platforms with one: dv360, meta, ttd"):
        platform_writers.get("tiktok", stores, "acme")
    with pytest.raises(PermanentWriteError, match="not an organisation id"):
        platform_writers.get("meta", stores, "../etc")


def test_first_state_comes_from_silver(stores):
    from workbench.oltp import repo
    from workbench.workspace import Workspace

    repo.create_org(stores.db, "acme", "Acme", "USD")
    ws = Workspace(stores, "acme")
    ws.ingest("synthetic", "2026-11-20", "2026-11-24", progress=False, settings={
        "as_of": "2026-11-25", "accounts_per_platform": 1, "campaigns_per_account": 1,
        "ad_groups_per_campaign": 1, "ads_per_ad_group": 1, "crms": [], "malformed_rate": 0})
    ws.transform(progress=False)
    silver = ws.table("silver.campaigns").filter(platform="ttd").row(0, named=True)
    perf = ws.table("silver.ad_performance_daily").filter(platform="ttd").row(0, named=True)

    ttd = platform_writers.get("ttd", stores, "acme")
    state = ttd.read("campaign", silver["campaign_id"])
    assert state == EntityState(silver["status"], Decimal(silver["budget_amount"]).quantize(Decimal("0.01")),
                                silver["budget_type"], silver["currency"])
    assert ttd.read("ad_group", perf["ad_group_id"]) == EntityState(silver["status"])
    assert ttd.read("ad", perf["ad_id"]) == EntityState(silver["status"])
    with pytest.raises(PermanentWriteError, match="ttd has no campaign 'missing'"):
        ttd.read("campaign", "missing")
    # once loaded, the platform owns the state: a write sticks, silver is not read again
    ttd.pause("campaign", silver["campaign_id"], "k")
    assert platform_writers.get("ttd", stores, "acme").read("campaign", silver["campaign_id"]).status == "paused"
    with pytest.raises(PermanentWriteError, match="meta has no campaign"):  # platforms do not mix
        platform_writers.get("meta", stores, "acme").read("campaign", silver["campaign_id"])
    with pytest.raises(PermanentWriteError, match="ttd has no campaign"):  # nor organisations
        platform_writers.get("ttd", stores, "globex").read("campaign", silver["campaign_id"])
