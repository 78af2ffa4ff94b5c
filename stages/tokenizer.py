"""Stage `tokenizer`: train the SentencePiece BPE model on a pinned sample of every source.

    python -m stages.tokenizer --clean data/clean --out artifacts/tokenizer

Samples `tokenizer.sample_chars` characters by `tokenizer.sample_weights` (never `mix.weights`)
from the first `tokenizer.sample_shards` clean shards of each source in params.yaml (exact copies
within the sample taken once; not through filter's masks, so a `filter.*` sweep keeps the
tokenizer and every token shard), writes spm.model, spm.vocab and tokenizer.json
(special ids, fingerprint, per-source fertility, the sample's shards) into OUT. While those
shards and the params are unchanged the previous tokenizer is kept byte for byte: a new input
file never retrains it.
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
    ap.add_argument("--clean", type=Path, default=Path("data/clean"))
    ap.add_argument("--out", type=Path, default=Path("artifacts/tokenizer"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    p = params.tokenizer
    with Timer() as t:
        info, how = build_tokenizer(args.clean, list(params.sources), args.out,
                                    vocab_size=p.vocab_size, sample_chars=p.sample_chars,
                                    sample_weights=p.sample_weights, seed=p.seed,
                                    character_coverage=p.character_coverage, model_type=p.model_type,
                                    num_threads=p.num_threads, sample_shards=p.sample_shards)
    get_logger("tokenizer").info(summary_line(info, t.seconds, reused=how != "trained") + f"; {how}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
