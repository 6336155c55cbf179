"""Cache keys are exact: every input that changes a vote changes its key."""

from __future__ import annotations

from rrm_server.cache.keys import comparison_scope, model_fingerprint, text_hash, vote_key


def test_every_part_of_a_vote_is_in_its_key():
    scope = comparison_scope(model="m", temperature=0.6, max_tokens=128)
    q, a, b = text_hash("q"), text_hash("a"), text_hash("b")
    base = vote_key(scope, q, a, b, 1, 0)
    assert base == vote_key(scope, q, a, b, 1, 0)
    variants = [
        vote_key(scope, q, b, a, 1, 0),  # order shown matters (position bias)
        vote_key(scope, text_hash("q2"), a, b, 1, 0),
        vote_key(scope, q, a, text_hash("b "), 1, 0),  # near-identical text is another text
        vote_key(scope, q, a, b, 2, 0),
        vote_key(scope, q, a, b, 1, 1),
        vote_key(comparison_scope(model="m", temperature=0.7, max_tokens=128), q, a, b, 1, 0),
        vote_key(comparison_scope(model="m", temperature=0.6, max_tokens=256), q, a, b, 1, 0),
        vote_key(comparison_scope(model="m2", temperature=0.6, max_tokens=128), q, a, b, 1, 0),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_scope_is_independent_of_argument_order():
    assert comparison_scope(a=1, b=2) == comparison_scope(b=2, a=1)


def test_fingerprint_follows_the_files(tmp_path, model_dir):
    fp = model_fingerprint(str(model_dir))
    assert fp.startswith("dir:") and fp == model_fingerprint(str(model_dir))
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text('{"a": 1}')
    (d / "model.safetensors").write_bytes(b"x" * 100)
    one = model_fingerprint(str(d))
    (d / "model.safetensors").write_bytes(b"y" * 100)
    two = model_fingerprint(str(d))
    (d / "config.json").write_text('{"a": 2}')
    three = model_fingerprint(str(d))
    assert len({one, two, three}) == 3
    snap = tmp_path / "models--org--m" / "snapshots" / ("f" * 40)
    snap.mkdir(parents=True)
    assert model_fingerprint(str(snap)) == "hf:" + "f" * 40
    assert model_fingerprint("org/not-downloaded").startswith("id:")
