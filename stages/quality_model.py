"""quality_model: train the learned quality classifier (hashed word n-grams, logistic regression)
on reference passages (clean shards of `quality.positive_kinds`) against raw web passages
(ingested shards of `quality.negative_kinds`).

    python -m stages.quality_model --clean data/clean --ingested data/ingested --out artifacts/quality \
        --report reports/quality_model.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmpipe.core.atomic import write_json
from llmpipe.core.errors import entry
from llmpipe.core.log import Timer, get_logger, n
from llmpipe.data.quality_stage import train_model
from llmpipe.params import load_params


@entry("quality_model")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", type=Path, default=Path("data/clean"))
    ap.add_argument("--ingested", type=Path, default=Path("data/ingested"))
    ap.add_argument("--out", type=Path, default=Path("artifacts/quality"))
    ap.add_argument("--report", type=Path, default=Path("reports/quality_model.json"))
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with Timer() as t:
        report = train_model(args.clean, args.ingested, {s: p.kind for s, p in params.sources.items()},
                             params.quality, args.out)
    write_json(args.report, report)
    p = report["passages"]
    get_logger("quality_model").info(
        f"quality_model: {'trained' if report['trained'] else 'UNTRAINED (' + report['why'] + ')'} on "
        f"{n(p['train'])} passages ({n(p['positive'])} per class), held-out accuracy "
        f"{report['held_out_accuracy']}, AUC {report['held_out_auc']} in {t.seconds:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
