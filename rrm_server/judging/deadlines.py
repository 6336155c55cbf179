"""A request's deadline as a plan for its votes: when thinking must stop so that every vote still
ends with a (forced) verdict in time, and whether a match not yet started can still afford to
think. Pure: times are seconds on one monotonic clock, given by the caller."""

from __future__ import annotations

from dataclasses import dataclass


def check_deadline_s(deadline_s: float, limit: float) -> float:
    """A request's ``deadline_s`` (seconds from its arrival), or ValueError naming the field."""
    if not deadline_s > 0:
        raise ValueError(f"deadline_s must be > 0 (seconds from now), got {deadline_s}")
    if deadline_s > limit:
        raise ValueError(f"deadline_s {deadline_s} is beyond this server's limit of {limit} s")
    return float(deadline_s)


@dataclass(frozen=True)
class DeadlinePlan:
    """``deadline``: when the caller stops waiting. ``margin``: what closing costs, the seconds a
    forced verdict needs (one token of prefill on the prefix cache, plus the engine's queue)."""

    deadline: float
    margin: float

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")

    @property
    def close_at(self) -> float:
        """When every vote still thinking gets its forced verdict (``exit: deadline``)."""
        return self.deadline - self.margin

    def closing(self, now: float) -> bool:
        return now >= self.close_at

    def think_budget(self, now: float, seconds_per_token: float) -> int:
        """Tokens a vote starting now can still think before ``close_at`` (0: force at once): a
        knockout match that starts late is played at the smallest budget, not skipped."""
        if seconds_per_token <= 0:
            raise ValueError(f"seconds_per_token must be > 0, got {seconds_per_token}")
        return max(0, int((self.close_at - now) / seconds_per_token))
