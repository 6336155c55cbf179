"""Shared fixtures, and the two test tiers.

Everything (``scripts/test.sh``, plain ``pytest``) runs every test. The fast tier (``pytest --fast``,
``scripts/test.sh --fast``) leaves out the tests marked

* ``engine``: the real vLLM CPU engine and the bundled model's weights (pyproject.toml);
* ``weights``: the bundled model's weights (a 100 MB download and a conversion, once per machine);
* ``vllm``: imports the vLLM package (no engine start, no weights);
* ``slow``: model-free but slow: own server processes, real health-check timeouts, huge inputs,
  schemathesis fuzzing.

Everything else runs on the bundled model's real tokenizer files, vendored without weights under
``tests/fixtures/smollm2-tokenizer``. A guard fails any test without ``engine``/``weights``/``vllm``
that imports vLLM or reaches for the bundled model, so the fast tier stays model-free.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from rrm_server import bundled_model
from rrm_server.prompt.template import PromptBuilder
from tests.support import fast_http

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TOKENIZER_FILES = REPO / "tests" / "fixtures" / "smollm2-tokenizer"

NEEDS_WEIGHTS = ("engine", "weights")  # model_dir is then the real bundled model
MAY_IMPORT_VLLM = ("engine", "vllm")
NOT_FAST = ("engine", "weights", "vllm", "slow", "ray")


# -- tiers -----------------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true", default=False,
                     help="the fast tier: leave out the tests marked engine, weights, vllm or slow (needs no "
                          "model, imports no vLLM)")


def pytest_configure(config: pytest.Config) -> None:
    _guard.install()
    fast_http.install()


def _marks(item: pytest.Item, names: tuple[str, ...] = NOT_FAST) -> set[str]:
    return {m for m in names if item.get_closest_marker(m) is not None}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--fast"):
        dropped = [i for i in items if _marks(i)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if not _marks(i)]


def pytest_collection_finish(session: pytest.Session) -> None:
    # One answer for the session (model_dir is session-scoped): the real bundled model only if a
    # selected test needs weights; otherwise the vendored tokenizer files stand in for it.
    _guard.needs_weights = any(_marks(i, NEEDS_WEIGHTS) for i in session.items)
    _guard.after_collection()


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("--fast"):
        return "rrm-server tests: fast tier (engine, weights, vllm and slow tests left out; no model, no vLLM)"
    return "rrm-server tests: every selected test (scripts/test.sh --fast: the fast tier)"


class _Guard:
    """Fails a test that imports vLLM without an engine/vllm mark, or uses the machine's bundled model
    (or downloads one) without an engine/weights mark."""

    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        self.needs_weights = False
        self.vllm_seen = False
        self.real_ensure = bundled_model.ensure_bundled_model
        self.real_fetch = bundled_model._fetch_gguf
        self.violations: list[str] = []
        self.pending: str | None = None  # a refusal in the running test (which may have caught it)
        self.model_was_prepared = bundled_model.is_prepared()

    def install(self) -> None:
        bundled_model.ensure_bundled_model = self.ensure  # type: ignore[assignment]
        bundled_model._fetch_gguf = self.fetch  # type: ignore[assignment]

    def allowed(self, markers: tuple[str, ...]) -> bool:
        return self.item is not None and bool(_marks(self.item, markers))

    def _refuse(self, what: str) -> None:
        who = self.item.nodeid if self.item is not None else "collection"
        msg = (f"{who} {what}, but it is not marked engine or weights: the fast tier must run without the "
               f"bundled model (mark it @pytest.mark.weights, or use the tokenizer_dir fixture)")
        self.violations.append(msg)
        if self.item is not None:
            self.pending = msg
        raise RuntimeError(msg)

    def ensure(self, cache_dir: Path | None = None) -> Path:
        machine_wide = cache_dir is None or Path(cache_dir) == bundled_model.default_cache_dir()
        if machine_wide and not self.allowed(NEEDS_WEIGHTS):
            self._refuse("asked for the bundled model (rrm_server.bundled_model.ensure_bundled_model)")
        return self.real_ensure(cache_dir)

    def fetch(self, workdir: Path) -> Path:
        if not self.allowed(NEEDS_WEIGHTS):
            self._refuse("started downloading the bundled model's weights")
        return self.real_fetch(workdir)

    def after_collection(self) -> None:
        if "vllm" in sys.modules:  # a test module (or conftest) imports it at module level
            self.vllm_seen = True
            if not self.needs_weights:  # engine tests import it anyway; a model-free session must not
                raise pytest.UsageError("vllm was imported while collecting: import it inside the tests "
                                        "marked engine or vllm, not at module level")

    def vllm_check(self, item: pytest.Item) -> str | None:
        if self.vllm_seen or "vllm" not in sys.modules:
            return None
        self.vllm_seen = True  # blame the first test only; the module stays imported after it
        if _marks(item, MAY_IMPORT_VLLM):
            return None
        return (f"{item.nodeid} imported vllm but is not marked engine or vllm: the fast tier must not "
                f"import vLLM (mark it @pytest.mark.vllm, or keep the import out of its path)")


_guard = _Guard()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any):  # type: ignore[no-untyped-def]
    _guard.item = item
    try:
        yield
    finally:
        _guard.item = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    problem = _guard.vllm_check(item) or _guard.pending
    _guard.pending = None
    if problem and not report.failed:
        report.outcome = "failed"
        report.longrepr = problem


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A subprocess that converted the bundled model escapes the in-process guard; on a machine
    # without the model (the case the fast tier is for) it shows up here. (Under pytest-xdist the
    # controller collects nothing, so it can only tell for --fast.)
    controller = session.config.pluginmanager.hasplugin("dsession")
    model_free = session.config.getoption("--fast") or not (controller or _guard.needs_weights)
    if model_free and not _guard.model_was_prepared and bundled_model.is_prepared():
        msg = (f"the bundled model appeared at {bundled_model.bundled_model_dir()} during a run that selected "
               f"no engine/weights test: something outside the marked tests converted it")
        _guard.violations.append(msg)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _guard.violations:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.section("bundled model / vLLM guard", sep="=", red=True)
            for v in dict.fromkeys(_guard.violations):
                tr.line(v, red=True)


# -- model and tokenizer -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model's tokenizer files without its weights (vendored; unpacked once per session)."""
    out = tmp_path_factory.mktemp("tokenizer") / bundled_model.MODEL_DIRNAME
    out.mkdir()
    for f in TOKENIZER_FILES.iterdir():
        if f.name.endswith(".gz"):
            with gzip.open(f, "rb") as src, open(out / f.name.removesuffix(".gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif f.name != "README.md":
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="session")
def model_dir(tokenizer_dir: Path) -> Path:
    """What tests pass as ``Settings(model=...)``: the real bundled model (converted once per machine)
    when the session runs a test marked engine or weights, else the weightless tokenizer directory
    (enough wherever the engine is injected: the runtime only needs a path, and the tokenizer)."""
    if _guard.needs_weights:
        return _guard.real_ensure()
    return tokenizer_dir


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="session")
def builder(tokenizer) -> PromptBuilder:  # type: ignore[no-untyped-def]
    return PromptBuilder(tokenizer)


