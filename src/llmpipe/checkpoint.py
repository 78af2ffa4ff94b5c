"""Training checkpoints: atomic, keep-last-K, safe to load.

Layout of one checkpoint, `CKPT_DIR/step_00000120/` (written as a temp dir, renamed when whole):
    model.safetensors   weights (float32)
    ema.safetensors     EMA weights, when train.ema > 0
    state.pt            optimizer state, RNG states, sampler state, spike history, counters:
                        only tensors and plain containers, loaded with torch.load(weights_only=True)
    meta.json           step, tokens_seen, fingerprint and its parts (written last inside the dir)

A kill at any moment leaves either the previous checkpoints or the new one complete: never a
half-written one under a `step_*` name. Leftover temp dirs are removed on the next save.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from llmpipe.atomic import atomic_path


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Complete checkpoints (meta.json present), oldest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("step_*") if p.is_dir() and (p / "meta.json").exists())


def save_checkpoint(ckpt_dir: str | Path, step: int, model_state: dict, state: dict[str, Any],
                    meta: dict[str, Any], ema_state: Optional[dict] = None, keep: int = 2) -> Path:
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_dir.glob(".step_*.tmp-*"):  # left by a kill during an earlier save
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpt_dir / f"step_{step:08d}"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        save_file(_cpu(model_state), str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file(_cpu(ema_state), str(tmp / "ema.safetensors"))
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2, sort_keys=True) + "\n")
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """{'meta', 'model', 'ema' (or None), 'state'}; nothing is unpickled beyond plain data."""
    path = Path(path)
    return {
        "meta": json.loads((path / "meta.json").read_text()),
        "model": load_file(str(path / "model.safetensors")),
        "ema": load_file(str(path / "ema.safetensors")) if (path / "ema.safetensors").exists() else None,
        "state": torch.load(path / "state.pt", map_location="cpu", weights_only=True),
    }


def clear(ckpt_dir: str | Path) -> None:
    """Remove every checkpoint (fresh start after a fingerprint mismatch)."""
    d = Path(ckpt_dir)
    for p in d.glob("step_*"):
        shutil.rmtree(p)


def rng_state(device: torch.device) -> dict[str, Any]:
    s: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        s["cuda"] = torch.cuda.get_rng_state(device)
    return s


def set_rng_state(s: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(s["torch"])
    if device.type == "cuda" and "cuda" in s:
        torch.cuda.set_rng_state(s["cuda"], device)
