"""Abort a request's engine work when its HTTP client goes away.

Starlette does not cancel a handler when the client disconnects; we race the handler against the
``http.disconnect`` message and cancel it, which cancels every engine call under it (vLLM aborts
cancelled requests). The body has already been read by then, so the next message is a disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Non-standard "client closed request" status (nginx); nobody receives it, but logs and metrics do.
CLIENT_CLOSED_REQUEST = 499


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def with_cancellation(handler: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T | Response]]:
    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> T | Response:
        request: Request = kwargs["raw_request"]
        work = asyncio.ensure_future(handler(*args, **kwargs))
        watch = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # a deadline or shutdown: stop the work, and see it stopped
            work.cancel()
            watch.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({work})  # its engine calls are aborted before we report the outcome
            raise
        if work in done:
            watch.cancel()
            return work.result()
        work.cancel()
        try:
            await work
        except (asyncio.CancelledError, Exception):
            pass
        logger.info("client disconnected from %s; its engine work was aborted", request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    return wrapper
