"""Train reproducibility and checkpoint integrity, on the real `train` stage run as a subprocess:
two uninterrupted runs write the same bytes; a damaged checkpoint (flipped byte, truncated file,
overwritten weight, broken meta.json, NaN weights) is reported by path and skipped for the newest
intact one or a fresh start; a final model whose val loss is not finite fails the stage (exit 2)."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmpipe.core.atomic import sha256_file
from test_train import outputs, reference, stage, template, work  # noqa: F401 - fixtures

CKPT = "runs/train/ckpt"


def rehash(ck: Path) -> None:
    """Make meta.json agree with the files again, as a buggy writer would have left it: the
    damage is then invisible to the hashes (the digest rule is the documented one)."""
    meta = json.loads((ck / "meta.json").read_text())
    if "files" in meta:
        meta["files"] = {name: sha256_file(ck / name) for name in meta["files"]}
        body = {k: v for k, v in meta.items() if k != "meta_sha256"}
        meta["meta_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        (ck / "meta.json").write_text(json.dumps(meta))


def edit_weights(ck: Path, name: str, fn) -> None:
    state = load_file(str(ck / "model.safetensors"))
    with torch.no_grad():
        fn(state[name])
    save_file(state, str(ck / "model.safetensors"))


def flip_byte(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


def truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def huge_weight(f: Path) -> None:
    """Overwrite one float32 of the weights with 1e30, in place (the header is untouched)."""
    data = bytearray(f.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]
    data[start + 64:start + 68] = struct.pack("<f", 1e30)
    f.write_bytes(bytes(data))


def copy_of(reference: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "w"
    shutil.copytree(reference, dst)
    return dst


def test_two_uninterrupted_runs_write_byte_identical_outputs(work, reference):
    r = stage(work, "train")
    assert r.returncode == 0, r.stderr
    a, b = outputs(work), outputs(reference)
    assert sorted(a) == sorted(b) and "config.json" in a and "ckpt/step_00000012/state.safetensors" in a
    for path in a:  # model, config, cost, checkpoints, DVCLive files, samples
        assert a[path] == b[path], path
    assert not any("tokens_per_s" in p for p in a)  # the throughput series lives in timing.json
    for root in (work, reference):
        timing = json.loads((root / "runs/train/timing.json").read_text())
        assert timing["seconds"] > 0 and [s for s, _ in timing["tokens_per_s_log"]] == [2, 4, 6, 8, 10, 12]


@pytest.mark.parametrize("damage", [flip_byte, truncate, huge_weight], ids=["flipped-byte", "truncated", "huge-weight"])
def test_damaged_newest_checkpoint_is_skipped_for_the_older_intact_one(reference, tmp_path, damage):
    w = copy_of(reference, tmp_path)
    damage(w / CKPT / "step_00000012/model.safetensors")
    r = stage(w, "train")
    assert r.returncode == 0, r.stderr
    assert f"checkpoint {CKPT}/step_00000012: model.safetensors: sha256" in r.stderr
    assert "(changed or truncated); skipped" in r.stderr and "Traceback" not in r.stderr
    assert "resumed from step_00000009" in r.stderr
    assert outputs(w) == outputs(reference)  # the damaged checkpoint was rewritten by the rerun


def test_no_intact_checkpoint_starts_fresh_naming_each_damaged_one(reference, tmp_path):
    w = copy_of(reference, tmp_path)
    (w / CKPT / "step_00000009/meta.json").unlink()
    meta = w / CKPT / "step_00000012/meta.json"
    text = meta.read_text()
    i = text.index('"fingerprint": "') + len('"fingerprint": "')
    meta.write_text(text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:])  # still valid JSON
    r = stage(w, "train")
    assert r.returncode == 0, r.stderr
    assert f"{CKPT}/step_00000012: meta.json does not match its own sha256" in r.stderr
    assert f"{CKPT}/step_00000009: meta.json missing" in r.stderr
    assert (f"starting fresh: no intact checkpoint in {CKPT} (damaged: step_00000012, step_00000009)"
            in r.stderr and "overfit check passed" in r.stderr and "Traceback" not in r.stderr)
    assert outputs(w) == outputs(reference)


def test_non_finite_weights_in_a_checkpoint_are_never_resumed(reference, tmp_path):
    w = copy_of(reference, tmp_path)
    ck = w / CKPT / "step_00000012"
    edit_weights(ck, "model.layers.1.self_attn.q_proj.weight", lambda t: t.view(-1)[0].fill_(float("nan")))
    rehash(ck)
    r = stage(w, "train")
    assert r.returncode == 0, r.stderr
    assert (f"{CKPT}/step_00000012: non-finite weights (NaN or inf) in model.layers.1.self_attn.q_proj.weight;"
            " skipped" in r.stderr and "resumed from step_00000009" in r.stderr)
    assert outputs(w) == outputs(reference)


def test_final_model_with_a_non_finite_val_loss_fails_train_and_writes_no_model(reference, tmp_path):
    w = copy_of(reference, tmp_path)
    ck = w / CKPT / "step_00000012"
    edit_weights(ck, "model.norm.weight", lambda t: t.fill_(3e38))  # finite, but the logits overflow
    rehash(ck)
    for name in ("model.safetensors", "config.json"):
        (w / "runs/train" / name).unlink()
    r = stage(w, "train")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("train: error: the final model (weights at step 12) gives a non-finite val loss")
    assert "no model written" in last and f"delete {CKPT} to start fresh" in last
    assert not (w / "runs/train/model.safetensors").exists() and not (w / "runs/train/config.json").exists()
