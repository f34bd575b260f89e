"""Sessions, CSRF tokens, security headers and the login throttle of the web console.

Description:
    A session is a random token in a cookie (HttpOnly, SameSite=Strict, Path=/, Secure
    whenever the request came over TLS — directly or through a proxy the console trusts —
    and then named with the ``__Host-`` prefix so no subdomain can plant one). The token is
    replaced at every login. Each session has its own CSRF token, which every form carries
    and every POST must return; the login form, before any session, uses a double-submit
    token (a cookie and a field that must match).

    Every response carries a Content-Security-Policy that allows scripts, styles and images
    from the console itself only (no inline script, no framing, forms only to itself),
    ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and
    ``Cache-Control: no-store``.

    :class:`LoginThrottle` limits login attempts per client address (on top of the account
    lockout of :mod:`postwarden.admin.web_users`): a password guesser spread over many
    accounts is slowed too.

Security:
    Tokens are compared in constant time. Nothing here logs a token or a password.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "pw_session"
SECURE_SESSION_COOKIE = "__Host-pw_session"
LOGIN_COOKIE = "pw_login"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}


def is_secure(request: Request) -> bool:
    """Whether the browser reached us over TLS (uvicorn's proxy support sets the scheme)."""
    return request.url.scheme == "https"


def session_cookie_name(request: Request) -> str:
    return SECURE_SESSION_COOKIE if is_secure(request) else SESSION_COOKIE


def session_token(request: Request) -> str:
    return request.cookies.get(session_cookie_name(request), "")


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        session_cookie_name(request),
        token,
        httponly=True,
        secure=is_secure(request),
        samesite="strict",
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        session_cookie_name(request),
        path="/",
        secure=is_secure(request),
        httponly=True,
        samesite="strict",
    )


def login_token(request: Request) -> str:
    """The login form's double-submit token: the browser's, or a new one."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    return token if 20 <= len(token) <= 100 else secrets.token_urlsafe(24)


def set_login_cookie(response: Response, request: Request, token: str) -> None:
    if request.cookies.get(LOGIN_COOKIE) != token:
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            httponly=True,
            secure=is_secure(request),
            samesite="strict",
            path="/login",
        )


def tokens_match(expected: str, given: object) -> bool:
    return (
        bool(expected)
        and isinstance(given, str)
        and secrets.compare_digest(expected.encode(), given.encode())
    )


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                for name, value in HEADERS.items():
                    if name.encode() not in present:
                        message["headers"].append((name.encode(), value.encode()))
            await send(message)

        await self.app(scope, receive, with_headers)


class LoginThrottle:
    """At most *limit* login attempts per client address per *window* seconds."""

    def __init__(self, limit: int = 20, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._attempts) > 10_000:  # forget idle clients; bounded memory
                self._attempts = {
                    k: v for k, v in self._attempts.items() if v and v[-1] > now - self.window
                }
            seen = self._attempts.setdefault(client, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return False
            seen.append(now)
            return True
