"""Wire schemas of recorded judgments (``GET /v1/judgments``, ``--record-judgments N``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from rrm_server.protocol.judge import PairwiseRequest, PairwiseResponse, RankRequest, RankResponse

MAX_LIST = 100  # most summaries one listing returns
PREVIEW_CHARS = 160


class JudgmentSummary(BaseModel):
    """One line of the listing: enough to pick a judgment, none of its responses' text."""

    id: str = Field(description="The judge response's id; GET /v1/judgments/{id} returns the whole record.")
    created: int = Field(description="Unix time of the response.")
    kind: Literal["pairwise", "rank"] = Field(description="The endpoint: /v1/judge/pairwise or /v1/judge/rank.")
    method: Literal["pairwise", "elo", "knockout"]
    model: str
    query_preview: str = Field(description=f"The query's first {PREVIEW_CHARS} characters, whitespace collapsed.")
    responses: int = Field(description="Number of responses judged.")
    winner: int | None = Field(description="The pairwise winner or the ranking's best; null when undecided.")
    status: Literal["decided", "undecided"]
    votes: int = Field(description="Votes over all matches.")
    invalid_votes: int


class Recording(BaseModel):
    enabled: bool = Field(description="False unless the server runs with --record-judgments N.")
    backend: Literal["memory", "redis", "off"]
    capacity: int = Field(description="Most judgments kept (the newest).")
    ttl: float = Field(description="Seconds a judgment is kept.")


class JudgmentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JudgmentSummary] = Field(description="Newest first.")
    recording: Recording


class JudgmentRecord(BaseModel):
    """A judge request as it was received and the response as it was returned."""

    object: Literal["judgment"] = "judgment"
    summary: JudgmentSummary
    request: PairwiseRequest | RankRequest
    response: Annotated[PairwiseResponse | RankResponse, Field(discriminator="object")]


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[:PREVIEW_CHARS - 1] + "…"


def summarize(req: PairwiseRequest | RankRequest, resp: PairwiseResponse | RankResponse) -> JudgmentSummary:
    if isinstance(resp, PairwiseResponse):
        winner, votes, invalid = resp.winner, len(resp.votes), resp.tally.invalid
        kind, method = "pairwise", "pairwise"
    else:
        winner, kind, method = resp.best, "rank", resp.method
        votes = sum(len(m.votes) for m in resp.matches)
        invalid = sum(m.tally.invalid for m in resp.matches)
    return JudgmentSummary(id=resp.id, created=resp.created, kind=kind, method=method, model=resp.model,  # type: ignore[arg-type]
                           query_preview=_preview(req.query), responses=len(req.responses), winner=winner,
                           status="undecided" if winner is None else "decided", votes=votes,
                           invalid_votes=invalid)
