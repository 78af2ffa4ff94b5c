"""Stage `train`: cost-gated, resumable training on the mixed token memmaps.

    python -m stages.train --data data/mix --tokenizer artifacts/tokenizer \
        --throughput runs/throughput.json --out runs/train
    accelerate launch --multi_gpu --num_processes 2 -m stages.train ...   (DDP, same global batch)

Writes OUT/model.safetensors + config.json, OUT/cost.json (projection, then actual spend),
OUT/samples.txt; checkpoints in OUT/ckpt and DVCLive logs in OUT/live (both persist, so a
killed run resumes on the next `dvc repro`). Exits 1 with one message when the cost gate
refuses, the overfit check fails or the loss goes non-finite.
"""
from __future__ import annotations

import argparse
from pathlib import Path


from llmpipe.cost import CostGateError
from llmpipe.log import get_logger
from llmpipe.params import load_params
from llmpipe.train import OverfitCheckFailed, Paths, TrainingStopped, train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/mix"))
    ap.add_argument("--tokenizer", type=Path, default=Path("artifacts/tokenizer"))
    ap.add_argument("--throughput", type=Path, default=Path("runs/throughput.json"))
    ap.add_argument("--out", type=Path, default=Path("runs/train"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    p = load_params(args.params)
    try:
        train(Paths(args.data, args.tokenizer, args.throughput, args.out), p.model, p.train, p.cost)
    except (CostGateError, OverfitCheckFailed, TrainingStopped, FileNotFoundError, ValueError) as e:
        get_logger("train").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
