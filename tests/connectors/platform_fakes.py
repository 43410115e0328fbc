"""A base for the local HTTP servers that stand in for the platforms in tests.

Each fake (``fake_meta.py``, ``fake_dv360.py``...) subclasses ``FakePlatform``, registers its
documented endpoints with ``route`` and keeps its own state (accounts, report rows, jobs,
entities). The base serves them on a real socket (``ThreadingHTTPServer`` on 127.0.0.1, port 0),
logs every request, issues and checks OAuth2 / bearer tokens, and injects faults:

- ``fail_next(*faults, path=regex)``: the next matching requests get these answers instead
  (a ``Reply``, or a kind: ``"500"``, ``"503"``, ``"429"``, ``"drop"`` (connection closed with no
  answer), ``"slow"`` (answers after ``slow_seconds``, past the client's timeout),
  ``"malformed"`` (a truncated JSON body with status 200), ``"lost"`` (the handler runs, then the
  connection is dropped: the change happened but the client never heard));
- ``transient_rate``: that fraction of requests (not token requests), chosen by a seeded random
  generator, fails with one of ``transient_kinds``.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: re.Match[str] | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes as is
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        if self.body is None:
            return b"", "text/plain"
        return json.dumps(self.body).encode(), "application/json"


Handler = Callable[[Request], Reply]
TRANSIENT_KINDS = ("500", "503", "429", "drop", "slow", "malformed")


class FakePlatform:
    """Subclass, register routes in ``__init__``, then ``start()`` (or use ``with``)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.log: list[Request] = []
        self.queued: list[tuple[re.Pattern[str] | None, str | None, Any]] = []
        self.transient_rate = 0.0
        self.transient_kinds: tuple[str, ...] = TRANSIENT_KINDS
        self.rng = random.Random(7)
        self.slow_seconds = 1.0
        self.faults_served: list[str] = []
        self.lock = threading.RLock()
        # tokens: access tokens in force, refresh tokens accepted
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.token_lifetime = 1800
        self.tokens_issued = 0
        self.auth_exempt: set[str] = set()  # route paths (regex text) that need no token
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup -------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler, *, auth: bool = True) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))
        if not auth:
            self.auth_exempt.add(pattern)

    def fail_next(self, *faults: Any, path: str | None = None, method: str | None = None) -> None:
        """Answer the next requests matching ``path`` (a regex) and ``method`` with ``faults``."""
        with self.lock:
            regex = re.compile(path) if path else None
            self.queued.extend((regex, method, f) for f in faults)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePlatform:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- tokens ------------------------------------------------------------------------------

    def issue_token(self) -> str:
        with self.lock:
            self.tokens_issued += 1
            token = f"access-{self.tokens_issued}-{self.rng.randrange(10**9)}"
            self.access_tokens.add(token)
            return token

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (a 401 on the next call)."""
        with self.lock:
            self.access_tokens.clear()

    def bearer(self, request: Request) -> str | None:
        value = request.header("authorization") or ""
        return value.split(" ", 1)[1] if " " in value else None

    def authorised(self, request: Request) -> bool:
        """Override for platforms whose token travels elsewhere (TTD-Auth)."""
        return self.bearer(request) in self.access_tokens

    def unauthorised(self, request: Request) -> Reply:
        return Reply(401, {"error": "invalid_token", "message": "The access token is invalid or expired"})

    def oauth_token(self, request: Request) -> Reply:
        """An OAuth2 token endpoint: ``grant_type=refresh_token`` with a known refresh token."""
        form = request.form()
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.refresh_tokens:
            return Reply(400, {"error": "invalid_grant", "error_description": "Bad refresh token"})
        return Reply(200, {"access_token": self.issue_token(), "expires_in": self.token_lifetime,
                           "token_type": "Bearer"})

    # -- serving -----------------------------------------------------------------------------

    def _read(self, h: BaseHTTPRequestHandler) -> Request:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        return Request(h.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                       {k.lower(): v for k, v in h.headers.items()}, body)

    def _next_fault(self, request: Request, exempt: bool) -> Any:
        with self.lock:
            for i, (regex, method, fault) in enumerate(self.queued):
                if (regex is None or regex.search(request.path)) and method in (None, request.method):
                    del self.queued[i]
                    return fault
            if not exempt and self.transient_rate and self.rng.random() < self.transient_rate:
                return self.rng.choice(self.transient_kinds)
        return None

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        request = self._read(h)
        with self.lock:
            self.log.append(request)
        handler: Handler | None = None
        exempt = False
        for method, regex, fn in self.routes:
            m = regex.match(request.path)
            if m and method == request.method:
                handler, request.match = fn, m
                exempt = regex.pattern[1:-1] in self.auth_exempt
                break
        fault = self._next_fault(request, exempt)
        if fault is not None:
            with self.lock:
                self.faults_served.append(fault if isinstance(fault, str) else str(fault.status))
        if isinstance(fault, Reply):
            return self._send(h, fault)
        if fault in ("500", "503"):
            return self._send(h, Reply(int(fault), {"error": "backend error, try again"}))
        if fault == "429":
            return self._send(h, Reply(429, {"error": "rate limited"}, {"Retry-After": "0"}))
        if fault == "drop":
            h.close_connection = True
            return None
        if fault == "slow":
            time.sleep(self.slow_seconds)
        if handler is None:
            return self._send(h, Reply(404, {"error": f"no route {request.method} {request.path}"}))
        if not exempt and not self.authorised(request):
            return self._send(h, self.unauthorised(request))
        reply = handler(request)
        if fault == "lost":
            h.close_connection = True
            return None
        if fault == "malformed":
            body, _ = reply.encoded()
            reply = Reply(200, body[: max(1, len(body) // 2)].decode(errors="ignore") or "{", reply.headers)
        return self._send(h, reply)

    def _send(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        body, content_type = reply.encoded()
        # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold every answer back ~40 ms
        h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            h.send_response(reply.status)
            headers = {"Content-Type": content_type, **reply.headers}
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    # -- assertions ----------------------------------------------------------------------------

    def requests_to(self, pattern: str, method: str | None = None) -> list[Request]:
        regex = re.compile(pattern)
        with self.lock:
            return [r for r in self.log if regex.search(r.path) and (method is None or r.method == method)]
