"""The gateway's self-protection and observability, as small pure-ASGI pieces, outermost first:

``Observe`` (request id accepted or generated and echoed, metrics, a structured access-log line),
``Authenticate`` (bearer keys, constant-time compare), ``LimitBody`` (a declared body over the
limit: 413), ``Admit`` (work routes wait in a bounded queue: 429 with ``Retry-After`` when full),
``ReadBody`` (the body read whole within a deadline: 408, or 413 past the limit) and ``Deadline``
(an optional per-request deadline: 504). Which routes are work, open or known comes from the app
itself (``Routes.of``): a new POST route is admission-controlled without anyone listing it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount

from rrm_server.ops import metrics
from rrm_server.ops.logging import REQUEST_ID
from rrm_server.protocol.errors import error_body
from rrm_server.settings import Settings

logger = logging.getLogger("rrm_server.access")
ARRIVED = "rrm_arrived"  # scope["state"] key: when the request came in (event-loop clock), for deadlines
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Routes:
    known: frozenset[str]  # paths that get their own metric label (others: "other")
    work: frozenset[str]  # POST routes: admission-controlled
    open: frozenset[str]  # reachable without an API key
    open_trees: tuple[str, ...] = ()  # mounted static files (the /ui page): no key, no data

    @classmethod
    def of(cls, app: FastAPI, metrics_open: bool) -> Routes:
        """Routes marked ``openapi_extra={"security": []}`` (the probes) need no key; /metrics neither,
        unless --metrics-auth; nor the files under a mount whose app says it is ``public``."""
        paths = {getattr(r, "path", "") for r in app.routes}
        api = [r for r in app.routes if isinstance(r, APIRoute)]
        work = {r.path for r in api if "POST" in r.methods}
        open_ = {r.path for r in api if (r.openapi_extra or {}).get("security") == []}
        if metrics_open:
            open_.add("/metrics")
        trees = tuple(r.path for r in app.routes if isinstance(r, Mount) and getattr(r.app, "public", False) is True)
        return cls(frozenset(paths), frozenset(work), frozenset(open_), trees)

    def tree(self, path: str) -> str | None:
        """The open tree ``path`` is in, if any."""
        return next((t for t in self.open_trees if path == t or path.startswith(t + "/")), None)

    def is_open(self, path: str) -> bool:
        return path in self.open or self.tree(path) is not None

    def label(self, path: str) -> str:
        return path if path in self.known else self.tree(path) or "other"


async def send_error(send: Send, status: int, type_: str, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = error_body(status, type_, message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class Observe:
    def __init__(self, app: ASGIApp, routes: Routes) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = (_header(scope, b"x-request-id") or "")[:128] or uuid.uuid4().hex
        scope.setdefault("state", {})[ARRIVED] = asyncio.get_running_loop().time()
        token = REQUEST_ID.set(rid)
        endpoint = self.routes.label(scope["path"])
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(endpoint=endpoint, status=str(status)).inc()
            metrics.REQUEST_SECONDS.labels(endpoint=endpoint).observe(elapsed)
            logger.info("request", extra={"method": scope.get("method"), "path": endpoint, "status": status,
                                          "duration_s": round(elapsed, 4)})
            REQUEST_ID.reset(token)


class Authenticate:
    def __init__(self, app: ASGIApp, keys: list[str], routes: Routes) -> None:
        self.app, self.routes = app, routes
        self.keys = [k.encode() for k in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys and not self.routes.is_open(scope["path"]):
            if not self._authorized(_header(scope, b"authorization") or ""):
                metrics.REJECTED.labels(reason="unauthorized").inc()
                return await send_error(send, 401, "unauthorized", "missing or invalid API key "
                                        "(Authorization: Bearer ...)", [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        ok = False
        for key in self.keys:  # compare with every key: time does not tell which one matched
            ok |= hmac.compare_digest(given, key)
        return ok


class LimitBody:
    """A body declared over the limit is refused before it is read or queued."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _header(scope, b"content-length") if scope["type"] == "http" else None
        if length is not None and length.isdigit() and int(length) > self.max_body:
            metrics.REJECTED.labels(reason="body_too_large").inc()
            return await send_error(send, 413, "payload_too_large",
                                    f"request body is {length} bytes; the limit is {self.max_body}")
        await self.app(scope, receive, send)


class Admit:
    """Work requests run ``max_concurrent`` at a time, ``max_queue`` more wait; beyond that, 429.
    Bodies are read only once admitted: a flood of queued requests holds connections, not megabytes."""

    def __init__(self, app: ASGIApp, routes: Routes, max_concurrent: int, max_queue: int) -> None:
        self.app, self.routes = app, routes
        self.slots = asyncio.Semaphore(max_concurrent)
        self.max_queue = max_queue
        self.waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope["path"] not in self.routes.work:
            return await self.app(scope, receive, send)
        if self.slots.locked() and self.waiting >= self.max_queue:
            metrics.REJECTED.labels(reason="queue_full").inc()
            return await send_error(send, 429, "rate_limited", f"the server is at capacity ({self.max_queue} "
                                    "requests queued); retry later", [(b"retry-after", b"1")])
        self.waiting += 1
        metrics.QUEUED.inc()
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
            metrics.QUEUED.dec()
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


class ReadBody:
    """Every body is read here, whole, within ``timeout``: a client that announces more than it
    sends (or trickles it) gets a 408 instead of holding its slot for ever."""

    def __init__(self, app: ASGIApp, max_body: int, timeout: float) -> None:
        self.app, self.max_body, self.timeout = app, max_body, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        try:
            receive = await self._buffered(receive)
        except _BodyTooLarge:
            metrics.REJECTED.labels(reason="body_too_large").inc()
            return await send_error(send, 413, "payload_too_large",
                                    f"request body exceeds the limit of {self.max_body} bytes")
        except _BodyTimeout:
            metrics.REJECTED.labels(reason="body_timeout").inc()
            return await send_error(send, 408, "request_timeout", f"the request body did not arrive within "
                                    f"{self.timeout:g} s (is Content-Length larger than the body?)",
                                    [(b"connection", b"close")])
        await self.app(scope, receive, send)

    async def _buffered(self, receive: Receive) -> Receive:
        """Read the body up to the limit and the deadline (raising past either), then replay it."""
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body:
                raise _BodyTooLarge
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # afterwards: the disconnect, for abort-on-disconnect

        return replay


class Deadline:
    def __init__(self, app: ASGIApp, timeout: float | None) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout is None:
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking_send), self.timeout)
        except TimeoutError:
            if not started:
                await send_error(send, 504, "timeout", f"the request did not finish within {self.timeout:g} s; "
                                 "its engine work was aborted (retry with fewer votes or responses, or a "
                                 "larger deadline)")


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """After the routes are in: the route sets are read from the app."""
    routes = Routes.of(app, metrics_open=not settings.metrics_auth)
    # add_middleware puts each new piece outside the previous ones: innermost first.
    app.add_middleware(Deadline, timeout=settings.request_timeout)
    app.add_middleware(ReadBody, max_body=settings.max_body_bytes, timeout=settings.body_timeout)
    app.add_middleware(Admit, routes=routes, max_concurrent=settings.max_concurrent_requests,
                       max_queue=settings.max_queued_requests)
    app.add_middleware(LimitBody, max_body=settings.max_body_bytes)
    app.add_middleware(Authenticate, keys=settings.load_api_keys(), routes=routes)
    app.add_middleware(Observe, routes=routes)
