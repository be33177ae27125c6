"""One ASGI middleware for the server's gate: the Host check (a page on another site
cannot reach a loopback server through DNS rebinding), the optional bearer token on
``/v1``, the upload size limit (413 before the body is read when ``Content-Length`` says
so, and while it streams otherwise) and security headers on every response.

Pure ASGI (no FastAPI import) so that it sees the raw byte stream.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from attnsr.serve.errors import ApiError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# the page: everything from this server (no CDN), images also from blob: URLs
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small option fields


class _BodyTooLargeError(Exception):
    pass


class Guard:
    """Host check, token, body size limit and headers around ``app``.

    Args:
        allowed_hosts: Host header names accepted (None: any, for a server bound to all
            interfaces, where names are unknown).
        token: the bearer token ``/v1`` paths need (None: no token).
        max_body: largest request body in bytes.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: tuple[str, ...] | None,
                 token: str | None, max_body: int) -> None:
        self.app, self.allowed_hosts, self.token, self.max_body = (
            app, allowed_hosts, token, max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        problem = self._refuse(scope, headers)
        if problem is not None:
            await _send_problem(send, problem)
            return
        state = {"exceeded": False, "replaced": False}

        async def send_guarded(message: Message) -> None:
            if state["replaced"]:
                return  # the application's answer to a body we cut off
            if state["exceeded"] and message["type"] == "http.response.start":
                state["replaced"] = True
                await _send_problem(send, self._too_large())
                return
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *_security_headers(scope["path"])]
            await send(message)

        try:
            await self.app(scope, self._counting(receive, state), send_guarded)
        except _BodyTooLargeError:
            if not state["replaced"]:
                await _send_problem(send, self._too_large())

    def _refuse(self, scope: Scope, headers: dict[str, str]) -> ApiError | None:
        """Why this request is refused before the application sees it (None: it is not)."""
        host = _host_name(headers.get("host", ""))
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return ApiError(400, "bad_host", f"Host {host!r} is not this server's name "
                            "(a loopback server answers to localhost and 127.0.0.1 only)")
        if self.token is not None and scope["path"].startswith("/v1/") and \
                scope.get("method") != "OPTIONS":
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return ApiError(401, "unauthorized", "this server needs a token: send "
                                "'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return self._too_large()
        return None

    def _too_large(self) -> ApiError:
        mib = (self.max_body - FORM_OVERHEAD) / 2**20
        return ApiError(413, "too_large", f"upload too large: the limit is {mib:.1f} MiB")

    def _counting(self, receive: Receive, state: dict[str, bool]) -> Receive:
        """``receive`` that stops a body growing past the limit (whatever the
        application does with the exception, its answer is replaced by a 413)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    state["exceeded"] = True
                    raise _BodyTooLargeError
            return message

        return counted


def _host_name(value: str) -> str:
    """The name in a Host header: ``localhost:8000`` -> ``localhost``, ``[::1]:80`` ->
    ``::1``."""
    if value.startswith("["):
        return value[1:].split("]", 1)[0].lower()
    return (value.rsplit(":", 1)[0] if value.count(":") == 1 else value).lower()


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
               (b"x-frame-options", b"DENY")]
    if path == "/" or path.startswith("/static/"):
        headers.append((b"content-security-policy", PAGE_CSP.encode()))
    return headers


async def _send_problem(send: Send, problem: ApiError) -> None:
    body = json.dumps(problem.body()).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               *[(k.lower().encode(), v.encode()) for k, v in problem.headers.items()],
               *_security_headers("")]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
