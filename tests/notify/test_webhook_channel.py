import hashlib
import hmac
import json

from notify_helpers import add_webhook, clock, queue

from workbench import notify
from workbench.notify.webhook import sign


def test_signed_json_with_idempotency_key(nstores, receiver):
    add_webhook(nstores, receiver.url("/ops"), secret="hook-secret-1234")
    n = queue(nstores, "webhook", "ops-hook", "k-hook")
    assert notify.dispatch(nstores).sent == 1
    [req] = receiver.accepted
    body, headers = req["body"], req["headers"]
    expected = "sha256=" + hmac.new(b"hook-secret-1234", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Workbench-Signature"], expected)
    assert headers["X-Workbench-Signature"] != sign("another-secret", body)
    assert headers["X-Workbench-Idempotency-Key"] == "k-hook"
    doc = json.loads(body)
    assert doc == {"id": n.id, "idempotency_key": "k-hook", "org": "acme", "target": "ops-hook",
                   "created_at": doc["created_at"], "payload": n.payload}
    assert doc["created_at"].endswith("+00:00")


def test_a_redelivery_is_byte_identical(nstores, receiver):
    add_webhook(nstores, receiver.url("/ops"))
    queue(nstores, "webhook", "ops-hook", "k-hook")
    receiver.mode = "500"
    notify.dispatch(nstores)
    receiver.mode = "ok"
    assert notify.dispatch(nstores, now=clock(3600)).sent == 1
    first, second = receiver.requests
    assert first["body"] == second["body"]
    assert first["headers"]["X-Workbench-Signature"] == second["headers"]["X-Workbench-Signature"]
