"""quality@SRC: score every clean shard with the learned quality model (cheap, per shard; a
threshold sweep on `filter.global.min_quality_score` never rescores).

    python -m stages.quality --source c4 --in data/clean/c4 --model artifacts/quality \
        --out data/quality/c4 --report reports/quality/c4.json
Writes `OUT/NAME.npy` (float32, one score in [0, 1] per clean row) and `OUT/NAME.eval.npy` (uint32:
word n-grams each row shares with the eval prompts and multiple-choice items) per shard.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmpipe.core.atomic import write_json
from llmpipe.core.errors import entry
from llmpipe.core.log import Timer, get_logger, n
from llmpipe.data.quality_stage import score_source
from llmpipe.params import load_params
from stages import source_params


@entry("quality")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="key of `sources` in params.yaml")
    ap.add_argument("--in", dest="src", type=Path, required=True, help="clean shard directory")
    ap.add_argument("--model", type=Path, default=Path("artifacts/quality"))
    ap.add_argument("--out", type=Path, required=True, help="score directory to write")
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    source_params(ap, params, args.source)
    from llmpipe.data import contamination
    tasks = [t if isinstance(t, str) else t.path for t in params.eval.mc_tasks]
    prompts = list(params.eval.prompts)
    if params.eval.prompts_file:
        prompts += [ln for ln in Path(params.eval.prompts_file).read_text(encoding="utf-8").splitlines()
                    if ln.strip() and not ln.lstrip().startswith("#")]
    items = contamination.ngram_set(contamination.item_texts(prompts, tasks), params.quality.eval_ngram)
    with Timer() as t:
        report, reuse = score_source(args.src, args.model, args.out, source=args.source, params=params.quality,
                                     eval_items=items)
    write_json(args.report, report)
    get_logger("quality").info(
        f"quality@{args.source}: {n(report['docs'])} docs scored, mean {report['mean']}, median "
        f"{report['quantiles'].get('p50')}, {n(report['docs_sharing_eval_ngrams'])} sharing an eval "
        f"{params.quality.eval_ngram}-gram, in {t.seconds:.1f}s ({n(report['docs'] / max(t.seconds, 1e-9))} docs/s; "
        f"{reuse}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
