"""Cost of a training step with `train.doc_mask` (per-document attention) and `train.sft` (masked
loss, summed) against the plain causal step; writes bench/results/doc_mask.json.

    PYTHONPATH=src .venv/bin/python bench/bench_doc_mask.py --preset tiny --steps 6

Random windows of the preset's context with an EOS every --doc-tokens tokens (chat-sized
documents), micro-batch 8, fp32 on CPU; per setting the process CPU seconds and wall seconds of
--steps forward/backward/AdamW steps after 2 warmup steps, the median of --repeats. CPU seconds
are less sensitive than wall time to other processes on a shared machine; the load average is
recorded with them.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from llmpipe.core.atomic import write_json
from llmpipe.train.model import Transformer, config_from_preset, doc_segments

EOS = 3


def run(cfg, x: torch.Tensor, y: torch.Tensor, doc_mask: bool, sft: bool, steps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seg = doc_segments(x, EOS) if doc_mask else None
    target = torch.where(torch.rand(y.shape, generator=torch.Generator().manual_seed(1)) < 0.4, y, -1) if sft else y

    def step() -> None:
        _, loss = model(x, targets=target, return_logits=False, segments=seg, reduction="sum" if sft else "mean")
        (loss / max(1, int((target >= 0).sum())) if sft else loss).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    c, w = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return time.process_time() - c, time.perf_counter() - w


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--doc-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/doc_mask.json")
    args = ap.parse_args(argv)
    cfg = config_from_preset(args.preset, vocab_size=args.vocab)
    g = torch.Generator().manual_seed(0)
    w = torch.randint(9, args.vocab, (args.micro_batch, cfg.context + 1), generator=g)
    w[:, args.doc_tokens - 1::args.doc_tokens] = EOS
    x, y = w[:, :-1], w[:, 1:]
    load = os.getloadavg()
    out = {"command": "PYTHONPATH=src .venv/bin/python bench/bench_doc_mask.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "preset": args.preset, "context": cfg.context, "micro_batch": args.micro_batch,
           "doc_tokens": args.doc_tokens, "steps": args.steps, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "machine": platform.machine(), "cores": os.cpu_count(),
           "load_before": [round(v, 2) for v in load], "settings": {}}
    for name, dm, sft in (("causal", False, False), ("doc_mask", True, False), ("sft", False, True),
                          ("sft+doc_mask", True, True)):
        runs = [run(cfg, x, y, dm, sft, args.steps) for _ in range(args.repeats)]
        cpu, wall = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        out["settings"][name] = {"cpu_s_per_step": round(cpu / args.steps, 4), "wall_s_per_step": round(wall / args.steps, 4)}
    base = out["settings"]["causal"]["cpu_s_per_step"]
    for v in out["settings"].values():
        v["cpu_vs_causal"] = round(v["cpu_s_per_step"] / base, 3)
    out["load_after"] = [round(v, 2) for v in os.getloadavg()]
    write_json(args.out, out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
