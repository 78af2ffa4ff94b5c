"""Stage `tokenize@SRC`: split one source into train/val by id hash and encode it in parallel.

    python -m stages.tokenize --source c4 --dedup data/dedup/c4.parquet \
        --tokenizer artifacts/tokenizer/spm.model --out data/tokens/c4

Writes OUT/{train,val}.{bin,idx,docs.parquet} and OUT/meta.json (last), atomically.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from llmpipe.data.encode import tokenize_source
from llmpipe.core.log import Timer, get_logger, n
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("tokenize")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--dedup", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, default=Path("artifacts/tokenizer/spm.model"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=0, help="worker processes; 0 -> all cores, one per 4 MiB of text at most (output is the same)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    split = load_params(args.params).split
    with Timer() as t:
        meta = tokenize_source(args.dedup, args.tokenizer, args.out, source=args.source,
                               val_fraction=split.val_fraction, seed=split.seed,
                               min_val_docs=split.min_val_docs, jobs=args.jobs)
    tr, va = meta["splits"]["train"], meta["splits"]["val"]
    total = tr["tokens"] + va["tokens"]
    get_logger("tokenize").info(
        "tokenize %s: %s docs -> train %s docs / %s tokens, val %s docs / %s tokens (%s) in %.1fs "
        "(%s tokens/s, %.2f bytes/token)", args.source, n(tr["docs"] + va["docs"]), n(tr["docs"]),
        n(tr["tokens"]), n(va["docs"]), n(va["tokens"]), meta["dtype"], t.seconds,
        n(total / max(t.seconds, 1e-9)), (tr["utf8_bytes"] + va["utf8_bytes"]) / max(total, 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
