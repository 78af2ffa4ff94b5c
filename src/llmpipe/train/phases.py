"""Training in phases: where each phase's files live and how a later phase starts from the one
before it (README "Phases", docs/training.md "Phases").

The base phase is the plain `mix`, `train`, `eval` stages (`mix.*`, `train.*`); each entry of
`phases` (file order) adds `mix_phase@NAME`, `train_phase@NAME`, `eval_phase@NAME`, whose
`train` continues the run of the phase named by its `after` key:

    phase   mix               run dir      eval metrics
    train   data/mix          runs/train   metrics/eval.json
    NAME    data/phases/NAME  runs/NAME    metrics/phases/NAME.json

Each eval writes `gate.json` (its bits per byte) and `promotion.json` into its run directory;
the next phase's eval gates against `runs/AFTER/gate.json` (a declared dependency).

A later phase reads from the previous run directory only what it records: `config.json`
(`train.final_lr`, `train.global_step`, `train.cumulative_tokens`), `model.safetensors` (the
start weights), its last checkpoint (AdamW state, `init: previous`) and `promotion.json`, which
that phase's eval writes only when its gate passed: no promotion, no next phase.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpipe.core.atomic import sha256_file
from llmpipe.core.errors import UserError
from llmpipe.train.config import PhaseParams, TrainParams
from llmpipe.train.optim import lr_at

BASE = "train"  # the base phase's name (its stages are mix, train, eval)
PROMOTION = "promotion.json"
GATE = "gate.json"  # the promoted model's bits per byte: what the next phase's eval gates against
_SCHEDULE = {"constant": "constant", "decay": "wsd", "cosine": "cosine"}


def run_dir(name: str) -> Path:
    return Path("runs") / name


def mix_dir(name: str) -> Path:
    return Path("data/mix") if name == BASE else Path("data/phases") / name


@dataclass(frozen=True)
class PhaseStart:
    """What a later phase takes from the run it continues (read from that run's files)."""

    name: str
    after: str
    init_dir: Path
    init: str               # previous | weights
    start_lr: float
    step_offset: int        # global step at the phase's start (DVCLive's x axis)
    prev_steps: int         # the previous phase's own steps (its last checkpoint's step)
    tokens_before: int      # training tokens counted in every phase before this one

    def identity(self) -> dict[str, Any]:
        """Part of the resume fingerprint: a changed earlier phase restarts this one."""
        return {"after": self.after, "init": self.init, "step_offset": self.step_offset,
                "tokens_before": self.tokens_before,
                "model_sha256": sha256_file(self.init_dir / "model.safetensors")}


def previous_run(run: Path, base_tp: TrainParams) -> dict[str, Any]:
    """{final_lr, global_step, cumulative_tokens, steps} of a finished run from its config.json."""
    path = run / "config.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; the phase it continues has not trained (run `dvc repro`)")
    t = json.loads(path.read_text(encoding="utf-8")).get("train", {})
    steps = int(t.get("steps", 0))
    if "final_lr" in t:
        return {"final_lr": float(t["final_lr"]), "global_step": int(t["global_step"]),
                "cumulative_tokens": int(t["cumulative_tokens"]), "steps": steps}
    # a base run from before phases existed: its LR follows from train.* (no offset, no phase)
    total = int(t.get("total_steps", steps))
    return {"final_lr": lr_at(max(steps - 1, 0), total, base_tp), "global_step": steps,
            "cumulative_tokens": int(t.get("tokens_seen", 0)), "steps": steps}


def phase_train_params(base: TrainParams, ph: PhaseParams, start_lr: float) -> TrainParams:
    """`train.*` with the phase's keys: its tokens, batch, start LR and schedule, and `sft`; no
    warmup and no overfit pre-flight (the model already trained)."""
    t = ph.train
    return dataclasses.replace(
        base, tokens=t.tokens, lr=start_lr, warmup=0, schedule=_SCHEDULE[t.schedule],
        decay_fraction=t.decay_fraction if t.schedule == "decay" else base.decay_fraction,
        min_lr_ratio=base.min_lr_ratio if t.min_lr_ratio is None else t.min_lr_ratio,
        batch_tokens=t.batch_tokens or base.batch_tokens, average_last=t.average_last or base.average_last,
        sft=base.sft if t.sft is None else t.sft,
        overfit_check=False)


def resolve(params, name: str) -> tuple[TrainParams, PhaseStart]:
    """The TrainParams and start of phase `name` (a key of params.phases)."""
    if name not in params.phases:
        raise UserError(f"--phase {name!r} is not in params.yaml phases ({', '.join(params.phases) or 'none'})")
    ph = params.phases[name]
    prev = previous_run(run_dir(ph.after), params.train)
    start_lr = ph.train.lr if ph.train.lr is not None else prev["final_lr"]
    start = PhaseStart(name=name, after=ph.after, init_dir=run_dir(ph.after), init=ph.train.init,
                       start_lr=start_lr, step_offset=prev["global_step"], prev_steps=prev["steps"],
                       tokens_before=prev["cumulative_tokens"])
    return phase_train_params(params.train, ph, start_lr), start


def promotion_record(run: Path) -> dict[str, Any]:
    """promotion.json: the model that passed its phase's gate. Only what identifies the model, so
    an eval-only change (prompts, max_tokens) rewrites the same bytes and retrains nothing."""
    return {"promoted": True, "model_sha256": sha256_file(run / "model.safetensors")}


def gate_record(metrics: dict[str, Any], metrics_path: str | Path) -> dict[str, Any]:
    """gate.json: the figure the next phase's regression gate compares with (`bits_per_byte`, as
    in an `eval.baseline` file), in the run directory, so the next `eval_phase` declares it as a
    dependency under one path whatever phase it continues (metrics/eval.json or
    metrics/phases/NAME.json would need two)."""
    return {"bits_per_byte": metrics["bits_per_byte"], "metrics": str(metrics_path)}


def require_promotion(run: Path) -> None:
    """A later phase starts only from a model its eval promoted."""
    path = run / PROMOTION
    rec = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if rec.get("model_sha256") != sha256_file(run / "model.safetensors"):
        raise UserError(f"{path}: {'missing' if not rec else 'names another model'}: the phase's eval has not "
                        f"promoted {run / 'model.safetensors'} (its gate failed, or it has not run); run "
                        "`dvc repro` and read its eval's regression gate line")
