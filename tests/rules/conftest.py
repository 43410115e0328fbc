"""Fixtures of the rule tests: a home with acme and globex and the gold rows of rule_helpers."""

from __future__ import annotations

import pytest


@pytest.fixture
def rule_stores(stores):
    from rule_helpers import load

    from workbench.oltp import repo

    repo.create_org(stores.db, "acme", "Acme", "USD", "UTC")
    repo.create_org(stores.db, "globex", "Globex", "EUR", "UTC")
    load(stores)
    return stores
