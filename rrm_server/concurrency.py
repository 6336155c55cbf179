"""Running coroutines together, and reading what failed: the one place exception groups are unwrapped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


def first_error(e: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups; ``e`` itself when it is not a group."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


async def gather_all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; the first failure cancels the rest (work that nobody will read must not keep
    the engine busy) and is raised as itself, so it keeps its type and status code."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]  # type: ignore[arg-type]
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return [t.result() for t in tasks]
