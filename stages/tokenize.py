"""Stage `tokenize@SRC`: split one source into train/val by id hash and encode it in parallel.

    python -m stages.tokenize --source c4 --clean data/clean/c4 --dedup data/dedup/c4 \
        --tokenizer artifacts/tokenizer/spm.model --out data/tokens/c4

Reads the clean shards through dedup's masks; writes OUT/NAME.{train,val}.{bin,idx,docs.parquet}
per shard (+ NAME.{train,val}.mask, the SFT loss mask, for a `kind: chat` source), OUT/meta.json
and OUT/manifest.json, atomically, re-encoding only changed shards.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from llmpipe.core.shards import publish_manifest
from llmpipe.data.encode import summary_line, tokenize_source
from llmpipe.core.log import Timer, get_logger
from llmpipe.core import executor
from llmpipe.core.errors import entry
from llmpipe.params import load_params
from stages import manifest_arg, source_params


@entry("tokenize")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--clean", type=Path, required=True, help="clean shard directory of the source")
    ap.add_argument("--dedup", type=Path, required=True, help="dedup mask directory of the source")
    ap.add_argument("--tokenizer", type=Path, default=Path("artifacts/tokenizer/spm.model"))
    ap.add_argument("--out", type=Path, required=True)
    manifest_arg(ap)
    ap.add_argument("--jobs", type=int, default=None, help="override tokenize.jobs (output is the same)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    split = params.split
    with Timer() as t, executor.make(params.exec) as ex:
        meta = tokenize_source(args.clean, args.dedup, args.tokenizer, args.out, source=args.source,
                               val_fraction=split.val_fraction, seed=split.seed,
                               min_val_docs=split.min_val_docs, group_by=split.group_by,
                               jobs=params.tokenize.jobs if args.jobs is None else args.jobs, executor=ex,
                               chat=source_params(ap, params, args.source).kind == "chat")
    get_logger("tokenize").info(summary_line(args.source, meta, t.seconds))
    publish_manifest(args.out, args.manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
