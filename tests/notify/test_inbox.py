import datetime as dt

import pytest
from notify_helpers import clock, queue
from sqlalchemy import func, select

from workbench import notify
from workbench.notify import dispatcher
from workbench.oltp.models import InboxMessage


def test_inbox_per_user_read_and_unread(nstores):
    queue(nstores, "inapp", "ana", "a1", title="First")
    queue(nstores, "inapp", "ana", "a2", title="Second", n_items=1)
    queue(nstores, "inapp", "bob", "b1")
    queue(nstores, "inapp", "ana", "g1", org="globex")
    assert notify.dispatch(nstores).sent == 4
    messages = notify.inbox(nstores.db, "acme", "ana")
    assert sorted(m.title for m in messages) == ["First", "Second"]
    second = next(m for m in messages if m.title == "Second")
    assert second.body.startswith("Campaign 1\nCPA rose above target") and "  CPA: $41.20" in second.body
    assert notify.unread_count(nstores.db, "acme", "ana") == 2
    assert notify.mark_read(nstores.db, "acme", "ana", [second.id]) == 1
    assert notify.mark_read(nstores.db, "acme", "bob", [second.id]) == 0, "not bob's message"
    assert notify.mark_read(nstores.db, "globex", "ana", [second.id]) == 0, "not globex's message"
    assert [m.title for m in notify.inbox(nstores.db, "acme", "ana", unread=True)] == ["First"]
    assert notify.mark_read(nstores.db, "acme", "ana") == 1
    assert notify.unread_count(nstores.db, "acme", "ana") == 0
    assert notify.unread_count(nstores.db, "acme", "bob") == 1
    assert [m.title for m in notify.inbox(nstores.db, "globex", "ana")] == ["2 campaigns above target CPA"]


def count_messages(stores):
    with stores.db.session() as s:
        return s.scalar(select(func.count()).select_from(InboxMessage))


def test_a_crash_between_delivery_and_commit_does_not_duplicate(nstores, monkeypatch):
    n = queue(nstores, "inapp", "ana", "k")
    real_finish = dispatcher._finish

    def crash(*args, **kwargs):
        raise SystemExit("killed between writing the message and recording 'sent'")

    monkeypatch.setattr(dispatcher, "_finish", crash)
    t0 = clock()
    with pytest.raises(SystemExit):
        notify.dispatch(nstores, now=t0)
    monkeypatch.setattr(dispatcher, "_finish", real_finish)
    assert count_messages(nstores) == 1
    [row] = notify.notifications(nstores.db, "acme")
    assert row.status == "sending" and row.attempts == 1
    assert notify.dispatch(nstores, now=t0 + dt.timedelta(seconds=60)).sent == 0, "the lease still holds"
    assert notify.dispatch(nstores, now=t0 + dt.timedelta(seconds=301)).sent == 1
    assert count_messages(nstores) == 1
    [row] = notify.notifications(nstores.db, "acme")
    assert (row.status, row.attempts, row.id) == ("sent", 2, n.id)
