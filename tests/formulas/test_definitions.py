"""Metric definitions: packs, per-organisation versions, overrides, dependents, cycles."""

from __future__ import annotations

import pytest

from workbench.errors import ConfigError, FormulaError, NotFoundError, ValidationError
from workbench.formulas import definitions as defs
from workbench.formulas.packs import MetricPackRegistry
from workbench.oltp import repo


@pytest.fixture
def db(stores):
    repo.create_org(stores.db, "acme", "Acme", "USD", "UTC")
    repo.create_org(stores.db, "globex", "Globex", "EUR", "UTC")
    return stores.db


def test_the_pack_ships_the_contract_metrics(db):
    catalog = defs.load_catalog(db, "acme")
    assert catalog.metrics["ctr"].formula == "clicks / impressions"
    assert catalog.metrics["ctr"].origin == "pack:core"
    assert catalog.metrics["roas"].format == "multiple"


def test_an_org_definition_overrides_the_pack_for_that_org_only(db):
    change = defs.define(db, "acme", "cpa", "spend / conversions * 1.1", comment="agency fee", author="ana")
    assert (change.version, change.unit) == (1, "money")
    assert defs.load_catalog(db, "acme").metrics["cpa"].formula == "spend / conversions * 1.1"
    assert defs.load_catalog(db, "globex").metrics["cpa"].formula == "spend / conversions"


def test_versions_keep_author_time_and_comment(db):
    defs.define(db, "acme", "blended_cpm", "spend / impressions * 1000", comment="first", author="ana")
    defs.define(db, "acme", "blended_cpm", "spend / impressions * 1000 * 1.2", comment="fees", author="bo")
    rows = defs.history(db, "acme", "blended_cpm")
    assert [(r.version, r.author, r.comment) for r in rows] == [(1, "ana", "first"), (2, "bo", "fees")]
    assert rows[1].created_at >= rows[0].created_at
    assert defs.load_catalog(db, "acme").metrics["blended_cpm"].version == 2
    with pytest.raises(NotFoundError):
        defs.history(db, "globex", "blended_cpm")


def test_a_change_reports_and_revalidates_what_depends_on_it(db):
    defs.define(db, "acme", "base_cpm", "spend / impressions * 1000")
    defs.define(db, "acme", "cpm_with_fee", "base_cpm * 1.15")
    defs.define(db, "acme", "cpm_plus_cpc", "cpm_with_fee + cpc")
    change = defs.define(db, "acme", "base_cpm", "spend / impressions * 1000 * 0.9")
    assert change.dependents == ["cpm_plus_cpc", "cpm_with_fee"]
    with pytest.raises(FormulaError, match="breaks 'cpm_plus_cpc'.*cannot add a ratio"):
        defs.define(db, "acme", "base_cpm", "clicks / impressions")  # a ratio + money in cpm_plus_cpc
    assert defs.load_catalog(db, "acme").metrics["base_cpm"].version == 2  # refused change not stored


def test_a_cycle_is_refused_and_named(db):
    defs.define(db, "acme", "m1", "spend * 2")
    defs.define(db, "acme", "m2", "m1 / 2")
    with pytest.raises(FormulaError, match="m1 → m2 → m1"):
        defs.define(db, "acme", "m1", "m2 * 2")


@pytest.mark.parametrize(("name", "formula", "fragment"), [
    ("spend", "clicks * 2", "base metric"),
    ("platform", "spend", "dimension"),
    ("Bad-Name", "spend", "not a valid metric name"),
    ("sum", "spend", "function or keyword"),
    ("x", "spend +", "ends too early"),
])
def test_invalid_definitions_are_refused(db, name, formula, fragment):
    with pytest.raises(ValidationError, match=fragment):
        defs.define(db, "acme", name, formula)


def test_unknown_unit_or_format(db):
    with pytest.raises(ConfigError, match="unknown unit 'euros'"):
        defs.define(db, "acme", "x", "spend", unit="euros")
    with pytest.raises(ConfigError, match="unknown format 'fancy'"):
        defs.define(db, "acme", "x", "spend", format="fancy")


def test_remove_brings_back_the_pack_or_refuses_to_orphan(db):
    defs.define(db, "acme", "ctr", "clicks / impressions * 1.0", unit="percent")
    change = defs.remove(db, "acme", "ctr", comment="back to standard")
    assert change.removed and change.now_from == "pack:core"
    assert defs.load_catalog(db, "acme").metrics["ctr"].origin == "pack:core"
    assert [r.body is None for r in defs.history(db, "acme", "ctr")] == [False, True]
    defs.define(db, "acme", "own", "spend * 2")
    defs.define(db, "acme", "uses_own", "own + spend")
    with pytest.raises(ValidationError, match="uses_own depend on it"):
        defs.remove(db, "acme", "own")
    with pytest.raises(NotFoundError, match="comes from a metric pack"):
        defs.remove(db, "acme", "roas")


def test_pack_files_are_validated(tmp_path):
    registry = MetricPackRegistry()
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  - name: x\n    formula: spend\n    colour: red\n")
    registry.register("bad", bad)
    with pytest.raises(ConfigError, match="unknown keys colour"):
        registry.definitions()
    other = tmp_path / "dupe.yaml"
    other.write_text("metrics:\n  - name: x\n    formula: spend\n")
    bad.write_text("metrics:\n  - name: x\n    formula: clicks\n")
    registry.register("dupe", other)
    with pytest.raises(ConfigError, match="defined by both"):
        registry.definitions()


@pytest.mark.postgres
def test_definitions_on_postgres(pg_url, tmp_path):
    from workbench.settings import load_settings
    from workbench.stores import close_all, init

    stores = init(load_settings(home=tmp_path / "home", oltp_url=pg_url, progress=False))
    try:
        repo.create_org(stores.db, "acme", "Acme", "USD", "UTC")
        defs.define(stores.db, "acme", "blended", "spend / clicks")
        defs.define(stores.db, "acme", "blended", "spend / clicks * 2")
        assert [r.version for r in defs.history(stores.db, "acme", "blended")] == [1, 2]
        assert defs.load_catalog(stores.db, "acme").metrics["blended"].formula == "spend / clicks * 2"
    finally:
        close_all()
