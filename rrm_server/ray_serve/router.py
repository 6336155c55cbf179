"""Ray Serve request router for the engine deployment: prefix affinity with bounded load.

Ray's ``PrefixCacheAffinityRouter`` matches prompt *text* (it reads ``.prompt``/``.messages``; a
token-id prompt normalises to "" and fails its match-rate division), and our prompts are token ids,
so this router keys on what the vote runner already computes: ``GenerationRequest.affinity_key``
(system prompt + query + the response shown first). The choice is ``engine/routing.py``'s, the
same as the remote pool's. Loads are the in-flight comparisons this caller has on each replica
(every gateway replica routes its own requests, with its own router instance).
"""

from __future__ import annotations

from typing import Any

from ray.serve.request_router import (
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from rrm_server.engine.routing import affinity_pick


def affinity_key(pending: PendingRequest | None) -> str | None:
    """The key of a ``generate(GenerationRequest)`` call; None for the other methods (health, info)."""
    if pending is None or not pending.args:
        return None
    return getattr(pending.args[0], "affinity_key", None)


class AffinityRouter(RequestRouter):
    def initialize_state(self, **kwargs: Any) -> None:
        self.in_flight: dict[str, int] = {}  # replica unique id -> comparisons routed, not completed
        self.routed: dict[str, str] = {}  # internal request id -> replica unique id

    def load(self, replica: RunningReplica) -> int:
        return self.in_flight.get(replica.replica_id.unique_id, 0)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is not None:
            # Every replica is offered at once: when none takes it, Serve must back off before asking
            # again (a router that leaves this False is asked again at once, in a busy loop).
            pending_request.routing_context.should_backoff = True
        key = affinity_key(pending_request)
        if key is None or len(candidate_replicas) < 2:
            return [candidate_replicas]  # Serve takes the shortest queue among them
        first = affinity_pick(key, candidate_replicas, name=lambda r: r.replica_id.unique_id, load=self.load)
        # The chosen one, else (full: at max_ongoing_requests) the shortest queue among the rest.
        return [[first], [r for r in candidate_replicas if r is not first]]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        rid = pending_request.metadata.internal_request_id
        self.routed[rid] = replica_id.unique_id
        self.in_flight[replica_id.unique_id] = self.in_flight.get(replica_id.unique_id, 0) + 1

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        unique = self.routed.pop(internal_request_id, None)
        if unique is not None:
            self.in_flight[unique] = max(0, self.in_flight.get(unique, 0) - 1)
