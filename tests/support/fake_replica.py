"""A `vllm serve` stand-in on real HTTP (loopback, its own thread and event loop) for the remote
engine pool's tests: /health, /v1/models and /v1/completions, each able to hang until the client
gives up, which it records (vLLM aborts a request whose connection closes)."""

from __future__ import annotations

import asyncio
import json
import threading

from tests.support.server import free_port

CARD = {"id": "rrm-7b", "object": "model", "root": "/models/RRM-7B", "max_model_len": 8192}
COMPLETION = {"choices": [{"text": "\\boxed{Assistant 1}", "finish_reason": "stop", "token_ids": [5, 6]}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


class FakeReplica:
    """Answers /v1/models with ``cards`` and /v1/completions with COMPLETION. With ``hang`` it accepts
    a completion and never answers until the client closes; with ``hang_health`` (settable while it
    runs) /health does the same; with ``healthy`` False /health is a 503."""

    def __init__(self, cards: list[dict] | None = None, hang: bool = False) -> None:
        self.cards = cards if cards is not None else [dict(CARD)]
        self.hang = hang
        self.hang_health = False
        self.healthy = True
        self.bodies: list[dict] = []  # completion requests received
        self.closed_by_client = 0  # hung requests the client closed
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_until_complete(self._server.serve_forever())
        except asyncio.CancelledError:
            pass

    def _answer(self, path: str, raw: bytes) -> tuple[int, dict] | None:
        """The status and body for a request, or None to hang."""
        if path == "/v1/completions":
            self.bodies.append(json.loads(raw))
            return None if self.hang else (200, COMPLETION)
        if path == "/v1/models":
            return 200, {"object": "list", "data": self.cards}
        if path == "/health":
            return None if self.hang_health else (200 if self.healthy else 503, {})
        return 200, {}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode().split("\r\n")
                headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in header_lines if ": " in h)}
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                answer = self._answer(request_line.split()[1], raw)
                if answer is None:
                    await reader.read()  # b"" once the client gives up and closes
                    self.closed_by_client += 1
                    return
                status, payload = answer
                body = json.dumps(payload).encode()
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
