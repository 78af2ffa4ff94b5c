"""Stage `dedup`: exact + MinHash near-duplicate removal across all sources, as masks.

    python -m stages.dedup --clean data/clean --filtered data/filtered --out-dir data/dedup \
        --report reports/dedup.json

Reads, for every source in params.yaml (`sources` order), the clean shards' exact hashes and
signatures of the documents filter kept, and writes the folder OUT holding `SRC/NAME.npy` per
clean shard (uint8 per clean row: 0 kept, 1 exact, 2 near duplicate, 3 dropped by filter), never
a copy of the text. Band keys are cached per shard in `--cache` (llmpipe's own scratch folder,
not a DVC output: a new shard computes its band keys alone). The folder is written under a temp
name and renamed when complete.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from llmpipe.core.atomic import write_json
from llmpipe.data.dedup import dedup_sharded, summary_line
from llmpipe.core.log import Timer, get_logger
from llmpipe.core import executor
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("dedup")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clean", type=Path, default=Path("data/clean"))
    ap.add_argument("--filtered", type=Path, default=Path("data/filtered"))
    ap.add_argument("--out-dir", type=Path, default=Path("data/dedup"))
    ap.add_argument("--cache", type=Path, default=Path("data/.cache/dedup"),
                    help="band-key cache (llmpipe's scratch; safe to delete)")
    ap.add_argument("--report", type=Path, default=Path("reports/dedup.json"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with Timer() as t, executor.make(params.exec) as ex:
        report = dedup_sharded(args.clean, args.filtered, args.out_dir, list(params.sources), params.dedup,
                               cache_dir=args.cache, executor=ex)
    write_json(args.report, report)
    get_logger("dedup").info(summary_line(report, t.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
