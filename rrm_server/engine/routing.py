"""Prefix-affinity routing, shared by the remote pool (``--engine openai``) and the Ray Serve request
router (``--ray``): comparisons with the same ``affinity_key`` (system prompt + query + the response
shown first) go to one replica, whose prefix cache then holds that prefix; a replica carrying much
more than its share of the load hands new keys to the least loaded one (bounded load). Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
# A replica may carry this much more than the mean load (plus SLACK) before new keys spill over.
LOAD_FACTOR = 1.5
SLACK = 4


def rendezvous(key: str, replicas: Sequence[T], name: Callable[[T], str]) -> list[T]:
    """Replicas in preference order for ``key`` (highest random weight first): stable per key, and
    only the keys of a replica that leaves move."""
    def weight(r: T) -> bytes:
        return hashlib.blake2b(f"{key}|{name(r)}".encode(), digest_size=8).digest()

    return sorted(replicas, key=weight, reverse=True)


def overloaded(load: float, loads: Sequence[float]) -> bool:
    """Whether a replica with ``load`` carries too much more than the mean of ``loads`` to take a new key."""
    return bool(loads) and load > LOAD_FACTOR * (sum(loads) / len(loads)) + SLACK


def affinity_pick(key: str, replicas: Sequence[T], name: Callable[[T], str], load: Callable[[T], float]) -> T:
    """The replica for ``key``: its rendezvous first choice, or the least loaded when that one is overloaded."""
    first = rendezvous(key, replicas, name)[0]
    if overloaded(load(first), [load(r) for r in replicas]):
        return min(replicas, key=load)
    return first
