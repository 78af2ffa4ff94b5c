"""filter@SRC: apply the `filter.*` thresholds to the signals stored by `clean@SRC` (cheap).

    python -m stages.filter --source c4 --in data/clean/c4 --out data/filtered/c4 \
        --report reports/filter/c4.json --rejects data/rejects/c4
Writes a reason-code mask per clean shard (`OUT/NAME.npy`), never a copy of the text.
`--rejects` is always written; it holds rows only when `filter.keep_rejects` is true.
"""
from __future__ import annotations

import sys
import argparse

from llmpipe.core.shards import publish_manifest
from llmpipe.core.atomic import write_json
from llmpipe.data.clean.rules import filter_source, summary_line
from stages import manifest_arg, source_params
from llmpipe.core.log import Timer, get_logger
from llmpipe.core import executor
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("filter")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="key of `sources` in params.yaml")
    ap.add_argument("--in", dest="src", required=True, help="clean shard directory (signals)")
    ap.add_argument("--out", required=True, help="mask directory to write")
    manifest_arg(ap)
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (0 = all cores; same output)")
    ap.add_argument("--report", required=True, help="JSON metrics to write")
    ap.add_argument("--rejects", default=None,
                    help="rejected documents + reason (rows only if filter.keep_rejects)")
    ap.add_argument("--quality", default=None,
                    help="quality@SRC score directory (read when filter.global.min_quality_score is set)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    kind = source_params(ap, params, args.source).kind
    with Timer() as t:
        with executor.make(params.exec) as ex:
            report, reuse = filter_source(args.src, args.out, args.rejects, source=args.source, kind=kind,
                                          filter_params=params.filter, jobs=args.jobs,
                                          quality_dir=args.quality, executor=ex)
    write_json(args.report, report)
    get_logger("filter").info(summary_line(args.source, kind, report, t.seconds) + f" ({reuse})")
    publish_manifest(args.out, args.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
