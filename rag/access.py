"""Who may use the server: one rule for every door, enforced in one ASGI middleware.

Every request to ``cronaca serve`` — the page, Gradio's own API (``/gradio_api/…``, uploads
included), REST ``/api/v1``, OpenAI-compatible ``/v1``, and any sub-app mounted later (``/mcp``)
— passes through ``AccessGate`` before anything else reads it. The rule:

- No credential configured (``CRONACA_AUTH`` and ``CRONACA_API_KEY`` both unset): everything is
  open, and ``refuse_open_bind`` keeps such a server on the loopback unless ``--insecure``.
- Otherwise every route needs one of: ``Authorization: Bearer <CRONACA_API_KEY>``;
  ``Authorization: Basic`` with the ``CRONACA_AUTH`` user and password; or the cookie of a page
  login (Gradio's login form). The page login takes ``CRONACA_AUTH``, or any name with the API key
  as password, so a server with only a key still has a usable page. A key holder is let into
  Gradio's own routes too (the gate hands Gradio a session of its own for that request).
- Open without credentials: ``/api/v1/health`` (which says only ok / degraded / down) and what the
  login form itself needs (``PUBLIC``), which reveals nothing about the store.
- Wrong credentials (a wrong key, a wrong password, a failed login) are counted per client
  address; after ``FREE_FAILURES`` the client waits, doubling each time, and is answered 429.

Nothing here reads a body, so a refused request costs nothing. The one check a request goes
through is ``Policy.check``; the server wires it as ``AccessGate(app, policy)``.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEALTH = "/api/v1/health"
LOGIN = "/login"
# what the login form needs before anyone is logged in: the form page, its script, style and icons.
# Gradio renders only the form at "/" until its login check passes; none of these read the store.
PUBLIC_EXACT = frozenset({HEALTH, "/", "/login", "/login/", "/favicon.ico", "/theme.css",
                          "/manifest.json", "/gradio_api/login_check", "/gradio_api/login_check/"})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/")
FREE_FAILURES = 5  # wrong attempts a client gets before it has to wait
FIRST_WAIT = 1.0  # seconds, doubled with each further failure
MAX_WAIT = 300.0
_TRACKED = 10_000  # clients remembered at most (the oldest are forgotten first)
KEY_USER = "api"  # the page user name of a request let in by the API key


class Throttle:
    """Failed attempts per client: the ``free``-th failure and each one after it make the client
    wait ``first * 2**(n - free)`` seconds (at most ``cap``) before it may try again, so a guesser
    gets ``free`` tries at once and then ever fewer. A success forgets the client."""

    def __init__(self, free: int = FREE_FAILURES, first: float = FIRST_WAIT, cap: float = MAX_WAIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.first, self.cap, self.clock = free, first, cap, clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, float]] = {}  # client -> (failures, may retry at)

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may try a credential again (0: now)."""
        with self._lock:
            _, until = self._seen.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            count = self._seen.pop(client, (0, 0.0))[0] + 1
            over = count - self.free
            until = self.clock() + min(self.cap, self.first * 2 ** over) if over >= 0 else 0.0
            self._seen[client] = (count, until)
            while len(self._seen) > _TRACKED:
                del self._seen[next(iter(self._seen))]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._seen.pop(client, None)


class PageSessions:
    """Gradio's page logins: its token table and cookie names (``access-token[-unsecure]-<id>``).

    ``user`` reads who a request's cookie belongs to; ``admit`` gives a request let in by the API
    key a Gradio session of its own, so that Gradio's login checks pass for it too."""

    def __init__(self, gradio_app: Any) -> None:
        self.tokens: dict[str, str] = gradio_app.tokens
        self.names = (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}")
        self._key_token = secrets.token_urlsafe(32)  # never leaves the process

    def user(self, cookies: Mapping[str, str]) -> str | None:
        for name in self.names:
            token = cookies.get(name)
            if token and token in self.tokens:
                return self.tokens[token]
        return None

    def admit(self, scope: Scope, user: str) -> Scope:
        self.tokens[self._key_token] = user  # again each time: a logout may have dropped it
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        headers.append((b"cookie", f"{self.names[1]}={self._key_token}".encode()))
        return {**scope, "headers": headers}


@dataclass
class Verdict:
    """What the gate does with one request: let it in (``user`` is who), or answer ``status``."""

    status: int = 200
    user: str = ""
    reason: str = ""
    retry_after: int = 0
    watch_login: bool = False  # a login attempt: its answer decides failure or success


