"""The gateway's self-protection and observability, as one pure-ASGI middleware.

In order: request id (``X-Request-ID`` accepted or generated, echoed back), API-key check
(bearer, constant-time compare), body size limit (413), admission control for the work endpoints
(a bounded queue; 429 with ``Retry-After`` when it is full), the body read whole within a deadline
(408), an optional per-request deadline (504), then metrics and a structured access-log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from typing import Any, Awaitable, Callable

from rrm_server.ops import metrics
from rrm_server.ops.logging import REQUEST_ID
from rrm_server.settings import Settings

logger = logging.getLogger("rrm_server.access")
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = {"/health", "/ready"}  # probes never need a key
WORK_PATHS = {"/v1/judge/pairwise", "/v1/judge/rank", "/v1/rewards", "/get_reward"}
KNOWN_PATHS = WORK_PATHS | OPEN_PATHS | {"/v1/judge/render", "/v1/models", "/v1/cache", "/metrics", "/docs",
                                         "/openapi.json"}


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


def _error_body(status: int, type_: str, message: str) -> bytes:
    return json.dumps({"error": {"type": type_, "message": message, "param": None, "code": status}}).encode()


class OpsMiddleware:
    def __init__(self, app: Callable, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.keys = [k.encode() for k in settings.load_api_keys()]
        self.max_body = settings.max_body_bytes
        self.slots = asyncio.Semaphore(settings.max_concurrent_requests)
        self.waiting = 0
        self.max_queue = settings.max_queued_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = (headers.get("x-request-id") or "")[:128] or uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        path = scope["path"]
        endpoint = path if path in KNOWN_PATHS else "other"
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        async def reply(code: int, type_: str, message: str, extra: list | None = None) -> None:
            body = _error_body(code, type_, message)
            await send_with_id({"type": "http.response.start", "status": code, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                *(extra or [])]})
            await send_with_id({"type": "http.response.body", "body": body})

        metrics.IN_FLIGHT.inc()
        try:
            if self.keys and path not in OPEN_PATHS and not (path == "/metrics" and not self.settings.metrics_auth):
                if not self._authorized(headers.get("authorization", "")):
                    metrics.REJECTED.labels(reason="unauthorized").inc()
                    return await reply(401, "unauthorized", "missing or invalid API key (Authorization: Bearer ...)",
                                       [(b"www-authenticate", b"Bearer")])
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                metrics.REJECTED.labels(reason="body_too_large").inc()
                return await reply(413, "payload_too_large",
                                   f"request body is {length} bytes; the limit is {self.max_body}")
            # Every body is read here, whole, within --body-timeout: a client that announces more than
            # it sends (or trickles it) gets a 408 instead of holding its slot for ever.
            has_body = scope.get("method") in ("POST", "PUT", "PATCH")
            if path in WORK_PATHS and scope.get("method") == "POST":
                if self.slots.locked() and self.waiting >= self.max_queue:
                    metrics.REJECTED.labels(reason="queue_full").inc()
                    return await reply(429, "rate_limited", f"the server is at capacity ({self.max_queue} requests "
                                       "queued); retry later", [(b"retry-after", b"1")])
                self.waiting += 1
                metrics.QUEUED.inc()
                try:
                    await self.slots.acquire()
                finally:
                    self.waiting -= 1
                    metrics.QUEUED.dec()
                try:
                    # Bodies are read only once admitted: a flood of queued requests holds
                    # connections, not megabytes of buffered bodies.
                    if has_body:
                        receive = await self._buffered(receive)  # counted before the app sees it
                    await self._run(scope, receive, send_with_id, reply)
                finally:
                    self.slots.release()
            else:
                if has_body:
                    receive = await self._buffered(receive)
                await self._run(scope, receive, send_with_id, reply)
        except _BodyTooLarge:
            metrics.REJECTED.labels(reason="body_too_large").inc()
            await reply(413, "payload_too_large", f"request body exceeds the limit of {self.max_body} bytes")
        except _BodyTimeout:
            metrics.REJECTED.labels(reason="body_timeout").inc()
            await reply(408, "request_timeout", f"the request body did not arrive within "
                        f"{self.settings.body_timeout:g} s (is Content-Length larger than the body?)",
                        [(b"connection", b"close")])
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(endpoint=endpoint, status=str(status["code"])).inc()
            metrics.REQUEST_SECONDS.labels(endpoint=endpoint).observe(elapsed)
            logger.info("request", extra={"method": scope.get("method"), "path": endpoint,
                                          "status": status["code"], "duration_s": round(elapsed, 4)})
            REQUEST_ID.reset(token)

    async def _run(self, scope: Scope, receive: Receive, send: Send, reply: Callable) -> None:
        timeout = self.settings.request_timeout
        if timeout is None:
            return await self.app(scope, receive, send)
        started = {"yes": False}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started["yes"] = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking_send), timeout)
        except TimeoutError:
            if not started["yes"]:
                await reply(504, "timeout", f"the request did not finish within {timeout:g} s; its engine work "
                            "was aborted (retry with fewer votes or responses, or a larger deadline)")

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        ok = False
        for key in self.keys:  # compare with every key: time does not tell which one matched
            ok |= hmac.compare_digest(given, key)
        return ok

    async def _buffered(self, receive: Receive) -> Receive:
        """Read the body up to the limit and the deadline (raising past either), then replay it."""
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.settings.body_timeout
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
