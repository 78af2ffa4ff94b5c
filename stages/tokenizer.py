"""Stage `tokenizer`: train the SentencePiece BPE model on a sample of the deduplicated sources.

    python -m stages.tokenizer --dedup data/dedup --out artifacts/tokenizer

Reads `DEDUP/SRC.parquet` for every source in params.yaml, samples `tokenizer.sample_chars`
characters by `tokenizer.sample_weights` (never `mix.weights`), writes spm.model, spm.vocab and
tokenizer.json (special ids, fingerprint, per-source fertility) into OUT.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from llmpipe.core.log import Timer, get_logger
from llmpipe.core.errors import entry
from llmpipe.params import load_params
from llmpipe.data.tokenizer import build_tokenizer, summary_line


@entry("tokenizer")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dedup", type=Path, default=Path("data/dedup"))
    ap.add_argument("--out", type=Path, default=Path("artifacts/tokenizer"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    p = params.tokenizer
    with Timer() as t:
        info = build_tokenizer({s: args.dedup / f"{s}.parquet" for s in params.sources}, args.out,
                               vocab_size=p.vocab_size, sample_chars=p.sample_chars,
                               sample_weights=p.sample_weights, seed=p.seed,
                               character_coverage=p.character_coverage, model_type=p.model_type,
                               num_threads=p.num_threads)
    get_logger("tokenizer").info(summary_line(info, t.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
