"""The training loop: cost-gated, checkpointed, resumable; one process, DDP or FSDP2
(`train.parallel`, llmpipe.train.parallel) under `accelerate launch` / `torchrun`.

Order of a run (`train()`):
 1. config: model shape from `model.*` + the tokenizer's vocab; batch plan from `train.*`
    (sequences per step = batch_tokens / context = world x accumulation x micro_batch, exact).
 2. cost gate (llmpipe.train.cost) before anything is written.
 3. resume: the newest intact checkpoint (hashes verified, weights finite; damaged ones are
    reported by path and skipped) is chosen when its fingerprint (data + model + trajectory
    params) matches; a mismatch starts fresh and says which part changed. The world size and
    parallel mode are not in it: a checkpoint holds full tensors and resumes on any.
 4. overfit sanity check on one micro-batch (fresh runs, switchable), on a copy of the model.
 5. wrap (DDP or FSDP2 shards), build AdamW and the EMA over what runs, load the checkpoint.
 6. steps: accumulate micro-batches (gradients synced only on the last), all-reduce loss and token
    counts, stop on a non-finite loss, skip spikes, clip, AdamW, EMA; log to DVCLive, eval on
    fixed val batches, greedy samples, checkpoint every `ckpt_every`, stop at a checkpoint when
    the measured spend reaches `cost.max_cost`.
 7. final checks (finite weights, finite val loss on the fixed val batches), then the weights +
    config.json (llmpipe.train.model.save_model), cost.json and timing.json.

A later phase (`phases.NAME`, llmpipe.train.phases) is the same loop on its own mix and run
directory, started from the previous phase's final weights (and AdamW state with `init:
previous`): no warmup, no overfit check, DVCLive's step continues the previous phase's global
step (its curves are copied in first, so each phase's files hold one continuous curve).

Token accounting: every micro-batch's input tokens, sequences, padding tokens (pad id; 0 when
windows are cut from packed documents) and EOS tokens are counted, summed over processes and
kept in checkpoints, so cost.json's counts are exact across resumes; `cumulative_tokens` adds
the counts of every earlier phase.

Every output except timing.json is a function of the inputs and params: no clock reading or
throughput enters the model, config.json, cost.json, the checkpoints or the DVCLive files.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from llmpipe.train import checkpoint as ckpt
from llmpipe.train import parallel
from llmpipe.core.atomic import write_json
from llmpipe.data.tokenizer import read_info
from llmpipe.train.model import model_config
from llmpipe.train.cost import devices, gate, signature, spent
from llmpipe.train.device import autocast, configure_matmul, resolve_device, resolve_precision
from llmpipe.train.loader import OVERFIT_STREAM, VAL_STREAM, TokenWindows, read_data_meta
from llmpipe.core.log import get_logger, n
from llmpipe.train.sampling import greedy, nonfinite
from llmpipe.train.model import Transformer, doc_segments, flops_per_token, param_counts, save_model
from llmpipe.train.checks import evaluate, is_spike, overfit_check
from llmpipe.train.optim import EMA, lr_at, make_optimizer
from llmpipe.params import CostParams, ModelParams, PlanParams, TrainParams
from llmpipe.train.phases import PhaseStart
from llmpipe.data.tokenizer import SPECIAL_IDS

log = get_logger("train")

class TrainingStopped(UserError, RuntimeError):
    """The run cannot go on (non-finite loss or weights, a broken final model); the last good
    checkpoint is kept and no model is written."""


@dataclass
class Paths:
    data: Path = Path("data/mix")
    tokenizer: Path = Path("artifacts/tokenizer")
    throughput: Path = Path("runs/throughput.json")
    out: Path = Path("runs/train")

    @property
    def ckpt(self) -> Path:
        return self.out / "ckpt"

    @property
    def live(self) -> Path:
        return self.out / "live"

    @property
    def timing(self) -> Path:
        return self.out / "timing.json"


def batch_plan(tp: TrainParams, context: int, world: int) -> dict[str, int]:
    """Exact split of the global batch; ValueError naming the params when it does not divide."""
    unit = tp.micro_batch * context * world
    if tp.batch_tokens % unit:
        raise UserError(f"train.batch_tokens ({tp.batch_tokens}) must be a multiple of train.micro_batch "
                         f"x model.context x processes = {tp.micro_batch} x {context} x {world} = {unit}")
    return {"seqs_per_step": tp.batch_tokens // context, "accum": tp.batch_tokens // unit,
            "world": world, "total_steps": math.ceil(tp.tokens / tp.batch_tokens)}


class Trainer:
    """State of one training run; `run()` is the loop (see module docstring)."""

    def __init__(self, paths: Paths, mp: ModelParams, tp: TrainParams, cp: CostParams,
                 plan: Optional[PlanParams] = None, phase: Optional[PhaseStart] = None) -> None:
        from accelerate import Accelerator

        self.t_start = time.perf_counter()  # measured spend includes setup time
        self.paths, self.tp, self.cp = paths, tp, cp
        self.plan_params, self.phase = plan or PlanParams(), phase
        self.offset = phase.step_offset if phase else 0  # global step before this phase
        self.device = resolve_device(tp.device)
        configure_matmul(self.device)  # the same kernels bench measured
        handlers = []
        if tp.dist_timeout_s is not None:  # README "Troubleshooting NCCL"
            import datetime

            from accelerate import InitProcessGroupKwargs

            handlers.append(InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=tp.dist_timeout_s)))
        self.acc = Accelerator(cpu=self.device.type == "cpu", kwargs_handlers=handlers)
        self.main = self.acc.is_main_process
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        if not self.main:  # one copy of every log line
            logging.getLogger("llmpipe").setLevel(logging.WARNING)
        self.devices = devices(cp, self.world)  # cost gate and spend price the real world size
        self.mode = parallel.mode(tp.parallel, self.world)
        self.precision = resolve_precision(tp.precision, self.device)
        tok = read_info(paths.tokenizer)
        self.meta = read_data_meta(paths.data)
        if self.meta["vocab_size"] != tok["vocab_size"] or self.meta.get("tokenizer_fingerprint") not in (
                None, tok.get("fingerprint")):
            raise UserError(f"{paths.data}/data_meta.json was made with another tokenizer than "
                             f"{paths.tokenizer}; rerun `dvc repro mix`")
        self.cfg = model_config(mp, tok["vocab_size"])
        self.plan = batch_plan(tp, self.cfg.context, self.world)
        self.fp, self.fp_parts = ckpt.fingerprint(self.meta, self.cfg, tp, self.precision, self.device.type,
                                                  init=phase.identity() if phase else None)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        tp, cfg = self.tp, self.cfg
        pc = param_counts(cfg)
        log.info("model %s: %s params (%s non-embedding), %s FLOPs/token", cfg.to_dict(), n(pc["total"]),
                 n(pc["non_embedding"]), n(flops_per_token(cfg)))
        log.info("batch: %s tokens/step = %d procs (%s) x %d accum x %d seqs x %d context; %s steps for "
                 "train.tokens %s (%s tokens)", n(tp.batch_tokens), self.world, self.mode, self.plan["accum"],
                 tp.micro_batch, cfg.context, n(self.plan["total_steps"]), n(tp.tokens),
                 n(self.plan["total_steps"] * tp.batch_tokens))
        # Price what will run: whole batches (train.tokens rounds up), at most train.max_steps.
        steps = min(self.plan["total_steps"], tp.max_steps or self.plan["total_steps"])
        sig = signature(cfg, tp.micro_batch, self.precision, tp.compile, self.device, self.mode, self.world,
                        tp.doc_mask)
        self.projection = gate(steps * tp.batch_tokens, self.paths.throughput, sig, self.cp, self.devices)
        from llmpipe.train.planner import phase_gate

        self.plan_report = phase_gate(cfg, self.plan_params, self.projection,
                                      self.phase.tokens_before if self.phase else 0,
                                      self.phase.name if self.phase else "train")
        torch.manual_seed(tp.seed)
        self.model = Transformer(cfg).to(self.device)  # the same init on every process
        masks = self.loss_masks()
        self.windows = TokenWindows(self.paths.data / "train.bin", self.meta["dtype"], cfg.context,
                                    self.plan["seqs_per_step"], tp.seed, mask=masks["train"])
        val = TokenWindows(self.paths.data / "val.bin", self.meta["dtype"], cfg.context, 1, tp.seed,
                           mask=masks["val"])
        vx, vy = val.fixed(VAL_STREAM, tp.eval_batches * tp.micro_batch)
        self.val_batches = [(x, y, self.segments(x)) for x, y in zip(vx.split(tp.micro_batch), vy.split(tp.micro_batch))]
        self.step, self.tokens_seen, self.spikes, self.hist, self.seconds = 0, 0, 0, [], 0.0
        self.counts = {"sequences": 0, "padding_tokens": 0, "eos_tokens": 0}  # besides tokens_seen
        self.loss_tokens_seen = 0  # targets the loss counted (train.sft: the masked-in ones)
        self.ckpt_seconds: dict[int, float] = {}  # spend when each checkpoint was written
        self.tps_log: list[list[float]] = []  # [step, tokens/s] at each log step (timing.json)
        found = self.resume()
        resumed = found is not None
        if self.main:
            self.paths.out.mkdir(parents=True, exist_ok=True)
            if self.projection is not None:
                write_json(self.paths.out / "cost.json", {"projection": self.projection, "plan": self.plan_report})
        if not resumed and self.phase is not None:  # the previous phase's final weights
            from safetensors.torch import load_file

            self.model.load_state_dict(load_file(str(self.phase.init_dir / "model.safetensors")))
            log.info("phase %s: starts from %s (init: %s) at global step %s, %s tokens before it, lr %.3e",
                     self.phase.name, self.phase.init_dir / "model.safetensors", self.phase.init,
                     n(self.offset), n(self.phase.tokens_before), tp.lr)
        if not resumed and tp.overfit_check:
            x, y = self.windows.fixed(OVERFIT_STREAM, tp.micro_batch, masked=False)  # a check of the model
            first, last = overfit_check(self.model, x.to(self.device), y.to(self.device), tp.lr,
                                        tp.overfit_steps, tp.overfit_max_ratio, self.device, self.precision,
                                        min_drop=tp.overfit_min_drop)
            log.info("overfit check passed: loss %.3f -> %.3f in %d steps", first, last, tp.overfit_steps)
        if self.mode == "fsdp":  # in place: parameters become DTensor shards, forward all-gathers
            self.fwd = parallel.shard(self.model, self.device)
        else:
            self.fwd = self.acc.prepare_model(self.model)  # DDP wrapper (the module itself at world 1)
        # AdamW and the EMA over the parameters that run (FSDP: shards), then the checkpoint
        self.opt = make_optimizer(self.model, tp, self.device)
        self.ema = EMA(self.model, tp.ema) if tp.ema > 0 else None
        if found is not None:
            self.load(*found)
        elif self.phase is not None and self.phase.init == "previous":
            self.load_previous_optimizer()
        if tp.compile:
            self.fwd = torch.compile(self.fwd)
            self.compile_step()
        self.live = self.open_live(resumed) if self.main else None
        if self.main and not resumed and (self.paths.out / "samples.txt").exists():
            (self.paths.out / "samples.txt").unlink()

    def compile_step(self) -> None:
        """train.compile: compile the step now, as part of setup, so the loop's tokens/s and the
        measured spend per step are the compiled step's (torch.compile compiles forward and
        backward at the first call, ~45 s on CPU at the tiny shape). One forward and backward of
        the first micro-batch of the next step; the gradients are dropped, so weights, AdamW, the
        sampler and the RNG are as before it (eval and samples run the model uncompiled)."""
        t = time.perf_counter()
        x, y = self.windows.micro_batch(self.step, 0, self.rank, self.world, self.tp.micro_batch)
        with autocast(self.device, self.precision):
            seg = self.segments(x)
            _, loss = self.fwd(x.to(self.device), targets=y.to(self.device), return_logits=False,
                               segments=None if seg is None else seg.to(self.device),
                               reduction="sum" if self.tp.sft else "mean")
            loss.backward()
        self.opt.zero_grad(set_to_none=True)
        log.info("torch.compile: forward and backward compiled in %.1f s (setup, not the loop)",
                 time.perf_counter() - t)

    def open_live(self, resumed: bool):
        """DVCLive logger. dvcyaml=False: DVCLive must not rewrite the project's dvc.yaml;
        resume=True keeps the curve, whose step is then set from the checkpoint. A later phase
        starts from a copy of the previous phase's curves (one curve over the global step)."""
        from dvclive import Live

        if self.phase is not None and not resumed:
            ckpt.seed_live(self.phase.init_dir / "live", self.paths.live, self.offset)
        return Live(dir=str(self.paths.live), dvcyaml=False, resume=resumed or self.phase is not None,
                    report=None, save_dvc_exp=False)

    def load_previous_optimizer(self) -> None:
        """`init: previous`: AdamW's moments and step counts from the previous phase's checkpoint
        of its final step (its LR and schedule are this phase's)."""
        prev = self.phase.init_dir / "ckpt"
        found = ckpt.list_checkpoints(prev)
        want = self.phase.prev_steps
        if not found or ckpt.step_of(found[-1]) != want:
            raise UserError(f"{prev}: no checkpoint of the previous phase's final step {want} (init: previous "
                            "needs its AdamW state); rerun it (`dvc repro -f` its train stage) or set init: weights")
        c = ckpt.load_checkpoint(found[-1])
        self.opt.load_state_dict(parallel.shard_optimizer(c["state"]["optimizer"], self.opt))
        log.info("phase %s: AdamW state from %s", self.phase.name, found[-1])

    def resume(self) -> Optional[tuple[Path, dict]]:
        """(path, contents) of the newest intact checkpoint (hashes verified, weights finite); a
        damaged one is reported by path and skipped for the next older one; None: fresh start.
        Every process must choose the same one (multi-node: `runs/train` on a shared path)."""
        found = self.find_checkpoint()
        if self.world > 1:
            import torch.distributed as dist

            step = 0 if found is None else int(found[1]["state"]["step"])
            t = torch.tensor([step, -step], dtype=torch.int64, device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            if int(t[0]) != -int(t[1]):
                raise UserError(f"the processes found different checkpoints in {self.paths.ckpt} (steps "
                                f"{-int(t[1])} to {int(t[0])}; this is process {self.rank}): every node must "
                                "see the same run directory (put it on a shared filesystem for multi-node runs)")
        return found

    def find_checkpoint(self) -> Optional[tuple[Path, dict]]:
        damaged = []
        for path in reversed(ckpt.list_checkpoints(self.paths.ckpt)):
            try:
                meta = ckpt.verify(path)
                if meta.get("fingerprint") != self.fp:
                    return self.fresh_start(path, meta)
                c = ckpt.load_checkpoint(path, meta)
                bad = nonfinite(c["model"]) + nonfinite(c["ema"] or {})
                if bad:
                    raise ckpt.CheckpointDamaged(path, f"non-finite weights (NaN or inf) in {bad[0]}")
            except ckpt.CheckpointDamaged as e:
                log.warning("checkpoint %s; skipped", e)
                damaged.append(path.name)
                continue
            return path, c
        if damaged:
            log.warning("starting fresh: no intact checkpoint in %s (damaged: %s)", self.paths.ckpt,
                        ", ".join(damaged))
        return None

    def fresh_start(self, path: Path, meta: dict) -> None:
        old = meta.get("fingerprint_parts", {})
        changed = [k for k in self.fp_parts if old.get(k) != self.fp_parts[k]]
        log.warning("starting fresh: checkpoint %s was made with different %s", path.name,
                    ", ".join(changed) or "settings")
        self.acc.wait_for_everyone()
        if self.main:
            ckpt.clear(self.paths.ckpt)
        return None

    def load(self, path: Path, c: dict) -> None:
        """Full tensors from the checkpoint; under FSDP each process keeps its own shard."""
        self.model.load_state_dict(parallel.shard_state(c["model"], self.model.state_dict()))
        s = c["state"]
        self.opt.load_state_dict(parallel.shard_optimizer(s["optimizer"], self.opt))
        if self.ema is not None:
            self.ema.load_state_dict(parallel.shard_state(c["ema"], self.ema.state_dict()))
        ckpt.set_rng_state(s["rng"], self.device)
        self.step, self.tokens_seen, self.spikes = int(s["step"]), int(s["tokens_seen"]), int(s["spikes"])
        # checkpoints from before the counts existed: every window is a full context of inputs
        self.counts = {"sequences": int(s.get("sequences", self.tokens_seen // self.cfg.context)),
                       "padding_tokens": int(s.get("padding_tokens", 0)), "eos_tokens": int(s.get("eos_tokens", -1))}
        self.loss_tokens_seen = int(s.get("loss_tokens_seen", self.tokens_seen))
        self.hist = [float(v) for v in s["hist"]]
        self.ckpt_seconds, self.tps_log = ckpt.read_spend(self.paths.timing, self.fp, self.step)
        if self.step not in self.ckpt_seconds:
            log.warning("%s has no record of %s: measured spend (cost.max_cost) restarts at 0",
                        self.paths.timing, path.name)
        self.seconds = self.ckpt_seconds.get(self.step, 0.0)
        if self.main:
            ckpt.truncate_after(self.paths.live, self.paths.out / "samples.txt", self.offset + self.step)
        log.info("resumed from %s: step %s, %s tokens seen", path.name, n(self.step), n(self.tokens_seen))
        old = c.get("meta") or {}
        if old.get("world", self.world) != self.world or old.get("parallel", self.mode) != self.mode:
            log.info("%s was saved by %d process(es) (%s), resumed on %d (%s): same global batch, so the "
                     "same trajectory up to float reduction order", path.name, old.get("world"),
                     old.get("parallel"), self.world, self.mode)
        if old.get("data") not in (None, self.data_digest()):  # train.on_new_data: continue
            log.warning("resuming on new data (train.on_new_data: continue): %s was made on a mix of %s train "
                        "tokens, data/mix now has %s; the %s tokens seen stay counted and the remaining %s "
                        "steps draw from the new mix", path.name, n(old.get("train_tokens_available", 0)),
                        n(self.train_available()), n(self.tokens_seen),
                        n(self.plan["total_steps"] - self.step))

    def train_available(self) -> int:
        return int(self.meta.get("splits", {}).get("train", {}).get("tokens", 0))

    def data_digest(self) -> str:
        """sha256 of the train token files' identity (their sha256s)."""
        import hashlib
        import json as _json
        return hashlib.sha256(_json.dumps(ckpt.data_identity(self.meta), sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------------ loop pieces
    def any_rank(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        return bool(self.acc.reduce(t, reduction="sum").item())

    def save(self) -> None:
        """Checkpoint: every process joins the gathers (FSDP shards -> full tensors), rank 0 writes."""
        local = {k: parallel.local(v) for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            local.update({f"ema.{k}": parallel.local(v) for k, v in self.ema.state_dict().items()})
        bad = nonfinite(local)
        if self.any_rank(bool(bad)):  # under FSDP each process sees only its shards
            where = bad[0] if bad else "a parameter shard of another process"
            raise TrainingStopped(f"non-finite weights (NaN or inf) in {where} at step {self.step}; stopped "
                                  f"without checkpointing them, keeping the last good checkpoint in "
                                  f"{self.paths.ckpt}. Lower train.lr or raise train.warmup")
        model_state = parallel.gather(self.model.state_dict(), self.main)
        ema_state = parallel.gather(self.ema.state_dict(), self.main) if self.ema else None
        opt_state = parallel.gather_optimizer(self.opt.state_dict(), self.main)
        self.acc.wait_for_everyone()
        if self.main:
            state = {"optimizer": opt_state, "rng": ckpt.rng_state(self.device),
                     "sampler": {"seed": self.tp.seed, "step": self.step}, "step": self.step,
                     "tokens_seen": self.tokens_seen, "spikes": self.spikes, "hist": self.hist, **self.counts,
                     **({"loss_tokens_seen": self.loss_tokens_seen} if self.tp.sft else {})}
            meta = {"tokens_seen": self.tokens_seen, "fingerprint": self.fp, "fingerprint_parts": self.fp_parts,
                    "data": self.data_digest(), "train_tokens_available": self.train_available(),
                    "world": self.world, "parallel": self.mode}
            self.ckpt_seconds[self.step] = self.seconds
            self.write_timing()  # first: a kill right after the checkpoint still finds its spend
            ckpt.save_checkpoint(self.paths.ckpt, self.step, model_state, state, meta, ema_state,
                                 keep=self.tp.keep_ckpts)
        self.acc.wait_for_everyone()

    def write_timing(self) -> None:
        """runs/train/timing.json: spend and throughput, the run's only wall-clock output."""
        ckpt.write_timing(self.paths.timing, self.fp, self.paths.ckpt, self.ckpt_seconds, {
            "seconds": self.seconds, "actual_hours": self.seconds / 3600,
            "actual_cost": spent(self.seconds, self.cp, self.devices), "hourly_rate": self.cp.hourly_rate,
            "num_devices": self.devices, "parallel": self.mode, "tokens_per_s_log": self.tps_log,
            "tokens_per_s": self.tps_log[-1][1] if self.tps_log else None, **self.attempt_timing()})

    def attempt_timing(self) -> dict[str, Any]:
        """This attempt's wall clock, split: setup (init, gate, resume, overfit check), the loop,
        and the part of the loop spent on evals, samples and checkpoints (README `timing.json`)."""
        a = getattr(self, "attempt", None)
        if not a or not a["loop_seconds"]:
            return {}
        steps_s = a["loop_seconds"] - a["overhead_seconds"]
        return {"setup_seconds": a["setup_seconds"], "loop_seconds": a["loop_seconds"],
                "overhead_seconds": a["overhead_seconds"], "loop_tokens": a["tokens"],
                "tokens_per_s_loop": a["tokens"] / a["loop_seconds"],
                "tokens_per_s_steps": a["tokens"] / steps_s if steps_s > 0 else None}

    def train_step(self) -> tuple[torch.Tensor, float]:
        """Forward/backward over this rank's micro-batches; returns (reduced [loss, tokens], lr)."""
        tp, accum = self.tp, self.plan["accum"]
        lr = lr_at(self.step, self.plan["total_steps"], tp)
        for g in self.opt.param_groups:
            g["lr"] = lr
        # summed micro-batch loss, input tokens, sequences, padding tokens, EOS tokens
        stats = torch.zeros(5, dtype=torch.float64)
        # SFT: each micro-batch's summed loss over the step's masked-in targets (all ranks), so the
        # step's loss is their mean however they fall into micro-batches (DDP averages over ranks)
        counted = self.windows.loss_tokens(self.step)
        self.loss_tokens_seen += counted
        total = max(1, counted)
        for m in range(accum):
            x, y = self.windows.micro_batch(self.step, m, self.rank, self.world, tp.micro_batch)
            sync = m == accum - 1 or self.world == 1
            no_sync = contextlib.nullcontext()
            if self.mode == "fsdp":  # reduce-scatter only after the last micro-batch
                self.model.set_requires_gradient_sync(sync)
            elif not sync:
                no_sync = self.acc.no_sync(self.fwd)
            with no_sync, autocast(self.device, self.precision):
                seg = self.segments(x)
                seg = None if seg is None else seg.to(self.device)
                _, loss = self.fwd(x.to(self.device), targets=y.to(self.device), return_logits=False,
                                   segments=seg, reduction="sum" if tp.sft else "mean")
                (loss * (self.world / total) if tp.sft else loss / accum).backward()
            stats += torch.tensor([loss.item(), x.numel(), x.size(0), int((x == SPECIAL_IDS["pad"]).sum()),
                                   int((x == SPECIAL_IDS["eos"]).sum())], dtype=torch.float64)
        if self.world > 1:
            stats = self.acc.reduce(stats.to(self.device), reduction="sum").cpu()
        stats[0] /= total if tp.sft else accum * self.world
        return stats, lr

    def loss_masks(self) -> dict:
        """{split: path of its loss mask} under train.sft (None each otherwise)."""
        if not self.tp.sft:
            return {"train": None, "val": None}
        splits = self.meta.get("splits", {})
        if not all("mask" in splits.get(sp, {}).get("files", {}) for sp in ("train", "val")):
            raise UserError(f"train.sft: true, but {self.paths.data} has no loss mask (no `kind: chat` source "
                            "with a weight in mix.weights); add one, or set train.sft: false")
        return {sp: self.paths.data / splits[sp]["files"]["mask"]["name"] for sp in ("train", "val")}

    def segments(self, x: torch.Tensor):
        """Document numbers of the windows `x` under train.doc_mask (attention stays in a document)."""
        return doc_segments(x, self.meta.get("eos_id", 3)) if self.tp.doc_mask else None

    def log_samples(self) -> None:
        """Greedy samples; under FSDP every process runs them (each forward all-gathers), rank 0 writes."""
        if getattr(self, "tok", None) is None:  # loaded (and the file hashed) once per run, not per eval
            from llmpipe.data.tokenizer import load

            self.tok = load(self.paths.tokenizer)
            # documents start after EOS (token files, eval and `llmpipe generate` prompt the same way)
            self.prompts = [(p, [self.tok.eos_id] + self.tok.encode(p)) for p in self.tp.sample_prompts]
        tok = self.tok
        lines = [f"## step {self.step}\n"]
        for p, prompt in self.prompts:
            ids = greedy(self.model, prompt, self.tp.sample_tokens, tok.eos_id)
            lines.append(f"{p!r} -> {tok.decode(ids)!r}\n")
        if not self.main:
            return
        with open(self.paths.out / "samples.txt", "a", encoding="utf-8") as f:
            f.write("".join(lines) + "\n")

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        tp, total = self.tp, self.plan["total_steps"]
        last = min(total, tp.max_steps) if tp.max_steps else total
        stop, t_last, tok_last = "done", time.perf_counter(), self.tokens_seen
        t_mark = t_loop = time.perf_counter()
        self.seconds += t_mark - self.t_start  # this attempt's setup: init, gate, overfit check
        self.attempt = {"setup_seconds": t_mark - self.t_start, "loop_seconds": 0.0, "overhead_seconds": 0.0,
                        "tokens": 0}
        tok_start = self.tokens_seen
        while self.step < last:
            stats, lr = self.train_step()
            loss = float(stats[0])
            if not math.isfinite(loss):
                raise TrainingStopped(f"non-finite loss ({loss}) at step {self.step}; stopped, keeping the "
                                      f"last good checkpoint in {self.paths.ckpt}. Lower train.lr or raise "
                                      "train.warmup, then `dvc repro` resumes from it")
            grad_norm = float("nan")
            if is_spike(self.hist, loss, tp.spike_sigma, tp.spike_window):
                self.spikes += 1
                log.warning("loss spike %.3f at step %d: update skipped (%d so far)", loss, self.step, self.spikes)
            else:
                params = self.model.parameters()
                grad_norm = parallel.scalar(torch.nn.utils.clip_grad_norm_(params, tp.grad_clip or float("inf")))
                self.opt.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                self.hist = (self.hist + [loss])[-tp.spike_window:]
            self.opt.zero_grad(set_to_none=True)
            self.tokens_seen += int(stats[1])
            for i, k in enumerate(("sequences", "padding_tokens", "eos_tokens"), start=2):
                self.counts[k] += int(stats[i])
            self.step += 1
            now = time.perf_counter()
            self.seconds += now - t_mark
            t_mark = now
            metrics = {}
            if self.step % tp.log_every == 0 or self.step == last:
                tps = (self.tokens_seen - tok_last) / max(now - t_last, 1e-9)
                t_last, tok_last = now, self.tokens_seen
                self.tps_log.append([self.step, tps])  # timing.json, never DVCLive (not reproducible)
                metrics.update({"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                                "train/tokens_seen": self.tokens_seen, "train/spikes_skipped": self.spikes})
                if self.phase is not None:  # the x axis is global; so is this count
                    metrics["train/cumulative_tokens"] = self.phase.tokens_before + self.tokens_seen
                if tp.sft:
                    metrics["train/loss_tokens_seen"] = self.loss_tokens_seen
                log.info("step %d/%d loss %.4f lr %.2e grad %.3f %s tok/s", self.step, total, loss, lr,
                         grad_norm, n(round(tps)))
            t_extra = time.perf_counter()  # evals, samples, DVCLive writes, checkpoints: overhead
            if self.step % tp.eval_every == 0 or self.step == last:
                metrics["val/loss"] = evaluate(self.model, self.val_batches, self.device, self.precision)
                if self.main or self.mode == "fsdp":
                    self.log_samples()
            if self.live is not None and metrics:
                self.live.step = self.offset + self.step
                for k, v in metrics.items():
                    self.live.log_metric(k, v)
                self.live.next_step()
            over = spent(self.seconds, self.cp, self.devices) >= self.cp.max_cost and self.projection is not None
            over = self.any_rank(over and self.main)  # rank 0's clock decides for everyone
            if self.step % tp.ckpt_every == 0 or over or self.step == last:
                self.save()
            now = time.perf_counter()
            self.attempt["overhead_seconds"] += now - t_extra
            self.attempt.update(loop_seconds=now - t_loop, tokens=self.tokens_seen - tok_start)
            if over:
                stop = "max_cost"
                log.warning("measured spend reached cost.max_cost ($%.2f): stopped at checkpoint step %d",
                            self.cp.max_cost, self.step)
                break
        if self.step < total and stop == "done":
            stop = "max_steps"
        return self.finish(stop)

    def accounting(self) -> dict[str, Any]:
        """Counted tokens of this phase and of the plan so far (cost.json, config.json)."""
        before = self.phase.tokens_before if self.phase else 0
        tokens = max(self.tokens_seen, 1)
        return {**self.counts, "padding_share": self.counts["padding_tokens"] / tokens,
                "phase": self.phase.name if self.phase else "train", "tokens_before": before,
                "cumulative_tokens": before + self.tokens_seen, "global_step": self.offset + self.step,
                "final_lr": lr_at(max(self.step - 1, 0), self.plan["total_steps"], self.tp)}

    def averaged(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
        """The mean of the last train.average_last checkpoints' weights (EMA's with train.ema), in
        float64 then float32, and which steps went in; `state` unchanged when K is 1."""
        k = self.tp.average_last
        if k <= 1:
            return state, None
        found = [p for p in ckpt.list_checkpoints(self.paths.ckpt) if ckpt.step_of(p) <= self.step][-k:]
        if len(found) < k:
            log.warning("train.average_last is %d but %s holds %d checkpoint(s) up to step %d: averaging those",
                        k, self.paths.ckpt, len(found), self.step)
        key = "ema" if self.ema is not None else "model"
        acc: dict[str, torch.Tensor] = {}
        for p in found:
            for name, v in ckpt.load_checkpoint(p)[key].items():
                acc[name] = acc[name] + v.double() if name in acc else v.double()
        steps = [ckpt.step_of(p) for p in found]
        log.info("final model: mean of the %s weights of %d checkpoints (steps %s)", key, len(found),
                 ", ".join(map(str, steps)))
        return {name: (v / len(found)).float() for name, v in acc.items()}, {
            "k": len(found), "steps": steps, "weights": key, "last": f"ckpt/step_{self.step:08d}"}

    def finish(self, stop: str) -> dict[str, Any]:
        """Check the final model (finite weights, finite val loss) on every rank, then write it."""
        result = {"steps": self.step, "total_steps": self.plan["total_steps"], "tokens_seen": self.tokens_seen,
                  "tokens_target": self.tp.tokens, "stop_reason": stop, "spikes_skipped": self.spikes,
                  **self.accounting()}
        if self.tp.sft:  # the targets the loss counted, from the mask (never estimated)
            result["loss_tokens_seen"] = self.loss_tokens_seen
            result["loss_token_share"] = round(self.loss_tokens_seen / max(1, self.tokens_seen), 6)
        what = f"the final model ({'EMA' if self.ema else 'weights'} at step {self.step})"
        state = parallel.gather(self.ema.state_dict() if self.ema else self.model.state_dict(), self.main)
        bad, val, average = [], float("nan"), None
        if self.main:  # one full copy, on rank 0: the model file is written from it
            with torch.random.fork_rng(devices=[]):  # its init must not move the RNG
                final = Transformer(self.cfg).to(self.device)
            last_val = None
            if self.tp.average_last > 1:
                final.load_state_dict(state)
                last_val = evaluate(final, self.val_batches, self.device, self.precision)
                state, average = self.averaged(state)
                what = f"the final model (mean of {average['k']} checkpoints)"
            final.load_state_dict(state)
            bad = nonfinite(final.state_dict())
            val = float("nan") if bad else evaluate(final, self.val_batches, self.device, self.precision)
            if average is not None:
                result["average"] = {**average, "val_loss": val, "val_loss_last": last_val}
        if self.world > 1:  # everyone stops, or nobody
            t = torch.tensor([val if self.main else 0.0], dtype=torch.float64, device=self.device)
            val = float(self.acc.reduce(t, reduction="sum").item())
        if not math.isfinite(val):
            why = (f"holds NaN or inf in {bad[0]}" if bad else f"gives a non-finite val loss ({val})") \
                if self.main else "is not finite (see process 0)"
            raise TrainingStopped(f"{what} {why}; no model written. Its weights are broken: delete "
                                  f"{self.paths.ckpt} to start fresh, or lower train.lr")
        if self.main:
            save_model(self.paths.out, final.cpu(), self.cfg,
                       extra={"train": result, "tokenizer_fingerprint": self.meta.get("tokenizer_fingerprint"),
                              "data_fingerprint": self.fp_parts["data"], "ema": self.ema is not None})
            write_json(self.paths.out / "cost.json", {"projection": self.projection, "plan": self.plan_report,
                                                      **result})
            self.write_timing()
            if self.live is not None:
                self.live.end()
        self.acc.wait_for_everyone()
        log.info("trained %s steps, %s tokens seen (target %s; %s sequences, padding %.2f%%, %s cumulative), "
                 "final val loss %.4f, %.1f s, stop: %s", n(self.step), n(self.tokens_seen), n(self.tp.tokens),
                 n(result["sequences"]), 100 * result["padding_share"], n(result["cumulative_tokens"]), val,
                 self.seconds, stop)
        return {**result, "seconds": self.seconds}


def train(paths: Paths, mp: ModelParams, tp: TrainParams, cp: CostParams,
          plan: Optional[PlanParams] = None, phase: Optional[PhaseStart] = None) -> dict[str, Any]:
    t = Trainer(paths, mp, tp, cp, plan, phase)
    t.setup()
    return t.run()
