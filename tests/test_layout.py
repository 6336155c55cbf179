"""The package's shape, checked: arrows point one way (HTTP -> serving -> judging -> engine, cache,
prompt), pure logic does no I/O, and no function grows past a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rrm_server"
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _violations(inside: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in _modules():
        name = _name(path)
        if not (name == inside or name.startswith(inside + ".")) or name.startswith(allowed):
            continue
        for imp in _imports(path):
            if any(imp == f or imp.startswith(f + ".") for f in forbidden):
                bad.append(f"{name} imports {imp}")
    return bad


def test_only_the_http_layer_and_what_starts_it_import_the_api() -> None:
    # The CLI runs the app under uvicorn; the Ray Serve application runs it as Serve's ingress.
    starters = ("rrm_server.api", "rrm_server.cli", "rrm_server.ray_serve.app")
    assert _violations("rrm_server", ("rrm_server.api",), allowed=starters) == []


def test_only_the_ray_serve_code_imports_ray() -> None:
    # The in-process and remote-pool services must not need Ray installed (the ray extra).
    assert _violations("rrm_server", ("ray",), allowed=("rrm_server.ray_serve", "rrm_server.engine.ray_handle")) == []


def test_the_serving_layer_knows_no_http() -> None:
    assert _violations("rrm_server.serving", ("fastapi", "starlette", "uvicorn", "rrm_server.api")) == []


@pytest.mark.parametrize("package", ["rrm_server.judging", "rrm_server.rewards"])
def test_pure_logic_imports_no_services(package: str) -> None:
    services = ("rrm_server.api", "rrm_server.serving", "rrm_server.cache", "rrm_server.engine", "rrm_server.ops",
                "rrm_server.settings", "httpx", "redis", "vllm", "fastapi")
    assert _violations(package, services) == []


def test_wire_types_depend_on_nothing_above_them() -> None:
    above = ("rrm_server.api", "rrm_server.serving", "rrm_server.judging", "rrm_server.engine", "rrm_server.cache")
    assert _violations("rrm_server.protocol", above) == []


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{_name(path)}.{node.name}: {lines} lines")
    assert long == []
