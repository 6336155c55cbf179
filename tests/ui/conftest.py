"""The judgment inspector in a real headless browser: Debian's chromium driven by Playwright (no
browser download), against the real service on the bundled model (tests/integration's launcher)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis

from tests.conftest import REPO
from tests.integration.conftest import RealServer, launch, stop

CHROMIUM = Path(os.environ.get("RRM_CHROMIUM", "/usr/bin/chromium"))
API_KEY = "ui-test-key"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("RRM_REQUIRE_BROWSER"):  # set by .ci/run, where bootstrap.sh installs it
            pytest.fail(f"{CHROMIUM} not found and RRM_REQUIRE_BROWSER is set: scripts/bootstrap.sh could not "
                        "install chromium (see .venv/install.log)")
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (scripts/bootstrap.sh does, as root, "
                    "with the test extra) to run the browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots of each view: $RRM_TEST_ARTIFACTS/ui, else test-artifacts/ui in the checkout."""
    root = Path(os.environ["RRM_TEST_ARTIFACTS"]) if os.environ.get("RRM_TEST_ARTIFACTS") else REPO / "test-artifacts"
    out = root / "ui"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, model_dir, chromium) -> RealServer:  # type: ignore[no-untyped-def]
    """The real service with an API key, recording in Redis under a prefix of its own (removed after)."""
    log = tmp_path_factory.mktemp("ui-server") / "server.log"
    prefix = f"rrm-test-ui-{uuid.uuid4().hex[:8]}:"
    server = launch(log, {"RRM_CACHE_URL": "redis://127.0.0.1:6379/0", "RRM_CACHE_PREFIX": prefix},
                    ["--record-judgments", "20", "--api-keys", API_KEY, "--max-votes", "4", "--kv-cache-gib", "1"])
    server.prefix = prefix
    try:
        yield server
    finally:
        stop(server)
        keys = list(redis.Redis().scan_iter(match=f"{prefix}*"))
        if keys:
            redis.Redis().delete(*keys)


@pytest.fixture(scope="module")
def browser(chromium):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Root in a container: chromium's sandbox needs user namespaces it may not have.
        b = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
