"""The whole params.yaml: `Params` assembles every section, `load_params` reads and checks it.

Stage scripts call `load_params()` (which validates the whole file, so a typo anywhere fails
fast) and then read their own section. Sections live beside their owners:
`llmpipe.data.config` (sources, split, clean, filter, dedup, tokenizer, mix; clean/filter per
kind from `llmpipe.data.kinds`), `llmpipe.train.config` (model, train, cost, bench) and
`llmpipe.eval.config` (eval), `llmpipe.core.executor` (exec); the loader core is `llmpipe.core.config`. Names are re-exported
here, so `from llmpipe.params import TrainParams` keeps working.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import re
from pathlib import Path

from llmpipe.core.config import (ParamsError, Section, as_dict, check, from_dict, read_yaml,  # noqa: F401
                                 start_audit)
from llmpipe.core.executor import ExecParams  # noqa: F401
from llmpipe.data.config import (CleanParams, DedupParams, FilterParams, MixParams,  # noqa: F401
                                 QualityParams, SourceParams, SplitParams, TokenizeParams, TokenizerParams)
from llmpipe.data.kinds.base import GlobalFilter  # noqa: F401
from llmpipe.eval.config import BuiltinMcParams, EvalParams, McTaskParams  # noqa: F401
from llmpipe.train.config import (BenchParams, CostParams, ModelParams, PhaseData, PhaseEval,  # noqa: F401
                                  PhaseParams, PhaseTrain, PlanParams, TrainParams)


@dataclass
class Params(Section):
    sources: dict[str, SourceParams]
    split: SplitParams = field(default_factory=SplitParams)
    clean: CleanParams = field(default_factory=CleanParams)
    filter: FilterParams = field(default_factory=FilterParams)
    dedup: DedupParams = field(default_factory=DedupParams)
    quality: QualityParams = field(default_factory=QualityParams)
    tokenizer: TokenizerParams = field(default_factory=TokenizerParams)
    tokenize: TokenizeParams = field(default_factory=TokenizeParams)
    mix: MixParams = field(default_factory=MixParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    cost: CostParams = field(default_factory=CostParams)
    bench: BenchParams = field(default_factory=BenchParams)
    eval: EvalParams = field(default_factory=EvalParams)
    exec: ExecParams = field(default_factory=ExecParams)
    plan: PlanParams = field(default_factory=PlanParams)
    phases: dict[str, PhaseParams] = field(default_factory=dict)
    """Later training phases in file order, after the base mix/train/eval (README "Phases")."""

    def __post_init__(self) -> None:
        check(len(self.sources) > 0, "sources", "must name at least one source")
        for name in self.sources:  # a name becomes a stage name and file names (data/clean/NAME.parquet)
            check(bool(_SOURCE_NAME.fullmatch(name)), f"sources.{name}",
                  "a source name is letters, digits, '_' and '-' (it names stages and files)")
        names = set(self.sources)
        phase_weights = [(f"phases.{k}.data.weights", ph.data.weights) for k, ph in self.phases.items()]
        for section, weights in [("mix.weights", self.mix.weights),
                                 ("tokenizer.sample_weights", self.tokenizer.sample_weights)] + phase_weights:
            for k in weights:
                check(k in names, f"{section}.{k}", f"is not a source; sources are {sorted(names)}")
            missing = sorted(names - set(weights))
            check(not weights or not missing, section,
                  f"names {', '.join(sorted(weights))} but not {', '.join(missing)}: give every "
                  "source a weight (0 leaves a source out), or {} for equal weights")
        for k in self.dedup.priority:
            check(k in names, "dedup.priority", f"{k!r} is not a source; sources are {sorted(names)}")
        self._check_phases()

    def _check_phases(self) -> None:
        prev = "train"
        for name, ph in self.phases.items():  # a name becomes stage names and paths (runs/NAME)
            check(bool(_SOURCE_NAME.fullmatch(name)) and name != "train", f"phases.{name}",
                  "a phase name is letters, digits, '_' and '-', and not 'train' (the base phase)")
            check(ph.after == prev, f"phases.{name}.after",
                  f"is {ph.after!r}, but phases run in file order: set it to {prev!r} (the phase above "
                  "it; 'train' is the base phase)")
            check(ph.data.chat is None, f"phases.{name}.data.chat",
                  "is not a key: an SFT phase gives its `kind: chat` source a weight in data.weights "
                  "and sets train.sft: true (README \"Phases\")")
            bt = ph.train.batch_tokens or self.train.batch_tokens
            check(ph.train.tokens >= bt, f"phases.{name}.train.tokens",
                  f"{ph.train.tokens} is less than one batch ({bt} tokens)")
            k = ph.train.average_last or self.train.average_last
            check(k <= self.train.keep_ckpts, f"phases.{name}.train.average_last",
                  f"averages {k} checkpoints but train.keep_ckpts keeps {self.train.keep_ckpts}")
            prev = name


_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def read_params_tree(path: str | Path = "params.yaml"):
    """The params file parsed as DVC parses it (YAML 1.2), not yet checked."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the repo root, or pass --params)")
    return read_yaml(path)


def load_params(path: str | Path = "params.yaml", data=None) -> Params:
    """Load and validate the whole params file (`data`: its tree from `read_params_tree`, when the
    caller needs the raw values too, so the file is parsed once)."""
    path = Path(path)
    if data is None:
        data = read_params_tree(path)
    try:
        params = from_dict(Params, data, "")
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
    start_audit(params)
    return params
