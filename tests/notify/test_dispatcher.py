import datetime as dt
import logging

import pytest
from notify_helpers import add_slack, add_webhook, clock, queue

from workbench import notify
from workbench.errors import TransientDeliveryError
from workbench.notify import dispatcher
from workbench.oltp.models import Notification
from workbench.settings import Settings

SECRET_URL_PART = "XXXXsecretXXXX"


def with_timeout(stores, seconds):
    stores.settings = Settings(**{**stores.settings.model_dump(), "notify_http_timeout": seconds})


def rows(stores, org="acme"):
    return {n.idempotency_key: n for n in notify.notifications(stores.db, org, limit=1000)}


def setup_targets(stores, receiver):
    add_slack(stores, receiver.url(f"/services/T1/B1/{SECRET_URL_PART}"))
    add_webhook(stores, receiver.url("/ops"), secret="hook-secret-1234")


def queue_mix(stores, n=3):
    keys = []
    for i in range(n):
        queue(stores, "slack", "team-slack", f"s{i}")
        queue(stores, "webhook", "ops-hook", f"w{i}")
        keys += [f"s{i}", f"w{i}"]
    return keys


@pytest.mark.parametrize("outage", ["down", "500", "slow"])
def test_an_outage_is_retried_with_backoff_and_nothing_is_lost(nstores, receiver, outage):
    setup_targets(nstores, receiver)
    keys = queue_mix(nstores, 2)
    if outage == "down":
        receiver.down()
    else:
        receiver.mode = outage
    if outage == "slow":
        with_timeout(nstores, 0.25)  # the receiver answers after 0.6 s
    t0 = clock()
    result = notify.dispatch(nstores, now=t0)
    assert (result.sent, result.retried) == (0, 4)
    for n in rows(nstores).values():
        assert n.status == "pending" and n.attempts == 1 and SECRET_URL_PART not in n.last_error
        wait = (n.next_attempt_at.replace(tzinfo=dt.UTC) - t0).total_seconds()
        assert 5 <= wait <= 10  # base 10 s with jitter in [0.5, 1]
    assert notify.dispatch(nstores, now=t0 + dt.timedelta(seconds=4)).retried == 0, "nothing is due yet"
    second = notify.dispatch(nstores, now=t0 + dt.timedelta(seconds=11))
    assert second.retried == 4
    assert all(20 <= (n.next_attempt_at.replace(tzinfo=dt.UTC) - t0).total_seconds() <= 31
               for n in rows(nstores).values()), "the second delay doubles"
    if outage == "down":
        receiver.start()
    receiver.mode = "ok"
    with_timeout(nstores, 5)
    assert notify.dispatch(nstores, now=t0 + dt.timedelta(seconds=60)).sent == 4
    assert receiver.keys() == dict.fromkeys(keys, 1), "each notification accepted exactly once"
    assert {n.status for n in rows(nstores).values()} == {"sent"}
    assert notify.dispatch(nstores, now=t0 + dt.timedelta(days=1)).sent == 0


def test_429_waits_at_least_retry_after(nstores, receiver):
    setup_targets(nstores, receiver)
    queue(nstores, "slack", "team-slack", "s")
    receiver.mode = "429"
    t0 = clock()
    assert notify.dispatch(nstores, now=t0).retried == 1
    n = rows(nstores)["s"]
    assert (n.next_attempt_at.replace(tzinfo=dt.UTC) - t0).total_seconds() >= 120
    assert n.last_error == "slack channel 'team-slack': HTTP 429 (rate limited)"


