"""Training throughput and MFU of a model preset, outside the pipeline (random tokens).

CPU (writes bench/results/train_cpu.json): tiny and 10m presets against the measured matmul
peak, plus the data loader's batches/s against what one training step consumes.
GPU: e.g. the 100m preset in bf16 with torch.compile:

    PYTHONPATH=src python bench/bench_train.py --device cuda --preset 100m --precision bf16 \
        --compile --micro-batch 16 32 --out bench/results/gpu_h100.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmpipe.train.throughput import env_info, run_bench
from llmpipe.train.device import resolve_device
from llmpipe.train.model import config_from_preset
from llmpipe.params import BenchParams


def loader_rate(micro_batch: int, context: int, seconds: float = 2.0) -> float:
    """Batches/s of the training loader on a 20M-token uint16 memmap."""
    from llmpipe.train.loader import TokenWindows

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train.bin"
        np.random.default_rng(0).integers(0, 8000, 20_000_000, dtype=np.uint16).tofile(path)
        w = TokenWindows(path, np.uint16, context, micro_batch, seed=0)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            w.next_batch()
            n += 1
        return n / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--preset", nargs="+", default=["tiny", "10m"])
    ap.add_argument("--vocab", type=int, default=8000, help="vocab for presets that leave it open")
    ap.add_argument("--micro-batch", type=int, nargs="+", default=[8])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--loader", action="store_true", help="also measure the data loader")
    ap.add_argument("--out", default="bench/results/train_cpu.json")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    bp = BenchParams(warmup_steps=args.warmup, steps=args.steps, windows=args.windows, matmul_size=2048)
    results = []
    for preset in args.preset:
        cfg = config_from_preset(preset, vocab_size=args.vocab)
        for mb in args.micro_batch:
            r = run_bench(cfg, mb, args.precision, args.compile, device, bp)
            r["preset"] = preset
            if args.loader:
                rate = loader_rate(mb, cfg.context)
                steps_per_s = r["tokens_per_s"] / r["tokens_per_step"]
                r["loader_batches_per_s"] = rate
                r["loader_headroom"] = rate / steps_per_s
            print(json.dumps({k: r[k] for k in ("preset", "tokens_per_s", "step_time_s", "mfu",
                                                "peak_memory_bytes")} | {"micro_batch": mb}),
                  file=sys.stderr, flush=True)
            results.append(r)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    out = {"command": "python " + " ".join(sys.argv), "env": env_info(device), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
