"""clean@SRC: run the source kind's cleaners, compute every quality signal, exact hash and MinHash
signature, once (expensive, cached by DVC). Thresholds are applied later by `filter@SRC`.

    python -m stages.clean --source c4 --in data/ingested/c4.parquet --out data/clean/c4.parquet
"""
from __future__ import annotations

import sys
import argparse
from pathlib import Path

from llmpipe.data.clean.pipeline import clean_table, summary_line
from llmpipe.data.table import missing_input
from stages import source_params
from llmpipe.core.log import Timer, get_logger
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("clean")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="key of `sources` in params.yaml")
    ap.add_argument("--in", dest="src", required=True, help="ingested Document table")
    ap.add_argument("--out", required=True, help="clean table to write")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--jobs", type=int, default=None, help="override clean.jobs (0 = all cores)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    kind = source_params(ap, params, args.source).kind
    if not Path(args.src).exists():
        raise missing_input(args.src, f"ingest@{args.source}")
    with Timer() as t:
        stats = clean_table(args.src, args.out, kind, params.clean, params.dedup.ngram,
                            params.dedup.num_perm, params.dedup.seed, jobs=args.jobs)
    get_logger("clean").info(summary_line(args.source, kind, stats, params.clean, t.seconds, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
