"""Params sections of the training stages: `model`, `train`, `cost`, `bench`, `plan` and the
later training phases (`phases.NAME`, README "Phases")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from llmpipe.core.config import Section, check, check_fraction, check_nonneg, check_positive


@dataclass
class ModelParams(Section):
    """Model shape (`model.*`): a named preset (see llmpipe.train.model.PRESETS) plus overrides.

    Any override left null keeps the preset's value; `vocab_size: null` takes the tokenizer's."""

    preset: str = "tiny"
    vocab_size: Optional[int] = None
    d_model: Optional[int] = None
    n_layers: Optional[int] = None
    n_heads: Optional[int] = None
    n_kv_heads: Optional[int] = None
    """null -> n_heads (plain multi-head attention); a divisor of n_heads -> grouped-query."""
    context: Optional[int] = None
    ffn_hidden: Optional[int] = None
    rope_theta: Optional[float] = None
    norm_eps: Optional[float] = None
    tie_embeddings: Optional[bool] = None

    def __post_init__(self) -> None:
        for k in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "context",
                  "ffn_hidden", "rope_theta", "norm_eps"):
            check_positive(getattr(self, k), k)


@dataclass
class TrainParams(Section):
    """Training run (`train.*`). Steps are optimizer steps of `batch_tokens` tokens each."""

    tokens: int = 409_600
    """Training tokens; steps = ceil(tokens / batch_tokens); the tokens actually seen are counted."""
    lr: float = 3e-3
    batch_tokens: int = 2048
    """Global batch in tokens (all devices, all accumulation micro-steps): a multiple of
    micro_batch * context * num_processes."""
    micro_batch: int = 8
    """Sequences per forward/backward per device."""
    seed: int = 0
    warmup: int = 20
    """Linear warmup steps."""
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    decay_fraction: float = 0.2
    """wsd only: share of the steps spent in the final linear decay."""
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    """Max global grad norm; 0 switches clipping off."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto -> bf16 autocast on a CUDA device that supports it, else fp32."""
    compile: bool = False
    ema: float = 0.0
    """EMA decay of the weights (e.g. 0.999); 0 -> off. With EMA the final model is the EMA."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """With several processes (`accelerate launch` / `torchrun`): `ddp` replicates the model and
    optimizer on every device; `fsdp` shards parameters, gradients and AdamW state (FSDP2
    `fully_shard` per block + root). One process runs unwrapped either way; not in the resume
    fingerprint (a checkpoint of either mode, at any world size, resumes in the other)."""
    dist_timeout_s: Optional[int] = None
    """Seconds a collective (a barrier while rank 0 writes a checkpoint, an all-gather) may wait
    for the other processes before the run fails; null -> torch's default (30 minutes)."""
    eval_every: int = 25
    eval_batches: int = 4
    ckpt_every: int = 25
    keep_ckpts: int = 2
    log_every: int = 5
    spike_sigma: float = 6.0
    """Skip an update whose loss exceeds mean + spike_sigma * std of the last spike_window
    losses; 0 -> off."""
    spike_window: int = 50
    overfit_check: bool = True
    overfit_steps: int = 30
    overfit_min_drop: Optional[float] = 0.25
    """The overfit check fails unless the loss on its micro-batch falls by at least this fraction of
    ln(vocab_size) nats (the loss of a uniform guess) in overfit_steps; null -> no such bar."""
    overfit_max_ratio: Optional[float] = None
    """Also require final loss <= overfit_max_ratio x first loss (the old bar, 0.6; it depends on
    the vocabulary: a healthy vocab-1024 run failed it); null -> off."""
    sample_prompts: list[str] = field(default_factory=lambda: ["The", "Once upon a time"])
    sample_tokens: int = 32
    max_steps: Optional[int] = None
    """Stop after this many optimizer steps (schedule unchanged): for smoke runs and tests."""
    on_new_data: Literal["restart", "continue"] = "restart"
    """When data/mix changed since the last checkpoint (new shards): `restart` trains from scratch;
    `continue` resumes at the checkpoint's step, counting the tokens already seen, and draws the
    remaining steps from the grown mix (same tokenizer required)."""
    average_last: int = 1
    """The final model is the mean of the last K checkpoints' weights (the EMA's with train.ema);
    1 -> the last step's weights. At most keep_ckpts; eval then also scores the last step's."""
    sft: bool = False
    """Supervised fine-tuning: the loss counts only the tokens the mix's loss mask marks
    (`data/mix/train.mask`: assistant turns of `kind: chat` sources, every token of other
    sources), averaged over those tokens of the whole step. Needs a chat source in `mix.weights`."""
    doc_mask: bool = False
    """Attention never crosses a document boundary (an EOS) inside a packed training window: each
    token sees only its own document's earlier tokens (positions stay the window's)."""

    def __post_init__(self) -> None:
        for k in ("tokens", "lr", "batch_tokens", "micro_batch", "eps", "eval_every", "eval_batches",
                  "ckpt_every", "keep_ckpts", "log_every", "spike_window", "overfit_steps",
                  "max_steps", "dist_timeout_s", "average_last"):
            check_positive(getattr(self, k), k)
        for k in ("warmup", "weight_decay", "grad_clip", "spike_sigma", "sample_tokens"):
            check_nonneg(getattr(self, k), k)
        check_fraction(self.min_lr_ratio, "min_lr_ratio")
        check_fraction(self.decay_fraction, "decay_fraction")
        check_fraction(self.overfit_max_ratio, "overfit_max_ratio", open_low=True)
        check_fraction(self.overfit_min_drop, "overfit_min_drop")
        check(0.0 <= self.ema < 1.0, "ema", f"must be in [0, 1), got {self.ema}")
        check(self.tokens >= self.batch_tokens, "tokens",
              f"{self.tokens} is less than one batch (train.batch_tokens {self.batch_tokens}): "
              "raise train.tokens or lower train.batch_tokens")
        check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "betas",
              f"must be two numbers in [0, 1), got {self.betas}")
        check(self.average_last <= self.keep_ckpts, "average_last",
              f"averages {self.average_last} checkpoints but train.keep_ckpts keeps {self.keep_ckpts}: "
              "raise train.keep_ckpts to at least train.average_last")


