"""The `eval` stage: held-out bits per byte (overall, per source), samples, MC accuracy, gate.

    python -m stages.eval --model runs/train --tokenizer artifacts/tokenizer/spm.model \
        --tokens data/tokens --metrics metrics/eval.json --samples reports/samples.md \
        --plot reports/eval/per_source.json
    python -m stages.eval --phase NAME --model runs/NAME --metrics metrics/phases/NAME.json ...
        (a later phase: its gate compares with the phase it continues, README "Phases")

When the gate passes (or there is none), MODEL/promotion.json names the model (the next phase
trains only from a promoted model) and MODEL/gate.json holds its bits per byte (the next phase's
eval gates against it: a declared dependency of that stage, README "Phases").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from llmpipe.core.atomic import write_json
from llmpipe.eval.evaluate import run_eval
from llmpipe.core.errors import entry
from llmpipe.params import load_params
from llmpipe.train import phases


@entry("eval")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="runs/train")
    ap.add_argument("--tokenizer", default="artifacts/tokenizer/spm.model")
    ap.add_argument("--tokens", default="data/tokens", help="holds one token directory per source")
    ap.add_argument("--metrics", default="metrics/eval.json")
    ap.add_argument("--samples", default="reports/samples.md")
    ap.add_argument("--plot", default="reports/eval/per_source.json")
    ap.add_argument("--phase", default=None, help="a key of params.yaml phases (default: the base phase)")
    a = ap.parse_args(argv)
    params = load_params(a.params)
    token_dirs = {src: Path(a.tokens) / src for src in params.sources}
    gate = None
    if a.phase is not None:
        if a.phase not in params.phases:
            ap.error(f"--phase {a.phase!r} is not in params.yaml phases ({', '.join(params.phases) or 'none'})")
        ph = params.phases[a.phase]
        limit = ph.eval.max_regression
        gate = (str(phases.run_dir(ph.after) / phases.GATE), params.eval.max_regression if limit is None else limit,
                "eval.max_regression" if limit is None else f"phases.{a.phase}.eval.max_regression")
    metrics = run_eval(a.model, a.tokenizer, token_dirs, params.eval, metrics_path=a.metrics,
                       samples_path=a.samples, plot_path=a.plot, gate=gate)
    write_json(Path(a.model) / phases.GATE, phases.gate_record(metrics, a.metrics))
    write_json(Path(a.model) / phases.PROMOTION, phases.promotion_record(Path(a.model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
