"""The command line: flags > RRM_* environment > defaults; commands and usage."""

from __future__ import annotations

import subprocess
import sys

from pydantic_settings import CliApp

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


def test_prepare_model_prints_the_converted_directory(model_dir):
    out = run("prepare-model")
    assert out.returncode == 0
    assert out.stdout.strip() == str(model_dir)
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
