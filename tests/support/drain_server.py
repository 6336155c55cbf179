"""``python -m tests.support.drain_server MODEL_DIR PORT DELAY``: the real CLI serving loop
(``rrm_server.cli.run_server``: signals, drain) around a scripted engine that takes DELAY s per vote."""

from __future__ import annotations

import sys

from transformers import AutoTokenizer

from rrm_server.api.app import build_app
from rrm_server.cli import run_server
from rrm_server.ops.logging import configure_logging
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine

if __name__ == "__main__":
    model_dir, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    settings = Settings(port=port, drain_delay=1.5, drain_timeout=20, cache_enabled=False)
    configure_logging("info", "json")
    run_server(build_app(settings, engine=ScriptedEngine(tokenizer, delay=delay), tokenizer=tokenizer), settings)
