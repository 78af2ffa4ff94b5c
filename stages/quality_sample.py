"""quality_sample: the quality model's training passages, from the clean shards of the reference
sources (`quality.positives`, or the sources of `quality.positive_kinds`) and the ingested shards
of the raw web sources (`quality.negatives` / `negative_kinds`), into one folder that
`quality_model` alone reads.

    python -m stages.quality_sample --clean data/clean --ingested data/ingested --out data/quality_sample
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmpipe.core.errors import entry
from llmpipe.core.log import Timer, get_logger, n
from llmpipe.data.quality_stage import sample_passages
from llmpipe.params import load_params


@entry("quality_sample")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", type=Path, default=Path("data/clean"))
    ap.add_argument("--ingested", type=Path, default=Path("data/ingested"))
    ap.add_argument("--out", type=Path, default=Path("data/quality_sample"))
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with Timer() as t:
        info = sample_passages(args.clean, args.ingested, {s: p.kind for s, p in params.sources.items()},
                               params.quality, args.out)
    get_logger("quality_sample").info(
        f"quality_sample: {n(info['positive'])} reference passages ({', '.join(info['positive_sources']) or 'none'}), "
        f"{n(info['negative'])} web passages ({', '.join(info['negative_sources']) or 'none'}), picked by "
        f"{info['picked_by']}, in {t.seconds:.1f}s -> {args.out}"
        + (f" (reused from the {info['reused']}: its pinned shards and params are unchanged)" if "reused" in info else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
