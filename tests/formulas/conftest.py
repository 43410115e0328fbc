"""Fixtures of the formula tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def gold_stores(tmp_path_factory):
    """A workbench home with acme and globex and the hand-checkable gold rows of formula_helpers."""
    from formula_helpers import load_gold

    from workbench.oltp import repo
    from workbench.settings import load_settings
    from workbench.stores import close_all, init

    stores = init(load_settings(home=tmp_path_factory.mktemp("gold") / "home", progress=False))
    repo.create_org(stores.db, "acme", "Acme", "USD", "UTC")
    repo.create_org(stores.db, "globex", "Globex", "EUR", "UTC")
    load_gold(stores)
    yield stores
    close_all()
