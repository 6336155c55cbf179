"""Exact cache keys for votes, and the served model's identity. Pure functions, except the
fingerprint, which reads a little of the model's files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

# Bump when the meaning of a stored vote changes (parser, record layout).
KEY_VERSION = "v1"

# Files whose content defines what the judge does, besides its weights.
_DEFINING_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                   "chat_template.jinja", "special_tokens_map.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_SAMPLE = 1 << 20  # bytes read from each end of a weight file


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def model_fingerprint(path: str) -> str:
    """A short identity of the weights and tokenizer at ``path``.

    A Hugging Face snapshot directory is named by its commit; otherwise the defining files are
    hashed whole and each weight file by name, size and its first and last MiB (hashing tens of GB
    at every start would be too slow; a retrained checkpoint differs there). A hub id that is not
    in the local cache is identified by its name alone.
    """
    p = Path(path)
    if not p.is_dir():
        try:
            from huggingface_hub import snapshot_download

            p = Path(snapshot_download(path, local_files_only=True))
        except Exception:
            return "id:" + hashlib.sha256(path.encode()).hexdigest()[:16]
    if p.parent.name == "snapshots" and len(p.name) == 40:
        return "hf:" + p.name
    h = hashlib.sha256()
    for name in _DEFINING_FILES:
        f = p / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    for f in sorted(x for x in p.iterdir() if x.is_file() and x.name.endswith(_WEIGHT_SUFFIXES)):
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with f.open("rb") as fh:
            h.update(fh.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                fh.seek(size - _SAMPLE, os.SEEK_SET)
                h.update(fh.read(_SAMPLE))
    return "dir:" + h.hexdigest()[:32]


def comparison_scope(**parts: Any) -> str:
    """Hash of everything a request fixes for all its votes: model, prompt, sampling."""
    blob = json.dumps([KEY_VERSION, sorted(parts.items())], separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def vote_key(scope: str, query_hash: str, first_hash: str, second_hash: str, seed: int, index: int) -> str:
    """Key of one vote: the scope, the texts in the order shown (position bias), seed and index."""
    blob = f"{scope}|{query_hash}|{first_hash}|{second_hash}|{seed}|{index}"
    return hashlib.sha256(blob.encode()).hexdigest()