@dataclass
class CostParams(Section):
    """The cost gate (`cost.*`): measured throughput -> projected hours and dollars."""

    hourly_rate: float = 0.10
    """Dollars per device-hour."""
    max_cost: float = 1.0
    """Dollars; a projection above it refuses to start, measured spend reaching it stops the run."""
    num_devices: Optional[int] = None
    """Devices billed; null -> the run's process count (its world size). A number must equal it."""
    require_benchmark: bool = True
    """Fail closed without a matching runs/throughput.json (false: warn and skip the gate)."""

    def __post_init__(self) -> None:
        check_nonneg(self.hourly_rate, "hourly_rate")
        check_nonneg(self.max_cost, "max_cost")
        check_positive(self.num_devices, "num_devices")


@dataclass
class BenchParams(Section):
    """Throughput benchmark (`bench.*`) of the configured model, micro-batch and precision."""

    warmup_steps: int = 3
    steps: int = 5
    """Timed optimizer steps per window."""
    windows: int = 3
    """tokens/s is the median over windows."""
    matmul_size: int = 1024
    """CPU peak: n x n float32 matmul, best of several."""
    min_cpu_share: float = 0.7
    """CPU only: the bench's process must get at least this share of its threads' time during the
    timed windows (CPU seconds / (wall seconds x torch threads)); less means other processes took
    the cores and the figure is contended."""
    max_spread: float = 0.25
    """(max - min) / median of the windows' tokens/s above this: the machine was not steady."""
    on_loaded: Literal["warn", "fail"] = "warn"
    """A contended measurement is written with `contention.loaded: true` and a warning (the cost
    gate warns again when it prices from it), or the stage fails (exit 2) and writes nothing."""

    def __post_init__(self) -> None:
        check_nonneg(self.warmup_steps, "warmup_steps")
        for k in ("steps", "windows", "matmul_size"):
            check_positive(getattr(self, k), k)
        check_fraction(self.min_cpu_share, "min_cpu_share")
        check_nonneg(self.max_spread, "max_spread")



@dataclass
class PlanParams(Section):
    """The compute plan over every phase (`plan.*`; `llmpipe plan`, the cost gate's report)."""

    max_cost: Optional[float] = None
    """Dollars: the projected cost of the phases up to and including the one about to train (the
    base `train` first, then `phases` in order) must stay under it; null -> no cap beyond each
    phase's cost.max_cost. `llmpipe plan` checks the whole plan against it before anything runs."""
    tokens_per_param: float = 20.0
    """Chinchilla-optimal training tokens per parameter (Hoffmann et al. 2022: ~20)."""

    def __post_init__(self) -> None:
        check_nonneg(self.max_cost, "max_cost")
        check_positive(self.tokens_per_param, "tokens_per_param")


