"""The middleware reads its route sets from the app: a new POST route is admission-controlled and
gets its own metric label without anyone listing it; only routes marked open skip the API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute

from rrm_server.api.app import build_app
from rrm_server.api.middleware import Routes
from rrm_server.settings import Settings


def test_route_sets_come_from_the_app(model_dir) -> None:  # type: ignore[no-untyped-def]
    app = build_app(Settings(model=str(model_dir)))
    routes = Routes.of(app, metrics_open=True)
    posts = {r.path for r in app.routes if isinstance(r, APIRoute) and "POST" in r.methods}
    assert {"/v1/judge/pairwise", "/v1/judge/rank", "/v1/rewards", "/get_reward"} <= routes.work == posts
    assert routes.open == {"/health", "/ready", "/metrics"}
    assert {"/v1/models", "/v1/cache", "/docs", "/openapi.json"} <= routes.known
    assert not Routes.of(app, metrics_open=False).open & {"/metrics"}


def test_a_new_post_route_is_work_by_default(model_dir) -> None:  # type: ignore[no-untyped-def]
    app = build_app(Settings(model=str(model_dir)))
    extra = APIRouter()

    @extra.post("/v1/judge/new")
    async def new() -> dict:
        return {}

    app.include_router(extra)
    routes = Routes.of(app, metrics_open=True)
    assert "/v1/judge/new" in routes.work and "/v1/judge/new" in routes.known
    assert "/v1/judge/new" not in routes.open
