"""Training checkpoints: atomic, hash-verified, keep-last-K; nothing is unpickled.

Layout of one checkpoint, `CKPT_DIR/step_00000120/` (written as a temp dir, renamed when whole):
    model.safetensors   weights (float32)
    ema.safetensors     EMA weights, when train.ema > 0
    state.safetensors   optimizer tensors (`optimizer.{param index}.{name}`), RNG states (`rng.{name}`)
    state.json          optimizer param groups, sampler, counters, spike history: plain JSON
    meta.json           step, tokens_seen, fingerprint and its parts, the world size and parallel
                        mode that wrote it, `files` (the sha256 of every other file) and
                        `meta_sha256` (of meta.json's other keys); written last

Tensors are always full (an FSDP run gathers its shards first, llmpipe.train.parallel), so a
checkpoint does not depend on how many processes wrote it or how they split the model.

Every byte of a checkpoint is a function of the training state: no clock, no random ids, so two
runs with the same inputs write identical checkpoints (wall-clock spend lives in the uncached
`timing.json` beside them, see `read_spend` / `write_timing`).

`verify` checks a checkpoint before anything is loaded from it: meta.json parses and matches its
own hash, names the right step, and every listed file is there with its recorded sha256. A flipped
byte, a truncated file or a missing meta.json raises `CheckpointDamaged` naming the path and what
is wrong; the trainer then skips to the next older checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llmpipe.core.atomic import atomic_path, remove_stale_temps, sha256_file, write_json, write_text

META = "meta.json"
_STEP = re.compile(r"step_(\d{8,})")


class CheckpointDamaged(Exception):
    """A checkpoint that cannot be trusted; str() is `PATH: what is wrong`."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


# train.* keys that change the weights' trajectory (in the fingerprint); the rest (eval, logging,
# checkpoint cadence, samples, max_steps) may change between a kill and a resume.
TRAJECTORY_KEYS = ("tokens", "lr", "batch_tokens", "micro_batch", "seed", "warmup", "schedule",
                   "decay_fraction", "min_lr_ratio", "weight_decay", "grad_clip", "betas", "eps",
                   "precision", "compile", "ema", "spike_sigma", "spike_window")
OPT_IN_KEYS = ("sft", "doc_mask")  # in the fingerprint only when on: runs without them resume as before


def data_identity(data_meta: dict) -> dict:
    """What the weights depend on: the train token files themselves, not the mix's check params
    (a `mix.tolerance` change rewrites data_meta.json but must not restart training)."""
    files = data_meta.get("splits", {}).get("train", {}).get("files")
    if not files:
        return data_meta
    return {"dtype": data_meta.get("dtype"), "vocab_size": data_meta.get("vocab_size"),
            "train_sha256": {k: f.get("sha256") for k, f in sorted(files.items())}}


def fingerprint(data_meta: dict, cfg, tp, precision: str, device_type: str,
                init: Optional[dict] = None) -> tuple[str, dict]:
    """Resume only when everything that shapes the weights' trajectory is the same (`cfg` a
    ModelConfig, `tp` TrainParams); the resolved precision and device type count
    (`precision: auto` is fp32 on CPU but bf16 on CUDA). The world size and `train.parallel` do
    not: the global batch is the same at any world size and a checkpoint holds full tensors, so
    a run resumes on more or fewer processes, or in the other mode (bitwise only on the same). With `train.on_new_data: continue` the
    data part is only what the weights must agree with (token dtype, vocab, tokenizer), so a run
    resumes on a grown mix (README "Adding data while a model trains"). `init`: what a later
    phase starts from (llmpipe.train.phases.PhaseStart.identity): a retrained earlier phase
    restarts it."""
    ident_of = data_identity(data_meta)
    if getattr(tp, "on_new_data", "restart") == "continue":
        ident_of = {"dtype": data_meta.get("dtype"), "vocab_size": data_meta.get("vocab_size"),
                    "tokenizer_fingerprint": data_meta.get("tokenizer_fingerprint")}
    ident = json.dumps(ident_of, sort_keys=True).encode()
    parts = {"data": hashlib.sha256(ident).hexdigest(),
             "model": cfg.to_dict(), "train": {k: getattr(tp, k) for k in TRAJECTORY_KEYS}
             | {k: True for k in OPT_IN_KEYS if getattr(tp, k, False)},
             "precision": precision, "device_type": device_type}
    if init is not None:  # only for later phases: the base run's fingerprint is unchanged
        parts["init"] = init
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest(), parts


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def step_of(path: Path) -> Optional[int]:
    m = _STEP.fullmatch(path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Every `step_N` directory, oldest first, intact or not (`verify` tells)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.is_dir() and step_of(p) is not None), key=step_of)


