"""quality_model: train the learned quality classifier (hashed word n-grams, logistic regression)
on `quality_sample`'s passages: reference (clean shards of the positive sources) against raw web
(ingested shards of the negative sources).

    python -m stages.quality_model --sample data/quality_sample --out artifacts/quality \
        --report reports/quality_model.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmpipe.core.atomic import write_json
from llmpipe.core.errors import entry
from llmpipe.core.log import Timer, get_logger, n
from llmpipe.data.quality_stage import train_on_sample
from llmpipe.params import load_params


@entry("quality_model")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=Path, default=Path("data/quality_sample"))
    ap.add_argument("--out", type=Path, default=Path("artifacts/quality"))
    ap.add_argument("--report", type=Path, default=Path("reports/quality_model.json"))
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with Timer() as t:
        report = train_on_sample(args.sample, params.quality, args.out)
    write_json(args.report, report)
    p = report["passages"]
    get_logger("quality_model").info(
        f"quality_model: {'trained' if report['trained'] else 'UNTRAINED (' + report['why'] + ')'} on "
        f"{n(p['train'])} passages ({n(p['positive'])} per class), held-out accuracy "
        f"{report['held_out_accuracy']}, AUC {report['held_out_auc']} in {t.seconds:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
