import pytest
from notify_helpers import add_slack, payload, queue

from workbench import notify
from workbench.notify.slack import blocks


def test_block_kit_shape():
    msg = blocks(payload(2, link="https://wb.example/a?b=1&c=2"))
    assert msg["text"] == "2 campaigns above target CPA"
    header, first, second, context = msg["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "2 campaigns above target CPA",
                                                 "emoji": True}}
    assert first["type"] == "section" and first["text"] == {
        "type": "mrkdwn", "text": "*Campaign 1*\nCPA rose above target on campaign 1."}
    assert first["fields"] == [{"type": "mrkdwn", "text": "*CPA*\n$41.20"}, {"type": "mrkdwn", "text": "*Target*\n$35.00"}]
    assert second["text"]["text"].startswith("*Campaign 2*")
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == ("Organisation: acme · rule: cpa-above-target · "
                                              "<https://wb.example/a?b=1&c=2|open>")


def test_limits_and_escaping():
    p = payload(70, title="x" * 400)
    p["items"][0] = {"title": "<b>A & B</b>", "text": "", "values": {f"v{i}": str(i) for i in range(15)}}
    msg = blocks(p)
    assert len(msg["blocks"]) == 50 and len(msg["blocks"][0]["text"]["text"]) == 150
    assert msg["blocks"][1]["text"]["text"] == "*&lt;b&gt;A &amp; B&lt;/b&gt;*"
    assert len(msg["blocks"][1]["fields"]) == 10
    assert msg["blocks"][-2]["text"]["text"] == "…and 23 more"


def test_delivered_to_the_incoming_webhook(nstores, receiver):
    add_slack(nstores, receiver.url("/services/T1/B1/XXXXsecretXXXX"))
    n = queue(nstores, "slack", "team-slack", "k-slack")
    assert notify.dispatch(nstores).sent == 1
    [req] = receiver.accepted
    assert req["path"] == "/services/T1/B1/XXXXsecretXXXX"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["X-Workbench-Idempotency-Key"] == "k-slack"
    assert receiver.json() == blocks(n.payload)


@pytest.mark.parametrize("mode, status, fragment", [
    ("400", "failed", "slack channel 'team-slack': HTTP 400 (invalid_payload)"),
    ("500", "pending", "slack channel 'team-slack': HTTP 500 (internal error)"),
])
def test_errors_name_the_target_not_the_url(nstores, receiver, mode, status, fragment):
    add_slack(nstores, receiver.url("/services/T1/B1/XXXXsecretXXXX"))
    queue(nstores, "slack", "team-slack", "k")
    receiver.mode = mode
    notify.dispatch(nstores)
    [n] = notify.notifications(nstores.db, "acme")
    assert n.status == status and n.last_error == fragment
