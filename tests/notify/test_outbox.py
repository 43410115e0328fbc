import datetime as dt

import pytest
from notify_helpers import clock, payload, queue
from sqlalchemy import func, select

from workbench import notify
from workbench.errors import IsolationError, ValidationError
from workbench.oltp.models import Alert, Notification


def count(stores, model=Notification):
    with stores.db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_enqueue_writes_in_the_callers_transaction(nstores):
    with pytest.raises(RuntimeError), nstores.db.session() as s:
        s.add(Alert(id="a1", org_id="acme", rule="r", entity="c1", values={}, title="t"))
        notify.enqueue(s, "acme", "inapp", "ana", payload(), "k-rolled-back")
        raise RuntimeError("the rule engine failed after queueing")
    assert count(nstores) == 0 and count(nstores, Alert) == 0
    with nstores.db.session() as s:
        s.add(Alert(id="a1", org_id="acme", rule="r", entity="c1", values={}, title="t"))
        n = notify.enqueue(s, "acme", "inapp", "ana", payload(), "k1")
        assert n.status == "pending" and n.attempts == 0
    assert count(nstores) == 1 and count(nstores, Alert) == 1


def test_a_duplicate_key_adds_nothing_and_returns_the_first(nstores):
    first = queue(nstores, "inapp", "ana", "k1")
    with nstores.db.session() as s:
        s.add(Alert(id="a2", org_id="acme", rule="r", entity="c2", values={}, title="t"))
        again = notify.enqueue(s, "acme", "inapp", "bob", payload(3), "k1")
        same_session = notify.enqueue(s, "acme", "inapp", "bob", payload(3), "k1")
    assert again.id == same_session.id == first.id and again.target == "ana"
    assert count(nstores) == 1 and count(nstores, Alert) == 1
    with pytest.raises(IsolationError, match="another organisation"), nstores.db.session() as s:
        notify.enqueue(s, "globex", "inapp", "ana", payload(), "k1")


@pytest.mark.parametrize("channel, target, key, fragment", [
    ("pager", "ops", "k", "unknown notification channel 'pager'; installed channels: email, inapp, slack, webhook"),
    ("email", "not-an-address", "k", "'not-an-address' is not an email address"),
    ("inapp", "  ", "k", "must not be empty (user names)"),
    ("inapp", "ana", "", "1-200 characters"),
    ("inapp", "ana", "x" * 201, "1-200 characters"),
])
def test_enqueue_refuses_what_can_never_be_delivered(nstores, channel, target, key, fragment):
    with pytest.raises(ValidationError) as info, nstores.db.session() as s:
        notify.enqueue(s, "acme", channel, target, payload(), key)
    assert fragment in str(info.value)


def test_notification_keys_are_stable_and_distinct():
    k = notify.notification_key("acme", "cpa-above-target", "ev1", "slack", "team-slack")
    assert k == notify.notification_key("acme", "cpa-above-target", "ev1", "slack", "team-slack")
    assert k != notify.notification_key("acme", "cpa-above-target", "ev2", "slack", "team-slack")
    assert len(k) <= 200


def test_status_counts_per_channel_and_status_and_requeue(nstores):
    for i in range(3):
        queue(nstores, "inapp", "ana", f"i{i}")
    queue(nstores, "email", "ana@example.com", "e1")  # SMTP not configured: fails permanently
    now = clock()
    assert str(notify.dispatch(nstores, now=now)) == "sent 3, retried 0, failed 1, dead 0, skipped 0"
    queue(nstores, "inapp", "ana", "later")
    frame = notify.status(nstores.db, "acme")
    assert frame.select("channel", "status", "count").rows() == [("email", "failed", 1), ("inapp", "pending", 1),
                                                                 ("inapp", "sent", 3)]
    assert frame.filter(status="pending")["oldest"][0] > now - dt.timedelta(minutes=1)
    assert notify.status(nstores.db, "globex").is_empty()
    [failed] = notify.notifications(nstores.db, "acme", statuses=["failed"])
    assert "WORKBENCH_SMTP_HOST" in failed.last_error
    assert notify.requeue(nstores.db, "globex") == 0
    assert notify.requeue(nstores.db, "acme") == 1
    assert {n.status for n in notify.notifications(nstores.db, "acme")} == {"pending", "sent"}
    with pytest.raises(ValidationError, match="not sent"):
        notify.requeue(nstores.db, "acme", statuses=["sent"])