def test_dead_after_the_last_attempt(nstores, receiver):
    setup_targets(nstores, receiver)
    queue(nstores, "webhook", "ops-hook", "w")
    receiver.mode = "500"
    t = clock()
    outcomes = []
    for _ in range(6):
        r = notify.dispatch(nstores, now=t)
        outcomes.append((r.retried, r.dead))
        t += dt.timedelta(seconds=700)
    assert outcomes == [(1, 0), (1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]  # notify_max_attempts = 4
    n = rows(nstores)["w"]
    assert (n.status, n.attempts, n.last_error) == ("dead", 4, "webhook 'ops-hook': HTTP 500 (internal error)")
    assert len(receiver.requests) == 4
    assert notify.requeue(nstores.db, "acme", statuses=["dead"]) == 1
    receiver.mode = "ok"
    assert notify.dispatch(nstores, now=t).sent == 1


def test_a_permanent_failure_is_not_retried(nstores, receiver):
    setup_targets(nstores, receiver)
    queue(nstores, "webhook", "ops-hook", "w")
    queue(nstores, "slack", "missing-channel", "s")
    receiver.mode = "400"
    assert notify.dispatch(nstores).failed == 2
    assert notify.dispatch(nstores, now=clock(86400)).failed == 0
    assert len(receiver.requests) == 1
    assert rows(nstores)["s"].last_error == ("slack to missing-channel: organisation 'acme' has no slack channel "
                                             "'missing-channel'; add it with `workbench notify channel add "
                                             "missing-channel --org acme --type slack ...`")


def test_one_organisation_at_a_time(nstores, receiver):
    queue(nstores, "inapp", "ana", "a")
    queue(nstores, "inapp", "ana", "g", org="globex")
    assert notify.dispatch(nstores, org_id="globex").sent == 1
    assert rows(nstores)["a"].status == "pending" and rows(nstores, "globex")["g"].status == "sent"
    assert [m.title for m in notify.inbox(nstores.db, "globex", "ana")] == ["2 campaigns above target CPA"]
    assert notify.inbox(nstores.db, "acme", "ana") == []


def test_a_dead_dispatchers_claim_is_taken_over_after_the_lease(nstores, receiver):
    setup_targets(nstores, receiver)
    queue(nstores, "webhook", "ops-hook", "w")
    t0 = clock()
    [nid] = dispatcher._candidates(nstores.db, None, t0, dt.timedelta(seconds=300), 10, set())
    assert dispatcher._claim(nstores.db, nid, t0, dt.timedelta(seconds=300)) is not None  # then it "dies"
    assert dispatcher._claim(nstores.db, nid, t0, dt.timedelta(seconds=300)) is None
    assert notify.dispatch(nstores, now=t0 + dt.timedelta(seconds=299)).sent == 0
    assert notify.dispatch(nstores, now=t0 + dt.timedelta(seconds=301)).sent == 1
    assert rows(nstores)["w"].attempts == 2 and receiver.keys() == {"w": 1}


def test_unknown_channel_rows_and_plugin_bugs(nstores, monkeypatch):
    with nstores.db.session() as s:  # e.g. queued by a plug-in that is no longer installed
        s.add(Notification(id="x1", org_id="acme", channel="pager", target="ops", payload={}, idempotency_key="p"))
    queue(nstores, "inapp", "ana", "i")

    class Broken(notify.Channel):
        def deliver(self, notification, context):
            raise KeyError("bug")

    monkeypatch.setitem(notify.channels._classes, "inapp", Broken)
    r = notify.dispatch(nstores)
    assert (r.failed, r.retried) == (1, 1)
    assert rows(nstores)["p"].last_error.startswith("pager to ops: unknown notification channel 'pager'")
    assert rows(nstores)["i"].last_error == "inapp to ana: unexpected KeyError: 'bug'"


def test_registered_channels_get_the_context(nstores):
    seen = []

    class Pager(notify.Channel):
        target_hint = "pager rotations"

        def deliver(self, notification, context):
            seen.append((notification.target, notification.payload["title"], context.settings.notify_max_attempts))
            if len(seen) == 1:
                raise TransientDeliveryError("pager busy")

    registry = notify.channels
    registry.register("pager", Pager)
    try:
        queue(nstores, "pager", "primary", "k")
        assert notify.dispatch(nstores).retried == 1
        assert notify.dispatch(nstores, now=clock(60)).sent == 1
        assert seen == [("primary", "2 campaigns above target CPA", 4)] * 2
        assert "pager" in registry.names()
    finally:
        del registry._classes["pager"]


def test_secrets_stay_out_of_errors_logs_and_reprs(nstores, receiver, caplog):
    secret = "hook-secret-1234"
    setup_targets(nstores, receiver)
    keys = queue_mix(nstores, 1)
    receiver.mode = "500"
    with caplog.at_level(logging.DEBUG, logger="workbench.notify"):
        notify.dispatch(nstores)
        receiver.down()
        notify.dispatch(nstores, now=clock(60))
    assert caplog.records, "failures are logged"
    text = caplog.text + " ".join(repr(n) + str(n.last_error) for n in rows(nstores).values())
    text += repr(notify.list_channels(nstores.db, "acme"))
    assert SECRET_URL_PART not in text and secret not in text
    assert len(keys) == 2


def test_redaction_masks_secrets_a_receiver_echoes():
    assert dispatcher._redact("bad url https://h/XXXXsecretXXXX/x", {"XXXXsecretXXXX", "abc"}) == "bad url https://h/***/x"
