"""filter@SRC: apply the `filter.*` thresholds to the signals stored by `clean@SRC` (cheap).

    python -m stages.filter --source c4 --in data/clean/c4.parquet --out data/filtered/c4.parquet \
        --report reports/filter/c4.json --rejects data/rejects/c4.parquet
`--rejects` is always written; it holds rows only when `filter.keep_rejects` is true.
"""
from __future__ import annotations

import sys
import argparse
from pathlib import Path

from llmpipe.core.atomic import write_json
from llmpipe.data.clean.rules import filter_table, summary_line
from llmpipe.data.table import missing_input
from stages import source_params
from llmpipe.core.log import Timer, get_logger
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("filter")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="key of `sources` in params.yaml")
    ap.add_argument("--in", dest="src", required=True, help="clean table (signals)")
    ap.add_argument("--out", required=True, help="filtered Document table to write")
    ap.add_argument("--report", required=True, help="JSON metrics to write")
    ap.add_argument("--rejects", default=None,
                    help="rejected documents + reason (rows only if filter.keep_rejects)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    kind = source_params(ap, params, args.source).kind
    if not Path(args.src).exists():
        raise missing_input(args.src, f"clean@{args.source}")
    with Timer() as t:
        report = filter_table(args.src, args.out, args.rejects, kind, params.filter)
    write_json(args.report, report)
    get_logger("filter").info(summary_line(args.source, kind, report, t.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
