"""The outbox's claim and duplicate-key logic on PostgreSQL (concurrent transactions for real)."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from notify_helpers import check_two_dispatchers, clock, payload, queue
from sqlalchemy import func, select

from workbench import notify
from workbench.notify import dispatcher
from workbench.oltp import repo
from workbench.oltp.db import Oltp
from workbench.oltp.models import Alert, Notification
from workbench.settings import load_settings

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_stores(tmp_path, pg_url):
    from workbench.stores import close_all, init

    settings = load_settings(home=tmp_path / "home", oltp_url=pg_url, progress=False, notify_http_timeout=2)
    stores = init(settings)
    repo.create_org(stores.db, "acme", "Acme")
    yield stores
    close_all()


def test_racing_claims_take_each_row_once(pg_stores):
    ids = [queue(pg_stores, "inapp", "ana", f"k{i}").id for i in range(10)]
    engines = [Oltp(pg_stores.settings.oltp_url_resolved) for _ in range(4)]
    lease = dt.timedelta(seconds=300)
    t = clock()
    start = threading.Barrier(4)

    def claim_all(db):
        start.wait()
        return [i for i in ids if dispatcher._claim(db, i, t, lease) is not None]

    try:
        with ThreadPoolExecutor(4) as pool:
            won = list(pool.map(claim_all, engines))
    finally:
        for e in engines:
            e.dispose()
    assert sorted(i for w in won for i in w) == sorted(ids)


def test_a_concurrent_duplicate_returns_the_first_and_keeps_the_callers_work(pg_stores):
    other = Oltp(pg_stores.settings.oltp_url_resolved)
    first_added, result = threading.Event(), {}
    try:
        with pg_stores.db.session() as a:
            notify.enqueue(a, "acme", "inapp", "ana", payload(), "dup")
            a.flush()

            def second():
                with other.session() as b:
                    b.add(Alert(id="alert-b", org_id="acme", rule="r", entity="c", values={}, title="t"))
                    first_added.set()
                    result["row"] = notify.enqueue(b, "acme", "inapp", "bob", payload(), "dup")  # waits for a

            thread = threading.Thread(target=second)
            thread.start()
            first_added.wait(10)
            thread.join(0.5)
            assert thread.is_alive(), "the second insert waits for the first transaction"
        thread.join(30)
    finally:
        other.dispose()
    assert result["row"].target == "ana"
    with pg_stores.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 1
        assert s.get(Alert, "alert-b") is not None


def test_two_dispatcher_processes_on_postgres(pg_stores, receiver):
    check_two_dispatchers(pg_stores, receiver)
