"""Payloads and queueing shared by the notification tests."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading

from sqlalchemy import func, select

from workbench import notify
from workbench.notify import enqueue, save_channel
from workbench.oltp.models import InboxMessage


def payload(n_items: int = 2, title: str = "2 campaigns above target CPA", **extra) -> dict:
    items = [{"title": f"Campaign {i}", "text": f"CPA rose above target on campaign {i}.",
              "values": {"CPA": f"${40 + i}.20", "Target": "$35.00"}} for i in range(1, n_items + 1)]
    return {"title": title, "items": items, "org": "acme", "rule": "cpa-above-target",
            "link": "https://workbench.example/acme/alerts", **extra}


def queue(stores, channel: str, target: str, key: str, org: str = "acme", **payload_args):
    with stores.db.session() as s:
        return enqueue(s, org, channel, target, payload(**payload_args), key)


def add_slack(stores, url: str, name: str = "team-slack", org: str = "acme"):
    return save_channel(stores.db, stores.settings.credentials_key, org, name, "slack", {}, {"webhook_url": url}, "tester")


def add_webhook(stores, url: str, secret: str = "hook-secret-1234", name: str = "ops-hook", org: str = "acme"):
    return save_channel(stores.db, stores.settings.credentials_key, org, name, "webhook", {"url": url},
                        {"secret": secret}, "tester")


def clock(seconds: float = 0) -> dt.datetime:
    """Now plus ``seconds``: tests move the dispatcher's clock instead of sleeping."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def dispatcher_process(stores, *args, **env):
    full_env = {**os.environ, "WORKBENCH_HOME": str(stores.settings.home), "WORKBENCH_PROGRESS": "false",
                "WORKBENCH_NOTIFY_HTTP_TIMEOUT": "10", **env}
    if stores.settings.oltp_url:
        full_env["WORKBENCH_OLTP_URL"] = stores.settings.oltp_url
    return subprocess.Popen([sys.executable, "-m", "workbench", "notify", "dispatch", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def hold_first_request_until_a_second_arrives(receiver):
    """Make the two dispatchers overlap: the first request waits for one from the other process."""
    barrier = threading.Barrier(2, timeout=20)
    first_two = iter([True, True])
    lock = threading.Lock()

    def wait() -> None:
        with lock:
            take = next(first_two, False)
        if take:
            barrier.wait()

    receiver.before_answer = wait


def check_two_dispatchers(stores, receiver):
    """Two `workbench notify dispatch` processes at once: every notification delivered exactly once."""
    add_slack(stores, receiver.url("/services/T/B/XXXXsecretXXXX"))
    add_webhook(stores, receiver.url("/ops"))
    keys = []
    for i in range(15):
        for channel, target in (("slack", "team-slack"), ("webhook", "ops-hook"), ("inapp", f"user{i % 3}")):
            key = f"{channel}-{i}"
            queue(stores, channel, target, key)
            keys.append(key)
    hold_first_request_until_a_second_arrives(receiver)
    receiver.delay = 0.01
    procs = [dispatcher_process(stores), dispatcher_process(stores)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(out)
    counts = [{k: int(v) for k, v in re.findall(r"(\w+) (\d+)", o)} for o in outputs]
    assert sum(c["sent"] for c in counts) == 45 and all(c["sent"] > 0 for c in counts), outputs
    assert all(c["retried"] == c["failed"] == c["dead"] == 0 for c in counts), outputs
    http_keys = [k for k in keys if not k.startswith("inapp")]
    assert receiver.keys() == dict.fromkeys(http_keys, 1)
    with stores.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboxMessage)) == 15
    assert {n.status for n in notify.notifications(stores.db, "acme", limit=100)} == {"sent"}


def free_port() -> int:
    """A TCP port nothing listens on right now (for "server down" tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
