"""Params sections of the `eval` stage: `eval`, its multiple-choice tasks and the built-in task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from llmpipe.core.config import Section, check, check_nonneg, check_positive


DEFAULT_PROMPTS = ("The history of the", "In the beginning", "Once upon a time, there was",
                   "The most important thing about science is")

DEFAULT_CHAT_PROMPTS = ("What does `os.getcwd()` do?", "Explain `str.upper()` in one sentence.",
                        "Hello! What can you help me with?")


@dataclass
class McTaskParams(Section):
    """One multiple-choice task file (`eval.mc_tasks[i]` as a mapping; a bare string is `path`)."""

    path: str
    """jsonl, one example per line: {"context": str, "choices": [str, ...], "label": int}."""
    name: Optional[str] = None
    """Metric name; null -> the file name without .jsonl."""
    k: int = 0
    """Few-shot examples (other examples of the task with their right answer) before each one."""
    delimiter: str = " "
    """Joins context and choice (HellaSwag/ARC style: one space)."""

    def __post_init__(self) -> None:
        check(bool(self.path), "path", "must be a non-empty string")
        check_nonneg(self.k, "k")


@dataclass
class BuiltinMcParams(Section):
    """The offline multiple-choice task built from held-out val documents (`eval.builtin_mc`):
    the first `context_words` words of a document, then its true next `continuation_words`
    words among the same-position words of other val documents."""

    n: int = 100
    """Examples; 0 switches the task off."""
    choices: int = 4
    context_words: int = 24
    continuation_words: int = 8

    def __post_init__(self) -> None:
        check_nonneg(self.n, "n")
        check(self.choices >= 2, "choices", f"must be >= 2, got {self.choices}")
        check_positive(self.context_words, "context_words")
        check_positive(self.continuation_words, "continuation_words")


@dataclass
class EvalParams(Section):
    """The `eval` stage: held-out loss and bits per byte, samples, multiple choice, the gate."""

    max_tokens: int = 0
    """Val tokens scored, summed over sources; 0 -> every val document. Otherwise whole
    documents in a fixed seeded order, each source getting its share of its val tokens."""
    min_source_tokens: int = 2000
    """With max_tokens: each source scores at least this many val tokens (or all it has), so a
    small source is not reduced to a document or two; a document that overshoots its source's
    budget is cut to its first tokens (one long book cannot crowd the others out)."""
    batch_size: int = 16
    """Windows of `model.context` tokens per forward pass."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    """Prompt suite for reports/samples.md (greedy and sampled continuation of each)."""
    prompts_file: Optional[str] = None
    """Extra prompts, one per line (blank lines and lines starting with # skipped)."""
    chat_prompts: list[str] = field(default_factory=lambda: list(DEFAULT_CHAT_PROMPTS))
    """User messages answered through the chat template (greedy, up to max_new_tokens, stopping at
    `<|end|>`) in samples.md's "Chat" section, for a model trained with the SFT loss only (its
    config.json counts `loss_tokens_seen`); [] switches them off."""
    temperature: float = 0.8
    """Sampled continuations; the greedy one is always written too."""
    top_k: int = 50
    """0 -> sample from the whole vocabulary."""
    max_new_tokens: int = 48
    seed: int = 0
    """Seeds the max_tokens subset, the sampled continuations and the built-in MC task."""
    mc_tasks: list[Union[str, McTaskParams]] = field(default_factory=list)
    builtin_mc: BuiltinMcParams = field(default_factory=BuiltinMcParams)
    texts: list[str] = field(default_factory=list)
    """Held-out text files scored as one stream each (bits per byte with the model's full context,
    `llmpipe.eval.stream`), reported under `texts` beside the per-source figures. Their contents
    are not a DVC dependency (a path outside the repo is allowed): their sha256 is in the metrics."""
    stride: int = 0
    """Tokens the scoring window of `texts` slides by: each target after the first window sees at
    least context - stride tokens; 0 -> context // 4."""
    baseline: Optional[str] = None
    """A metrics file (e.g. a saved metrics/eval.json) whose `bits_per_byte` is the reference."""
    max_regression: float = 0.02
    """Fail when bits_per_byte > baseline * (1 + max_regression) (relative)."""

    def __post_init__(self) -> None:
        check_nonneg(self.max_tokens, "max_tokens")
        check_nonneg(self.min_source_tokens, "min_source_tokens")
        check_positive(self.batch_size, "batch_size")
        check_nonneg(self.temperature, "temperature")
        check_nonneg(self.top_k, "top_k")
        check_positive(self.max_new_tokens, "max_new_tokens")
        check_nonneg(self.max_regression, "max_regression")
        check_nonneg(self.stride, "stride")
        for i, m in enumerate(self.chat_prompts):
            check(isinstance(m, str) and bool(m.strip()), f"chat_prompts[{i}]", "must be a non-empty string")
        self.mc_tasks = [McTaskParams(path=t) if isinstance(t, str) else t for t in self.mc_tasks]