def _digest(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _split_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, plain JSON) of a trainer state {'optimizer': state_dict, 'rng': {name: tensor}, ...}."""
    plain = {k: v for k, v in state.items() if k not in ("optimizer", "rng")}
    tensors = {f"rng.{k}": v for k, v in state.get("rng", {}).items()}
    if "optimizer" in state:
        opt = state["optimizer"]
        per_param: dict[str, dict] = {}
        for idx, entries in opt["state"].items():
            per_param[str(idx)] = {}
            for name, v in entries.items():
                if torch.is_tensor(v):
                    tensors[f"optimizer.{idx}.{name}"] = v
                else:
                    per_param[str(idx)][name] = v
        plain["optimizer"] = {"param_groups": opt["param_groups"], "state": per_param}
    return _cpu(tensors), plain


def _join_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state = {k: v for k, v in plain.items() if k != "optimizer"}
    state["rng"] = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    if "optimizer" in plain:
        per_param = {int(i): dict(v) for i, v in plain["optimizer"]["state"].items()}
        for key, v in tensors.items():
            if key.startswith("optimizer."):
                _, idx, name = key.split(".", 2)
                per_param.setdefault(int(idx), {})[name] = v
        state["optimizer"] = {"state": per_param, "param_groups": plain["optimizer"]["param_groups"]}
    return state


def save_checkpoint(ckpt_dir: str | Path, step: int, model_state: dict, state: dict[str, Any],
                    meta: dict[str, Any], ema_state: Optional[dict] = None, keep: int = 2) -> Path:
    """Write `step_N` atomically; keep the newest `keep`. Checkpoints newer than `step` are left
    from an abandoned trajectory (damaged ones a resume skipped, or the future of a fresh start)
    and are removed."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_dir.glob(".step_*.tmp-*"):  # a kill during an earlier save, of any step
        remove_stale_temps(ckpt_dir / stale.name[1:].rsplit(".tmp-", 1)[0])  # dead runs' only
    final = ckpt_dir / f"step_{step:08d}"
    tensors, plain = _split_state(state)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        save_file(_cpu(model_state), str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file(_cpu(ema_state), str(tmp / "ema.safetensors"))
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(plain, indent=2, sort_keys=True, allow_nan=False) + "\n")
        record = {**meta, "step": step, "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}}
        record["meta_sha256"] = _digest(record)
        (tmp / META).write_text(json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n")
    found = list_checkpoints(ckpt_dir)
    for old in [p for p in found if step_of(p) > step] + [p for p in found if step_of(p) <= step][:-keep]:
        shutil.rmtree(old)
    return final


def verify(path: str | Path) -> dict[str, Any]:
    """meta.json of an intact checkpoint; CheckpointDamaged otherwise (see module doc)."""
    path = Path(path)
    if not (path / META).is_file():
        raise CheckpointDamaged(path, f"{META} missing")
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointDamaged(path, f"{META} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict) or "meta_sha256" not in meta:
        raise CheckpointDamaged(path, f"{META} records no file hashes (an older llmpipe's checkpoint "
                                      "cannot be verified)")
    if _digest(meta) != meta["meta_sha256"]:
        raise CheckpointDamaged(path, f"{META} does not match its own sha256 (edited or damaged)")
    if meta.get("step") != step_of(path):
        raise CheckpointDamaged(path, f"{META} says step {meta.get('step')}, the directory name another")
    files = meta["files"]
    for name in ("model.safetensors", "state.safetensors", "state.json"):
        if name not in files:
            raise CheckpointDamaged(path, f"{META} does not list {name}")
    for name, want in sorted(files.items()):
        f = path / name
        if Path(name).name != name or name == META:
            raise CheckpointDamaged(path, f"{META} lists {name!r}, not a file of the checkpoint")
        if not f.is_file():
            raise CheckpointDamaged(path, f"{name} missing")
        got = sha256_file(f)
        if got != want:
            raise CheckpointDamaged(path, f"{name}: sha256 {got[:12]}... differs from {want[:12]}... in "
                                          f"{META} (changed or truncated)")
    return meta


def load_checkpoint(path: str | Path, meta: Optional[dict] = None) -> dict[str, Any]:
    """{'meta', 'model', 'ema' (or None), 'state'} of a verified checkpoint (`verify` runs unless
    its result is passed); CheckpointDamaged when it is not intact."""
    path = Path(path)
    meta = verify(path) if meta is None else meta
    try:
        state = _join_state(load_file(str(path / "state.safetensors")),
                            json.loads((path / "state.json").read_text(encoding="utf-8")))
        return {"meta": meta, "model": load_file(str(path / "model.safetensors")),
                "ema": load_file(str(path / "ema.safetensors")) if "ema.safetensors" in meta["files"] else None,
                "state": state}
    except (SafetensorError, OSError, ValueError, KeyError) as e:  # hashes matched, so a writer bug
        raise CheckpointDamaged(path, f"unreadable: {e}") from None


def clear(ckpt_dir: str | Path) -> None:
    """Remove every checkpoint (fresh start after a fingerprint mismatch)."""
    for p in list_checkpoints(ckpt_dir):
        shutil.rmtree(p)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    s = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        s["cuda"] = torch.cuda.get_rng_state(device)
    return s


def set_rng_state(s: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(s["torch"])
    if device.type == "cuda" and "cuda" in s:
        torch.cuda.set_rng_state(s["cuda"], device)


# --------------------------------------------------------------------------- resume side files

def read_spend(timing_path: Path, fingerprint: str, step: int) -> tuple[dict[int, float], list]:
    """({checkpoint step: seconds spent when it was written}, [[step, tokens/s], ...]) up to `step`
    from the run's timing.json; ({}, []) when the file is missing or belongs to another run."""
    try:
        t = json.loads(timing_path.read_text(encoding="utf-8"))
        if t.get("fingerprint") != fingerprint:
            return {}, []
        spend = {int(s): float(v) for s, v in t["checkpoint_seconds"] if int(s) <= step}
        return spend, [r for r in t.get("tokens_per_s_log", []) if r[0] <= step]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, []


def write_timing(timing_path: Path, fingerprint: str, ckpt_dir: Path, checkpoint_seconds: dict[int, float],
                 summary: dict[str, Any]) -> None:
    """timing.json: wall-clock facts of the run (uncached, never part of a reproducible output).
    `checkpoint_seconds` ([step, seconds] pairs: lists stay out of `dvc metrics show`) is pruned
    to the checkpoints that exist and the newest step (written just before its checkpoint)."""
    kept = {step_of(p) for p in list_checkpoints(ckpt_dir)} | {max(checkpoint_seconds, default=None)}
    write_json(timing_path, {"fingerprint": fingerprint, **summary, "checkpoint_seconds": [
        [s, v] for s, v in sorted(checkpoint_seconds.items()) if s in kept]})


def truncate_after(live_dir: Path, samples: Path, step: int) -> None:
    """Drop DVCLive rows and sample blocks logged after `step` (between the checkpoint and a kill)."""
    for tsv in (live_dir / "plots").rglob("*.tsv") if live_dir.exists() else []:
        lines = tsv.read_text().splitlines(keepends=True)
        col = lines[0].rstrip("\n").split("\t").index("step")
        write_text(tsv, "".join([lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[col]) <= step]))
    if samples.exists():
        blocks = samples.read_text().split("## step ")
        keep = [b for b in blocks[1:] if int(b.split("\n", 1)[0]) <= step]
        write_text(samples, blocks[0] + "".join("## step " + b for b in keep))


def seed_live(src: Path, dst: Path, step: int) -> None:
    """A later phase's DVCLive directory starts as a copy of the previous phase's curves up to
    global `step` (its plots and metrics.json), so each phase's files hold the whole curve."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    if (src / "plots").is_dir():
        shutil.copytree(src / "plots", dst / "plots")
    if (src / "metrics.json").is_file():
        shutil.copyfile(src / "metrics.json", dst / "metrics.json")
    truncate_after(dst, dst / "samples.none", step)
