"""Stage `mix`: weighted whole-document mix of the per-source token files into train/val.

    python -m stages.mix --tokens data/tokens --tokenizer artifacts/tokenizer/spm.model \
        --out data/mix --report reports/mix.json
    python -m stages.mix --phase NAME --out data/phases/NAME --report reports/phases/NAME/mix.json
        (a later phase: mix.* with phases.NAME.data's weights and token counts)

Writes OUT/{train,val}.{bin,idx,docs.parquet} + OUT/data_meta.json (per-source targets vs
realised tokens, repeats, leakage) and the flat metric REPORT.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from llmpipe.core.atomic import write_json
from llmpipe.core.log import Timer, get_logger
from llmpipe.data.mix import build_mix, summary, summary_line
from llmpipe.core.errors import entry
from llmpipe.params import as_dict, load_params


@entry("mix")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=Path, default=Path("data/tokens"))
    ap.add_argument("--tokenizer", type=Path, default=Path("artifacts/tokenizer/spm.model"))
    ap.add_argument("--out", type=Path, default=Path("data/mix"))
    ap.add_argument("--report", type=Path, default=Path("reports/mix.json"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--phase", default=None, help="a key of params.yaml phases (default: the base mix)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    mix = as_dict(params.mix)
    if args.phase is not None:
        if args.phase not in params.phases:
            ap.error(f"--phase {args.phase!r} is not in params.yaml phases ({', '.join(params.phases) or 'none'})")
        data = params.phases[args.phase].data
        over = {"weights": data.weights or None, "train_tokens": data.train_tokens, "val_tokens": data.val_tokens}
        mix.update({k: v for k, v in over.items() if v is not None})
    with Timer() as t:
        meta = build_mix({s: args.tokens / s for s in params.sources}, args.tokenizer, args.out, **mix)
    write_json(args.report, summary(meta))
    get_logger("mix").info(summary_line(meta, t.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