@dataclass
class Policy:
    """The credentials a server was started with, and the failures it has seen."""

    user: str = ""
    password: str = ""
    key: str = ""
    throttle: Throttle = field(default_factory=Throttle)
    sessions: PageSessions | None = None  # set by the server once the page is mounted

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        """``CRONACA_AUTH=user:password`` (the page login) and ``CRONACA_API_KEY``."""
        env = os.environ if env is None else env
        user, password = parse_login(env.get("CRONACA_AUTH", ""))
        return cls(user=user, password=password, key=env.get("CRONACA_API_KEY", "").strip())

    @property
    def required(self) -> bool:
        return bool(self.key or self.user)

    def login_ok(self, user: str, password: str) -> bool:
        """The page's login form (Gradio's ``auth``): ``CRONACA_AUTH``, or any name and the key."""
        if self.user and _same(user, self.user) and _same(password, self.password):
            return True
        return bool(self.key) and _same(password, self.key)

    def check(self, scope: Scope) -> Verdict:
        """The one access decision, from the request's path, client, headers and cookies."""
        if not self.required:
            return Verdict()
        path = scope.get("path", "")
        client = _client(scope)
        headers = Headers(scope=scope)
        authorization = headers.get("authorization", "")
        if authorization:
            wait = self.throttle.wait(client)
            if wait > 0:
                return _too_many(wait)
            user = self._credential(authorization)
            if user is None:
                self.throttle.failed(client)
                return Verdict(401, reason="wrong credentials")
            self.throttle.succeeded(client)
            return Verdict(user=user)
        if self.sessions is not None:
            cookies = _cookies(headers.get("cookie", ""))
            user = self.sessions.user(cookies)
            if user is not None:
                return Verdict(user=user)
        if path in (LOGIN, LOGIN + "/") and scope.get("method") == "POST":
            wait = self.throttle.wait(client)
            return _too_many(wait) if wait > 0 else Verdict(watch_login=True)
        if is_public(path):
            return Verdict()
        return Verdict(401, reason="missing credentials")

    def _credential(self, authorization: str) -> str | None:
        """The user an ``Authorization`` header proves, or None."""
        scheme, _, value = authorization.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self.key and _same(value, self.key):
            return KEY_USER
        if scheme == "basic" and self.user:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            if _same(user, self.user) and _same(password, self.password):
                return user
        return None


def is_public(path: str) -> bool:
    """Open without credentials: health and what the login form needs (see ``PUBLIC_EXACT``)."""
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


class AccessGate:
    """The ASGI middleware in front of the whole app (mounted sub-apps included): every HTTP
    request and websocket goes through ``Policy.check`` before anything reads it."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        verdict = self.policy.check(scope)
        if verdict.status != 200:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _refusal(verdict)(scope, receive, send)
        if verdict.user and self.policy.sessions is not None:
            scope = self.policy.sessions.admit(scope, verdict.user)
        if not verdict.watch_login:
            return await self.app(scope, receive, send)
        client, status = _client(scope), [0]

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, receive, watching)
        if status[0] == 200:
            self.policy.throttle.succeeded(client)
        elif 400 <= status[0] < 500:
            self.policy.throttle.failed(client)


def refuse_open_bind(host: str, policy: Policy, insecure: bool) -> str:
    """Why the server must not start (``""``: it may): a non-loopback address without any
    credential would hand the archive, uploads and deletes to whoever reaches the port."""
    if policy.required or insecure or is_loopback(host):
        return ""
    return (f"refusing to listen on {host} without credentials: set CRONACA_API_KEY and/or "
            "CRONACA_AUTH=user:password, or pass --insecure to serve everyone who reaches this port")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_login(raw: str) -> tuple[str, str]:
    """``user:password`` → (user, password); ``""`` → ("", ""). SystemExit when malformed."""
    if not raw:
        return "", ""
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        raise SystemExit("CRONACA_AUTH must be user:password")
    return user, password


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def _cookies(raw: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no session
        return {}
    return {k: m.value for k, m in jar.items()}


def _too_many(wait: float) -> Verdict:
    return Verdict(429, reason="too many failed attempts", retry_after=max(1, math.ceil(wait)))


class _Refusal:
    """401 or 429 in the API's error shape (``{"error": {message, type, param, code}}``)."""

    def __init__(self, verdict: Verdict) -> None:
        if verdict.status == 429:
            message = f"too many failed attempts from this address: try again in {verdict.retry_after} s"
            error = {"message": message, "type": "rate_limited", "param": None, "code": "too_many_failures"}
            self.headers = [(b"retry-after", str(verdict.retry_after).encode())]
        else:
            message = ("missing or wrong credentials: send 'Authorization: Bearer <CRONACA_API_KEY>' "
                       "or log in on the page")
            error = {"message": message, "type": "authentication_error", "param": None,
                     "code": "invalid_api_key"}
            self.headers = [(b"www-authenticate", b"Bearer")]
        self.status = verdict.status
        self.body = json.dumps({"error": error}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(self.body)).encode()), *self.headers]})
        await send({"type": "http.response.body", "body": self.body})


def _refusal(verdict: Verdict) -> _Refusal:
    return _Refusal(verdict)
