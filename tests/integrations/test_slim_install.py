"""The client and the trainer adapters install on their own (base dependencies: httpx and pydantic, on
Python >= 3.10), so a trainer image does not pull the server's dependencies."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import rrm_server

PACKAGE = Path(rrm_server.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"
SLIM = ["rrm_server.client", "rrm_server.integrations.openrlhf", "rrm_server.integrations.trl",
        "rrm_server.integrations.verl"]
SERVER_ONLY = ["fastapi", "uvicorn", "transformers", "redis", "pandas", "numpy", "evalica", "vllm",
               "prometheus_client", "pydantic_settings", "pythonjsonlogger", "starlette"]


def test_base_dependencies_are_the_clients_only():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert sorted(d.split(">")[0] for d in project["dependencies"]) == ["httpx", "pydantic"]
    assert project["requires-python"] == ">=3.10"
    for extra in ("cpu", "gpu"):  # the service's install commands still bring the whole server
        assert "rrm-server[server]" in project["optional-dependencies"][extra]


def _loaded_modules() -> dict:
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in SLIM) +
            "print(json.dumps({'modules': sorted(sys.modules), 'files': sorted({m.__file__ for m in "
            "sys.modules.values() if getattr(m, '__file__', None) and m.__name__.startswith('rrm_server')})}))")
    # torch is optional in the OpenRLHF adapter (tensors when present): hide it like a slim image.
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None\n" + code],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_client_and_adapters_import_no_server_dependency():
    loaded = _loaded_modules()
    top = {m.split(".")[0] for m in loaded["modules"]}
    assert not top & set(SERVER_ONLY), top & set(SERVER_ONLY)


def test_client_and_adapters_are_python_3_10_syntax():
    # Every project module the slim install loads parses as Python 3.10 (no 3.11-only syntax).
    files = _loaded_modules()["files"]
    assert len(files) >= len(SLIM)
    for f in files:
        ast.parse(Path(f).read_text(), filename=f, feature_version=(3, 10))