@dataclass
class PhaseData(Section):
    """What a later phase trains on (`phases.NAME.data`): the `mix` stage's plan with overrides."""

    weights: dict[str, float] = field(default_factory=dict)
    """Source -> weight of this phase's mix; {} -> mix.weights. Must name every source (0 leaves one out)."""
    train_tokens: Optional[int] = None
    """Train tokens of this phase's mix; null -> mix.train_tokens."""
    val_tokens: Optional[int] = None
    """Val tokens of this phase's mix (its fixed val batches); null -> mix.val_tokens."""
    chat: Optional[str] = None
    """Reserved: a chat source (SFT). Chat sources and the assistant-only loss mask are not part
    of this version; naming one is refused with a message."""

    def __post_init__(self) -> None:
        for k, w in self.weights.items():
            check(w >= 0, f"weights.{k}", f"must be >= 0, got {w}")
        check_positive(self.train_tokens, "train_tokens")
        check_nonneg(self.val_tokens, "val_tokens")


@dataclass
class PhaseTrain(Section):
    """How a later phase trains (`phases.NAME.train`); every other `train.*` key is the base's."""

    tokens: int
    """Training tokens of this phase (counted, never estimated); steps = ceil(tokens / batch)."""
    lr: Optional[float] = None
    """Learning rate at the phase's first step; null -> the previous phase's final LR (no warmup:
    warmup belongs to the first phase only)."""
    schedule: Literal["constant", "decay", "cosine"] = "constant"
    """constant: stay at the start LR; decay: linear decay over the last `decay_fraction` of the
    phase's steps to min_lr_ratio x start (WSD's anneal); cosine: cosine to min_lr_ratio x start."""
    decay_fraction: float = 1.0
    """decay only: share of the phase's steps in the final linear decay (1: the whole phase)."""
    min_lr_ratio: Optional[float] = None
    """End LR of decay/cosine as a share of the start LR; null -> train.min_lr_ratio."""
    batch_tokens: Optional[int] = None
    """Global batch in tokens; null -> train.batch_tokens."""
    init: Literal["previous", "weights"] = "previous"
    """previous: the previous phase's final weights and its last AdamW state (moments, step
    count); weights: its final weights with a fresh AdamW."""
    average_last: Optional[int] = None
    """Checkpoints averaged into this phase's final model; null -> train.average_last."""
    sft: Optional[bool] = None
    """Loss on the mix's loss mask only (an SFT phase: give a `kind: chat` source a weight in
    `data.weights`); null -> train.sft. (`train.doc_mask` is the base's for every phase: the
    bench measured the step with or without it, and the cost gate prices that step.)"""

    def __post_init__(self) -> None:
        for k in ("tokens", "lr", "batch_tokens", "average_last"):
            check_positive(getattr(self, k), k)
        check_fraction(self.decay_fraction, "decay_fraction", open_low=True)
        check_fraction(self.min_lr_ratio, "min_lr_ratio")


@dataclass
class PhaseEval(Section):
    """The promotion gate of a later phase (`phases.NAME.eval`)."""

    max_regression: Optional[float] = None
    """Fail (and stop the plan) when this phase's bits per byte is above the previous phase's by
    more than this share; null -> eval.max_regression."""

    def __post_init__(self) -> None:
        check_nonneg(self.max_regression, "max_regression")


@dataclass
class PhaseParams(Section):
    """One later training phase (`phases.NAME`): its stages are mix_phase@NAME, train_phase@NAME,
    eval_phase@NAME; the base phase is the plain mix, train, eval."""

    after: str
    """The phase this one continues: `train` (the base phase) for the first, else the previous
    entry's name (checked: phases run in file order, each after the one above it)."""
    data: PhaseData
    """Required (`{}` for the base mix's weights and sizes): dvc.yaml tracks `phases.NAME.data`,
    and DVC refuses a params key that is not in the file."""
    train: PhaseTrain
    eval: PhaseEval
    """Required like `data` (`{}` for eval.max_regression)."""
