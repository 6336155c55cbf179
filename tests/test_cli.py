"""The command line: flags > RRM_* environment > defaults; commands and usage."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from pydantic_settings import CliApp

from rrm_server import bundled_model
from rrm_server.cli import main
from rrm_server.settings import Settings


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("RRM_PORT", "9100")
    monkeypatch.setenv("RRM_MAX_VOTES", "5")
    s = CliApp.run(Settings, cli_args=["--max-votes", "7", "--model", "/m", "--enforce-eager", "true"])
    assert (s.port, s.max_votes, s.model, s.enforce_eager) == (9100, 7, "/m", True)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rrm_server", *args], capture_output=True, text=True, timeout=120)


def test_usage_and_unknown_command():
    assert "prepare-model" in run("help").stdout
    bad = run("frobnicate")
    assert bad.returncode == 2 and "unknown command" in bad.stderr
    helped = run("serve", "--help")
    assert helped.returncode == 0 and "--max-votes" in helped.stdout


# `rrm-server prepare-model` in a subprocess converts the machine's model
@pytest.mark.weights
def test_prepare_model_prints_the_converted_directory(model_dir):
    out = run("prepare-model")
    assert out.returncode == 0
    assert out.stdout.strip() == str(model_dir)
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()


def test_tri_state_switches_still_take_a_value():
    # Help shows `--enforce-eager {true,false}`; the flag keeps taking a value (unset: per device).
    s = CliApp.run(Settings, cli_args=["--enforce-eager", "false", "--enable-chunked-prefill", "None",
                                       "--max-model-len", "None", "--no-cache-enabled"])
    assert (s.enforce_eager, s.enable_chunked_prefill, s.max_model_len, s.cache_enabled) == (False, None, None, False)


def test_every_setting_has_a_description():
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not missing, f"settings without a description (they show no help in `serve --help`): {missing}"


def help_of(capsys, *argv: str) -> str:
    """What `rrm-server *argv` prints, in-process; it must exit 0 (argparse's help) or just return."""
    try:
        main(list(argv))
    except SystemExit as exit:
        assert exit.code in (0, None)
    return capsys.readouterr().out


def option_entries(help_text: str) -> dict[str, str]:
    """argparse's `options:` section: the flag column (`--port int`, `--x, --no-x`) -> its help text."""
    section = help_text.split("\noptions:\n", 1)[1]
    entries: dict[str, str] = {}
    flag = ""
    for line in section.splitlines():
        if re.match(r"  -", line):  # a flag, its help on the same line after 2+ spaces or on the next ones
            flag, _, text = line.strip().partition("  ")
            entries[flag] = text.strip()
        elif line.startswith("   ") and flag:
            entries[flag] += " " + line.strip()
    return entries


# A type (`int`) or the choices of a Literal (`{vllm,openai}`); never a union with None (`{str,None}`).
READABLE_METAVAR = re.compile(r"(str|int|float|Path|\{(?!None[,}])[\w.-]+(,(?!None[,}])[\w.-]+)+\})")


def test_serve_help_shows_readable_types_and_help_for_every_flag(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    out = help_of(capsys, "serve", "--help")
    assert out.startswith("usage: rrm-server serve ")
    assert "None}" not in out and "{None" not in out and "NoneType" not in out and "Optional[" not in out
    entries = option_entries(out)
    flags = {f"--{name.replace('_', '-')}" for name in Settings.model_fields}
    shown = {part.split(" ")[0] for column in entries for part in column.split(", ")}
    assert flags <= shown
    for column, text in entries.items():
        if column == "-h, --help":
            continue
        first = column.split(", ")[0]
        if column != f"{first}, --no-{first[2:]}":  # a bool flag (--x, --no-x) takes no value
            flag, _, metavar = column.partition(" ")
            assert READABLE_METAVAR.fullmatch(metavar), f"{flag}: unreadable type {metavar!r}"
        described = re.sub(r"\(default( factory)?: [^)]*\)$", "", text).strip()
        assert described, f"{column}: no help text, only {text!r}"


@pytest.fixture
def no_conversion(monkeypatch, tmp_path):
    """Converting (or downloading) the bundled model fails the test; the cache dir must stay empty."""
    def convert(*_a, **_k):
        raise AssertionError("the bundled model must not be converted")

    monkeypatch.setattr(bundled_model, "ensure_bundled_model", convert)
    monkeypatch.setenv("RRM_MODEL_CACHE_DIR", str(tmp_path))
    yield
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--model-cache-dir", "/nowhere", "--help"]])
def test_prepare_model_help_is_its_own(capsys, no_conversion, argv):
    out = help_of(capsys, "prepare-model", *argv)
    assert out.startswith("usage: rrm-server prepare-model ")
    assert "Convert the bundled judge" in out
    entries = option_entries(out)
    assert {"--model str", "--model-cache-dir Path"} <= set(entries)
    assert "--max-votes" not in out and "--port" not in out  # serve's flags are not what it is about


@pytest.mark.parametrize("argv", [["--help"], ["-h"]])
def test_cache_clear_help_is_its_own(capsys, argv):
    out = help_of(capsys, "cache-clear", *argv)
    assert out.startswith("usage: rrm-server cache-clear ")
    assert "Delete this service's cached votes" in out
    assert {"--cache-url str", "--cache-prefix str"} <= set(option_entries(out))
    assert "--max-votes" not in out


def test_prepare_model_help_exits_0_from_the_command_line():
    out = run("prepare-model", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: rrm-server prepare-model ") and "--model-cache-dir" in out.stdout
