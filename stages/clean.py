"""clean@SRC: run the source kind's cleaners, compute every quality signal, exact hash and MinHash
signature, once (expensive, cached by DVC). Thresholds are applied later by `filter@SRC`.

    python -m stages.clean --source c4 --in data/ingested/c4 --out data/clean/c4
"""
from __future__ import annotations

import sys
import argparse

from llmpipe.core.shards import publish_manifest
from llmpipe.data.clean.pipeline import clean_source, summary_line
from stages import manifest_arg, source_params
from llmpipe.core.log import Timer, get_logger
from llmpipe.core import executor
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("clean")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="key of `sources` in params.yaml")
    ap.add_argument("--in", dest="src", required=True, help="ingested shard directory")
    ap.add_argument("--out", required=True, help="clean shard directory to write")
    manifest_arg(ap)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--jobs", type=int, default=None, help="override clean.jobs (0 = all cores)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    kind = source_params(ap, params, args.source).kind
    with Timer() as t, executor.make(params.exec) as ex:
        stats, reuse = clean_source(args.src, args.out, source=args.source, kind=kind, params=params.clean,
                                    ngram=params.dedup.ngram, num_perm=params.dedup.num_perm,
                                    seed=params.dedup.seed, jobs=args.jobs, executor=ex)
    stats["shards"] = reuse
    get_logger("clean").info(summary_line(args.source, kind, stats, params.clean, t.seconds, args.out))
    publish_manifest(args.out, args.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
