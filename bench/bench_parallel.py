"""The `bench` stage in each parallel mode: one process, then N processes under `accelerate
launch` with `train.parallel: ddp` and `fsdp` (the record `train`'s cost gate reads), on this
machine's devices (CPU: gloo).

    PYTHONPATH=src .venv/bin/python bench/bench_parallel.py --processes 2 --preset tiny \
        --out bench/results/parallel_cpu.json

Writes per mode: per-device tokens/s, all-device tokens/s, MFU, step time and peak memory as
the stage recorded them, with the exact commands and the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(root: Path, parallel: str, processes: int, args) -> dict:
    p = {"sources": {"c4": {"kind": "c4", "uri": "sample://c4"}}, "tokenizer": {"vocab_size": args.vocab},
         "model": {"preset": args.preset},
         "train": {"micro_batch": args.micro_batch, "parallel": parallel, "device": args.device},
         "bench": {"warmup_steps": args.warmup, "steps": args.steps, "windows": args.windows}}
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    cmd = [sys.executable, "-m", "stages.bench"]
    if processes > 1:
        cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "stages.bench"]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise SystemExit(r.stderr)
    rec = json.loads((root / "runs/throughput.json").read_text())
    keep = ("tokens_per_s", "tokens_per_s_all_devices", "tokens_per_s_windows", "step_time_s", "mfu",
            "peak_flops", "peak_source", "peak_memory_bytes", "processes", "torch_threads")
    return {"mode": rec["signature"]["parallel"], "command": " ".join(cmd), "wall_s": time.perf_counter() - t,
            **{k: rec.get(k) for k in keep}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process (CPU); 0: unset")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as d:
        for parallel, procs in (("ddp", 1), ("ddp", args.processes), ("fsdp", args.processes)):
            results.append(run(Path(d), parallel, procs, args))
            print(json.dumps(results[-1]), file=sys.stderr)
    out = {"argv": sys.argv, "command": "PYTHONPATH=src .venv/bin/python " + " ".join(sys.argv),
           "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
           "cpu_count": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
