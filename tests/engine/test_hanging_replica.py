"""A remote `vllm serve` replica that hangs: the request deadline holds (504, the replica's request
closed), and a replica whose health check hangs too is taken out of the pool."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.server import free_port, serve_in_thread


class HangingReplica:
    """Real HTTP on loopback: answers /v1/models, hangs on /v1/completions (and on /health once
    ``hang_health`` is set) until the client closes the connection, which it records."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hang_health = False
        self.completions = 0
        self.closed_by_client = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_until_complete(server.serve_forever())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode().split("\r\n")
                headers = dict(h.split(": ", 1) for h in header_lines if ": " in h)
                length = int(headers.get("content-length") or headers.get("Content-Length") or 0)
                if length:
                    await reader.readexactly(length)
                path = request_line.split()[1]
                if path == "/v1/completions" or (path == "/health" and self.hang_health):
                    self.completions += path == "/v1/completions"
                    await reader.read()  # returns b"" when the client gives up and closes
                    self.closed_by_client += 1
                    return
                body = json.dumps({"data": [{"id": "hung", "max_model_len": 4096}]} if path == "/v1/models"
                                  else {}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
def gateway(model_dir, tokenizer) -> Iterator[tuple[str, HangingReplica]]:  # type: ignore[no-untyped-def]
    replica = HangingReplica()
    settings = Settings(engine="openai", engine_url=replica.url, model=str(model_dir), request_timeout=1.5,
                        cache_enabled=False, max_model_len=4096)
    app = build_app(settings, tokenizer=tokenizer)
    app.state.runtime.engine.health_interval = 0.2
    with serve_in_thread(app) as url:
        yield url, replica


def test_the_request_deadline_holds_against_a_hung_replica(gateway):
    url, replica = gateway
    body = {"query": "q", "responses": ["a", "b"], "votes": 2, "early_stop": False, "verdict_probs": False}
    started = time.monotonic()
    r = httpx.post(f"{url}/v1/judge/pairwise", json=body, timeout=30)
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["type"] == "timeout" and err["code"] == 504 and "1.5 s" in err["message"]
    assert time.monotonic() - started < 30
    # Both votes reached the replica, and both of its requests were closed (vLLM aborts on that).
    deadline = time.monotonic() + 10
    while replica.closed_by_client < 2:
        assert time.monotonic() < deadline, (replica.completions, replica.closed_by_client)
        time.sleep(0.05)
    assert replica.completions == 2
    assert httpx.get(f"{url}/health").status_code == 200  # the gateway itself is fine


# waits out real health-check timeouts: ~10 s
@pytest.mark.slow
def test_a_replica_whose_health_check_hangs_leaves_the_pool(gateway):
    url, replica = gateway
    assert httpx.get(f"{url}/ready").status_code == 200
    replica.hang_health = True
    deadline = time.monotonic() + 30  # two missed checks of 5 s each
    while (r := httpx.get(f"{url}/ready")).status_code == 200:
        assert time.monotonic() < deadline, "a hung replica stayed in the pool"
        time.sleep(0.2)
    assert r.json()["error"]["type"] == "engine_unavailable"
    r = httpx.post(f"{url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "b"]}, timeout=30)
    assert r.status_code == 503 and r.json()["error"]["code"] == 503
