"""Stage `bench`: training throughput of the configured model on this device.

    python -m stages.bench --out runs/throughput.json --env runs/env.json
    accelerate launch --multi_gpu --num_processes N -m stages.bench   (what N processes will run)

Measures exactly what `train` will run (model.*, tokenizer.vocab_size, train.micro_batch,
train.precision, train.compile, train.device, train.parallel under a launcher) and writes the record the cost gate reads, plus the
environment. It reads the vocab size from params, not from the trained tokenizer, so a data change
that retrains the tokenizer at the same size does not rerun it (the gate in `train` still compares
the real config and fails closed on a mismatch).
"""
from __future__ import annotations

import argparse
from pathlib import Path


from llmpipe.core.atomic import write_json
from llmpipe.core.log import get_logger
from llmpipe.train.parallel import world_info
from llmpipe.train.throughput import check_contention, measure, summary_line
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("bench")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/throughput.json"))
    ap.add_argument("--env", type=Path, default=Path("runs/env.json"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    p = load_params(args.params)
    rec, env = measure(p.model, p.train, p.bench, p.tokenizer.vocab_size)
    loaded = check_contention(rec, p.bench)  # bench.on_loaded: fail raises here, before any write
    if world_info()[0] == 0:  # rank 0's record
        write_json(args.out, rec)
        write_json(args.env, env)
        get_logger("bench").info(summary_line(p.model.preset, rec))
        if loaded:
            get_logger("bench").warning(loaded)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
