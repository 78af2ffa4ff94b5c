"""Throughput benchmark: timed optimizer steps of the configured model on this device.

Warm-up steps (kernel selection, torch.compile), then `windows` windows of `steps` timed steps
(forward, backward, clip, AdamW step) on random tokens; tokens/s is the median over windows,
since single timings are noisy. MFU = tokens/s x FLOPs per token / peak FLOP/s, the peak being
the datasheet dense bf16 figure for known GPUs and a measured large matmul on CPU.

Under `accelerate launch` / `torchrun` it measures the configured parallel mode
(`train.parallel`: DDP's all-reduce or FSDP2's all-gathers and reduce-scatters) at that world
size: each process steps on its own random tokens and the record is rank 0's per-device
tokens/s (rank 0 writes it). One process runs unwrapped, as `train` does.

`cost.signature()` is what the cost gate compares: a throughput measured for another model,
micro-batch, context, precision, compile setting, device, parallel mode or process count does
not price this run.
"""
from __future__ import annotations


import importlib.metadata
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from llmpipe.core.log import n
from llmpipe.train.device import (autocast, configure_matmul, device_name, peak_flops, resolve_device,
                                  resolve_precision, synchronize)
from llmpipe.train.model import ModelConfig, Transformer, doc_segments, model_config, param_counts
from llmpipe.params import BenchParams, TrainParams
from llmpipe.train.cost import signature
from llmpipe.train.optim import make_optimizer
from llmpipe.train.parallel import mode, scalar, shard, world_info

EOS = 3  # data.tokenizer.SPECIAL_IDS["eos"]: documents of the random windows end there (doc_mask)
PACKAGES = ["torch", "numpy", "dvc", "dvclive", "accelerate", "safetensors", "sentencepiece",
            "pyarrow", "datasketch", "transformers", "triton", "llmpipe"]


def run_bench(cfg: ModelConfig, micro_batch: int, precision: str, compile: bool,
              device: torch.device, bp: BenchParams, seed: int = 0,
              tp: TrainParams | None = None, parallel: str = "ddp", doc_mask: bool = False) -> dict[str, Any]:
    """Measure training throughput; returns the throughput record (see module docstring).
    `parallel` (train.parallel) applies when a process group of several processes is up;
    `doc_mask` (train.doc_mask): attention with the per-document mask, as train runs it."""
    rank, world = world_info()
    how = mode(parallel, world)
    torch.manual_seed(seed)
    configure_matmul(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = Transformer(cfg).to(device)
    if how == "fsdp":
        step_model = shard(model, device)
    elif how == "ddp":
        step_model = torch.nn.parallel.DistributedDataParallel(model)
    else:
        step_model = model
    opt = make_optimizer(model, tp or TrainParams(), device)  # over what runs (FSDP: the shards)
    step_model = torch.compile(step_model) if compile else step_model
    B, T = micro_batch, cfg.context
    gen = torch.Generator(device=device).manual_seed(seed + rank)

    def step() -> None:
        x = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen, device=device)
        with autocast(device, precision):
            seg = doc_segments(x[:, :-1], EOS) if doc_mask else None  # the explicit-mask attention path
            _, loss = step_model(x[:, :-1], targets=x[:, 1:], return_logits=False, segments=seg)
        loss.backward()
        scalar(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))  # a sync, as train's log reads it
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for _ in range(bp.warmup_steps):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - t0
    window_tps, window_step = [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()  # for contention(): our share of the cores
    for _ in range(bp.windows):
        synchronize(device)
        t = time.perf_counter()
        for _ in range(bp.steps):
            step()
        synchronize(device)
        dt = time.perf_counter() - t
        window_tps.append(bp.steps * B * T / dt)
        window_step.append(dt / bp.steps)
    busy = contention(window_tps, time.process_time() - cpu0, time.perf_counter() - wall0, device, bp)
    tps = statistics.median(window_tps)
    fpt = model.flops_per_token()
    peak, peak_source = peak_flops(device, precision, bp.matmul_size)
    if device.type == "cuda":
        peak_mem = torch.cuda.max_memory_allocated(device)
    else:  # process peak RSS (Linux reports KiB)
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "signature": signature(cfg, micro_batch, precision, compile, device, how, world, doc_mask),
        "params": param_counts(cfg),
        "tokens_per_step": B * T,
        "processes": world,
        "tokens_per_s_all_devices": tps * world,
        "tokens_per_s": tps,
        "tokens_per_s_windows": window_tps,
        "step_time_s": statistics.median(window_step),
        "warmup_s": warmup_s,
        "flops_per_token": fpt,
        "achieved_flops": tps * fpt,
        "peak_flops": peak,
        "peak_source": peak_source,
        "mfu": tps * fpt / peak,
        "peak_memory_bytes": int(peak_mem),
        "torch_threads": torch.get_num_threads(),
        "bench": {"warmup_steps": bp.warmup_steps, "steps": bp.steps, "windows": bp.windows},
        "contention": busy,
    }


