"""Dispatchers as separate processes (`workbench notify dispatch`) over one store: no double sends."""

from __future__ import annotations

import signal
import time

from notify_helpers import add_webhook, check_two_dispatchers, clock, dispatcher_process, queue
from sqlalchemy import func, select

from workbench import notify
from workbench.oltp.models import InboxMessage


def test_two_dispatcher_processes_on_sqlite(nstores, receiver):
    check_two_dispatchers(nstores, receiver)


def wait_for(path, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the dispatcher never reached the fault point"
        time.sleep(0.05)


def test_killed_after_sending_redelivers_with_the_same_key_and_never_duplicates_inbox(nstores, receiver, tmp_path):
    add_webhook(nstores, receiver.url("/ops"))
    queue(nstores, "inapp", "ana", "i")
    queue(nstores, "webhook", "ops-hook", "w")
    for n, name in enumerate(("first", "second")):
        signal_file = tmp_path / name
        proc = dispatcher_process(nstores, WORKBENCH_FAULT_PAUSE="notify.after_send", WORKBENCH_FAULT_SIGNAL=str(signal_file))
        wait_for(signal_file, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert len(receiver.accepted) == n  # the first run stopped after the inbox message, the second after the POST
    with nstores.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboxMessage)) == 1
    assert {n.status for n in notify.notifications(nstores.db, "acme")} == {"sending"}
    assert notify.dispatch(nstores, now=clock(60)).sent == 0, "the dead dispatchers' leases still hold"
    assert notify.dispatch(nstores, now=clock(301)).sent == 2
    with nstores.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboxMessage)) == 1, "in-app: exactly once"
    first, second = receiver.accepted  # webhooks: at least once, with the same key and bytes
    assert first["headers"]["X-Workbench-Idempotency-Key"] == second["headers"]["X-Workbench-Idempotency-Key"] == "w"
    assert first["body"] == second["body"]
