"""Stage `dedup`: exact + MinHash near-duplicate removal across all sources.

    python -m stages.dedup --in-dir data/filtered --out-dir data/dedup --report reports/dedup.json

Reads `IN/SRC.parquet` for every source in params.yaml (`sources` order), writes the folder
OUT holding `SRC.parquet` for exactly those sources (Document columns, kept rows in input
order; the folder is written under a temp name and renamed when complete) and the report.
"""
from __future__ import annotations

import sys
import argparse
from pathlib import Path

from tqdm import tqdm

from llmpipe.core.atomic import atomic_path, write_json
from llmpipe.data.dedup import dedup, summary_line
from llmpipe.data.table import num_rows
from llmpipe.core.log import Timer, get_logger
from llmpipe.core.errors import entry
from llmpipe.params import load_params


@entry("dedup")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in-dir", type=Path, default=Path("data/filtered"))
    ap.add_argument("--out-dir", type=Path, default=Path("data/dedup"))
    ap.add_argument("--report", type=Path, default=Path("reports/dedup.json"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    ins = {s: args.in_dir / f"{s}.parquet" for s in params.sources}
    log = get_logger("dedup")
    total = sum(num_rows(p) for p in ins.values() if p.exists())
    # One folder output holding exactly the current sources, written under a temp name.
    with Timer() as t, tqdm(total=total, desc="dedup write", unit="doc", file=sys.stderr) as bar, \
            atomic_path(args.out_dir) as tmp:
        report = dedup(ins, {s: tmp / f"{s}.parquet" for s in params.sources}, params.dedup, progress=bar)
    write_json(args.report, report)
    log.info(summary_line(report, t.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