@pytest.fixture(scope="session")
def think_tokenizer(tokenizer_dir: Path):  # type: ignore[no-untyped-def]
    """The bundled tokenizer made to look like DeepSeek-R1-Distill/RRM: <think> and </think> are
    added (non-special) tokens and the generation prompt opens a think block."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tok.add_tokens(["<think>", "</think>"])
    tok.add_special_tokens({"additional_special_tokens": ["<｜User｜>", "<｜Assistant｜>"]})
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
        "{% elif m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
    )
    return tok


def pandalm_items(limit: int | None = None) -> list[dict]:
    import json

    path = SHARED_DATA / "pandalm" / "testset-v1.json"
    if not path.exists():
        pytest.skip(f"evaluation data not found at {path} (the ../shared/data folder beside the checkout)")
    items = json.loads(path.read_text())
    return items[:limit] if limit else items


@pytest.fixture(scope="session")
def redis_proc():  # type: ignore[no-untyped-def]
    """Our own redis-server (started once; tests may stop and restart it)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required for the cache tests")
    from tests.support.redis_server import RedisProcess

    proc = RedisProcess()
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def redis_prefix(request):  # type: ignore[no-untyped-def]
    """A key prefix of this test's own on the machine's Redis (127.0.0.1:6379), cleaned up after."""
    import uuid

    import redis

    prefix = f"rrm-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis()
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="module")
def service(tokenizer_dir, tokenizer):  # type: ignore[no-untyped-def]
    """A running service (real HTTP) whose scripted judge prefers the longer response."""
    from rrm_server.api.app import build_app
    from rrm_server.settings import Settings
    from tests.support.engines import ScriptedEngine
    from tests.support.server import serve_in_thread

    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(tokenizer_dir), reward_group_size=3, reward_group_wait=1.0, reward_votes=2)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        yield url, engine
