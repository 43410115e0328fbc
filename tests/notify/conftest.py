"""Real receivers for notification tests: an HTTP server (Slack and webhooks) and an SMTP server.

The HTTP receiver can be told to fail the way receivers do: ``down()`` closes its port,
``mode = "500" | "429" | "400" | "slow"`` answers with that status or too late.
"""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from notify_helpers import free_port

from workbench.oltp import repo
from workbench.oltp.db import Oltp
from workbench.settings import Settings, load_settings


@dataclass
class NotifyStores:
    settings: Settings
    db: Oltp


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory):
    """An OLTP file migrated once per session; each test gets a copy (migrations take a while)."""
    path = tmp_path_factory.mktemp("oltp") / "workbench.db"
    db = Oltp(f"sqlite:///{path}")
    db.migrate()
    repo.create_org(db, "acme", "Acme")
    repo.create_org(db, "globex", "Globex")
    db.dispose()
    return path


@pytest.fixture
def nstores(tmp_path, migrated_db):
    """Settings with a short back-off (10 s, 4 attempts) and an OLTP store with organisations acme and globex."""
    settings = load_settings(home=tmp_path / "home", progress=False, notify_http_timeout=5,
                             notify_backoff_seconds=10, notify_backoff_max_seconds=600, notify_max_attempts=4,
                             smtp_timeout=2)
    settings.ensure_home()
    shutil.copy(migrated_db, settings.home / "workbench.db")
    db = Oltp(settings.oltp_url_resolved)
    yield NotifyStores(settings, db)
    db.dispose()


class Receiver:
    """An HTTP server on 127.0.0.1 that records what it receives."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.slow_seconds = 0.6
        self.delay = 0.0
        self.before_answer = lambda: None  # a test's hook, e.g. to hold a request
        self.requests: list[dict] = []  # every request that arrived
        self.accepted: list[dict] = []  # those answered 2xx
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                record = {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                with receiver._lock:
                    receiver.requests.append(record)
                    mode = receiver.mode
                receiver.before_answer()
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                if mode == "slow":
                    threading.Event().wait(receiver.slow_seconds)
                    return  # the client gave up; nothing was processed
                status = {"ok": 200, "500": 500, "429": 429, "400": 400}[mode]
                payload = {200: b"ok", 500: b"internal error", 429: b"rate limited", 400: b"invalid_payload"}[status]
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "120")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if status == 200:
                    with receiver._lock:
                        receiver.accepted.append(record)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def keys(self) -> Counter:
        """Accepted requests per idempotency key."""
        return Counter(r["headers"].get("X-Workbench-Idempotency-Key") for r in self.accepted)

    def json(self, i: int = -1) -> dict:
        return json.loads(self.accepted[i]["body"])


@pytest.fixture
def receiver():
    r = Receiver()
    r.start()
    yield r
    r.down()


class Mailbox:
    """aiosmtpd handler keeping every message; ``rcpt_reply`` refuses recipients with that reply."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory):
    """A throw-away CA and a certificate for 127.0.0.1: (server SSL context, CA bundle path)."""
    import ssl

    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ctx, path


@pytest.fixture
def smtp_server():
    """Start an aiosmtpd server: ``start(**controller_kwargs) -> (mailbox, port)``."""
    from aiosmtpd.controller import Controller

    started = []

    def start(**kwargs):
        box = Mailbox()
        controller = Controller(box, hostname="127.0.0.1", port=free_port(), **kwargs)
        controller.start()
        started.append(controller)
        return box, controller.port

    yield start
    for c in started:
        c.stop()