def contention(window_tps: list[float], cpu_s: float, wall_s: float, device: torch.device, bp) -> dict[str, Any]:
    """Was the machine busy while the windows ran? Two signs, from the measurement itself (no
    extra time): on CPU, the share of its threads' time this process got (`cpu_s` CPU seconds
    over `wall_s` x torch threads; another process on the cores lowers it), and on any device
    the spread of the windows' tokens/s. `loaded` when the share is under `bench.min_cpu_share`
    or the spread over `bench.max_spread`; `why` says which, with the numbers."""
    import os
    med = statistics.median(window_tps)
    spread = (max(window_tps) - min(window_tps)) / med if med > 0 else 0.0
    threads = torch.get_num_threads()
    share = cpu_s / (wall_s * threads) if device.type == "cpu" and wall_s > 0 else None
    why = []
    if share is not None and share < bp.min_cpu_share:
        why.append(f"the bench got {share:.0%} of its {threads} threads' CPU time (bench.min_cpu_share "
                   f"{bp.min_cpu_share:.0%}): other processes were using the cores")
    if spread > bp.max_spread:
        why.append(f"its {len(window_tps)} windows spread {spread:.0%} around the median (bench.max_spread "
                   f"{bp.max_spread:.0%}): the machine was not steady")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"loaded": bool(why), "why": "; ".join(why), "cpu_share": share, "window_spread": spread,
            "threads": threads, "loadavg_1m": load, "cpu_count": os.cpu_count()}


def check_contention(rec: dict[str, Any], bp) -> str | None:
    """The bench stage's verdict on a record: None when steady; else the warning line, or a
    UserError when `bench.on_loaded` is fail."""
    from llmpipe.core.errors import UserError
    busy = rec.get("contention") or {}
    if not busy.get("loaded"):
        return None
    msg = (f"bench: measured {n(round(rec['tokens_per_s']))} tokens/s on a loaded machine ({busy['why']}; "
           f"1-minute load average {busy.get('loadavg_1m') or 0:.1f} on {busy.get('cpu_count')} cores), so the "
           "figure is low and the cost projection high; rerun `dvc repro -f bench` when the machine is quiet")
    if bp.on_loaded == "fail":
        raise UserError(msg + " (bench.on_loaded: fail)")
    return msg


def env_info(device: torch.device) -> dict[str, Any]:
    """Where a result came from: interpreter, torch/CUDA/driver versions, device, packages."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "driver": None,
            "device_type": device.type, "device_name": device_name(device),
            "cpu_count": __import__("os").cpu_count(), "packages": versions}
    if device.type == "cuda":
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return info


def measure(mp, tp, bp, vocab_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `bench` stage: (throughput record, environment) of exactly what train will run:
    `model.*` at `vocab_size`, and train's micro-batch, precision, compile and device (resolved
    here, as train resolves them). The optimizer's hyperparameters (lr, betas, ...) do not change
    a step's cost, so the bench uses defaults and an lr sweep never reruns it."""
    cfg = model_config(mp, vocab_size)
    device = resolve_device(tp.device)
    precision = resolve_precision(tp.precision, device)
    from accelerate import PartialState

    PartialState(cpu=device.type == "cpu")  # joins the launcher's process group (if any), as train does
    rec = run_bench(cfg, tp.micro_batch, precision, tp.compile, device, bp, seed=tp.seed, parallel=tp.parallel,
                    doc_mask=tp.doc_mask)
    return rec, env_info(device)


def summary_line(preset: str, rec: dict[str, Any]) -> str:
    """The bench stage's one-line summary."""
    sig = rec["signature"]
    return (f"bench: {preset} on {sig['processes']} x {sig['device_name']} ({sig['precision']}, "
            f"{sig['parallel']}): "
            f"{n(round(rec['tokens_per_s']))} tokens/s, {rec['step_time_s']:.3f} s/step, MFU "
            f"{100 * rec['mfu']:.1f}% of {rec['peak_flops'] / 1e9:.1f} GFLOP/s ({rec['peak_source']})")
