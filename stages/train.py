"""Stage `train`: cost-gated, resumable training on the mixed token memmaps.

    python -m stages.train --data data/mix --tokenizer artifacts/tokenizer \
        --throughput runs/throughput.json --out runs/train
    python -m stages.train --phase NAME --data data/phases/NAME --out runs/NAME ...
        (a later phase, `phases.NAME`: starts from runs/AFTER, README "Phases")
    accelerate launch --multi_gpu --num_processes 2 -m stages.train ...   (same global batch;
        train.parallel: ddp | fsdp; several machines: --num_machines N --machine_rank R
        --main_process_ip IP --main_process_port PORT, README "Scaling out")

Writes OUT/model.safetensors + config.json, OUT/cost.json (projection, steps, tokens, stop
reason), OUT/samples.txt; checkpoints in OUT/ckpt and DVCLive logs in OUT/live (both persist,
so a killed run resumes on the next `dvc repro`); OUT/timing.json, the only wall-clock output
(spend, tokens/s). Exits 2 with one line when the cost gate refuses, the overfit check fails,
the loss or the weights go non-finite, or the final model's val loss is not finite.
"""
from __future__ import annotations

import argparse
from pathlib import Path


from llmpipe.core.errors import entry
from llmpipe.params import load_params
from llmpipe.train import phases
from llmpipe.train.trainer import Paths, train


@entry("train")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/mix"))
    ap.add_argument("--tokenizer", type=Path, default=Path("artifacts/tokenizer"))
    ap.add_argument("--throughput", type=Path, default=Path("runs/throughput.json"))
    ap.add_argument("--out", type=Path, default=Path("runs/train"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--phase", default=None, help="a key of params.yaml phases (default: the base phase)")
    args = ap.parse_args(argv)
    p = load_params(args.params)
    tp, start = p.train, None
    if args.phase is not None:
        tp, start = phases.resolve(p, args.phase)
        phases.require_promotion(start.init_dir)
    train(Paths(args.data, args.tokenizer, args.throughput, args.out), p.model, tp, p.cost, p.plan, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
