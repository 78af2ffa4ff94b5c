"""Stage `bench`: training throughput of the configured model on this device.

    python -m stages.bench --out runs/throughput.json --env runs/env.json

Measures exactly what `train` will run (model.*, tokenizer.vocab_size, train.micro_batch,
train.precision, train.compile, train.device) and writes the record the cost gate reads, plus the
environment. It reads the vocab size from params, not from the trained tokenizer, so a data change
that retrains the tokenizer at the same size does not rerun it (the gate in `train` still compares
the real config and fails closed on a mismatch).
"""
from __future__ import annotations

import argparse
from pathlib import Path


from llmpipe.core.atomic import write_json
from llmpipe.train.model import model_config
from llmpipe.train.throughput import env_info, run_bench
from llmpipe.train.device import resolve_device, resolve_precision
from llmpipe.core.log import get_logger, n
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
    cfg = model_config(p.model, p.tokenizer.vocab_size)
    device = resolve_device(p.train.device)
    precision = resolve_precision(p.train.precision, device)
    # The optimizer's hyperparameters (lr, betas, ...) do not change a step's cost: the bench uses
    # defaults, so an lr sweep never reruns it (tests/test_pipeline_contract.py checks this).
    rec = run_bench(cfg, p.train.micro_batch, precision, p.train.compile, device, p.bench,
                    seed=p.train.seed)
    write_json(args.out, rec)
    write_json(args.env, env_info(device))
    get_logger("bench").info("bench: %s on %s (%s): %s tokens/s, %.3f s/step, MFU %.1f%% of %.1f GFLOP/s (%s)",
                             p.model.preset, rec["signature"]["device_name"], precision,
                             n(round(rec["tokens_per_s"])), rec["step_time_s"], 100 * rec["mfu"],
                             rec["peak_flops"] / 1e9, rec["peak_source"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
