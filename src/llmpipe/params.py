"""Typed, strict view of params.yaml.

One loader for the whole file: every section is a dataclass whose fields are the only keys
allowed. Unknown keys, wrong types and out-of-range values raise `ParamsError` (a ValueError)
naming the key path and what is allowed, e.g. ``mix.weights.c4: must be >= 0, got -0.1``.

Stage scripts call `load_params()` (which validates the whole file, so a typo anywhere fails
fast) and then read their own section. A section's `__post_init__` does the range checks;
its error message is prefixed with the key path by the loader.
"""
from __future__ import annotations

from llmpipe.errors import UserError

import atexit
import dataclasses
import json
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union



class ParamsError(UserError, ValueError):
    """A params.yaml problem; the message starts with the key path."""


# --------------------------------------------------------------------------- read audit

_AUDIT_ENV = "LLMPIPE_AUDIT_DIR"
_accessed: set[str] | None = None  # dotted keys read, when auditing (tests/test_pipeline_contract.py)


class Section:
    """Base of every params section. When `LLMPIPE_AUDIT_DIR` is set, leaf reads are recorded
    (`filter.c4.min_alpha_ratio`), and at exit the process writes them with the llmpipe modules
    it imported, so a test can compare what each stage reads with what dvc.yaml declares."""

    _path: str = ""
    _live: bool = False  # set once the whole file is validated: validation reads are not audited

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if (_accessed is not None and not name.startswith("_") and name in type(self).__dataclass_fields__
                and object.__getattribute__(self, "_live")):
            key = _join(object.__getattribute__(self, "_path"), _public(name))
            if isinstance(value, dict) and any(isinstance(v, Section) for v in value.values()):
                _accessed.add(key + "[]")  # the set of names (e.g. which sources exist)
            elif not isinstance(value, Section):
                _accessed.add(key)
        return value


def _public(name: str) -> str:
    return {v: k for k, v in _KEYWORD_KEYS.items()}.get(name, name)


def _start_audit() -> None:
    global _accessed
    if _accessed is not None or not os.environ.get(_AUDIT_ENV):
        return
    _accessed = set()

    def dump() -> None:
        out = Path(os.environ[_AUDIT_ENV])
        out.mkdir(parents=True, exist_ok=True)
        mods = sorted(m.__file__ for k, m in list(sys.modules.items())
                      if k.startswith("llmpipe") and getattr(m, "__file__", None))
        rec = {"argv": sys.argv, "params": sorted(_accessed or ()), "modules": mods}
        (out / f"{os.getpid()}.json").write_text(json.dumps(rec, indent=1))

    atexit.register(dump)


# --------------------------------------------------------------------------- helpers for sections

def check(cond: bool, key: str, msg: str) -> None:
    """Range check inside __post_init__: raises with the field name, the loader adds the path."""
    if not cond:
        raise ParamsError(f"{key}: {msg}")


def check_fraction(value: float | None, key: str, *, open_low: bool = False) -> None:
    if value is None:
        return
    ok = (0.0 < value <= 1.0) if open_low else (0.0 <= value <= 1.0)
    check(ok, key, f"must be in {'(0, 1]' if open_low else '[0, 1]'}, got {value!r}")


def check_positive(value: float | int | None, key: str) -> None:
    if value is not None:
        check(value > 0, key, f"must be > 0, got {value!r}")


def check_nonneg(value: float | int | None, key: str) -> None:
    if value is not None:
        check(value >= 0, key, f"must be >= 0, got {value!r}")


# --------------------------------------------------------------------------- sections

DEFAULT_PROMPTS = ("The history of the", "In the beginning", "Once upon a time, there was",
                   "The most important thing about science is")

SourceKind = Literal["c4", "wikipedia", "gutenberg", "fineweb"]


@dataclass
class SourceParams(Section):
    """One input corpus (`sources.SRC`)."""

    kind: SourceKind
    """Which per-source cleaner and filter set applies."""
    uri: str
    """`sample://KIND` (built-in offline corpus), a local file/dir/glob, or `hf://datasets/...`."""
    format: Literal["auto", "parquet", "jsonl", "txt"] = "auto"
    """File format; `auto` picks from the extension (.parquet, .jsonl, .jsonl.gz, .json.gz, .txt)."""
    text_field: str = "text"
    """Field (column) holding the document text."""
    id_field: Optional[str] = None
    """Field holding a stable id; None -> sha256 of the text (content id). `path` for .txt files."""
    url_field: Optional[str] = None
    """Field holding the document URL; None -> no url."""
    meta_fields: list[str] = field(default_factory=list)
    """Extra fields kept as a JSON object in `meta` (e.g. title, timestamp); absent ones are omitted."""
    txt_mode: Literal["file", "paragraphs"] = "file"
    """For .txt: one document per file, or one per blank-line-separated block."""
    max_docs: Optional[int] = None
    """Stop after this many documents written (None -> all)."""
    on_bad_record: Literal["fail", "skip"] = "fail"
    """A bad record stops the stage naming file, line and rule (fail), or is counted and skipped."""
    sample_docs: int = 0
    """For sample:// only: number of documents to generate (0 -> the generator's default)."""
    sample_seed: int = 0
    """For sample:// only: seed of the generator (same seed and Python version -> same corpus)."""

    def __post_init__(self) -> None:
        check_positive(self.max_docs, "max_docs")
        check_nonneg(self.sample_docs, "sample_docs")
        check_nonneg(self.sample_seed, "sample_seed")
        check(bool(self.uri), "uri", "must be a non-empty string")
        check(not self.uri.startswith("sample://") or self.uri[9:] in ("c4", "wikipedia", "gutenberg", "fineweb"),
              "uri", f"sample corpora are sample://c4|wikipedia|gutenberg|fineweb, got {self.uri!r}")


@dataclass
class SplitParams(Section):
    """Train/val split by a hash of the document id, decided once in `tokenize`."""

    val_fraction: float = 0.05
    """Expected share of each source's documents in val: a document is val when
    sha256(f"{seed}:{id}") read as a fraction of 2^64 is below this."""
    seed: int = 0
    min_val_docs: int = 1
    """Each source keeps at least this many val documents (its lowest id hashes), so a source of
    a few long documents (books) still has a val split; never its last train document."""

    def __post_init__(self) -> None:
        check(0.0 < self.val_fraction < 1.0, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        check_nonneg(self.min_val_docs, "min_val_docs")


# Sections below are owned by the stages that read them; each may grow fields.

def _check_thresholds(section) -> None:
    """Every `min_*`/`max_*` threshold: >= 0, fractions (`*_ratio` shares) in [0, 1], min <= max."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if not f.name.startswith(("min_", "max_")) or value is None:
            continue
        check_nonneg(value, f.name)
        if f.name.endswith("_ratio") and f.name[4:] not in _UNBOUNDED_RATIOS:
            check_fraction(value, f.name)
        if f.name.startswith("min_"):
            hi = getattr(section, "max_" + f.name[4:], None)
            check(hi is None or value <= hi, f.name, f"must be <= max_{f.name[4:]} ({hi}), got {value}")


# Signals that are counts per word, so may exceed 1.
_UNBOUNDED_RATIOS = {"symbol_ratio", "newline_word_ratio"}


@dataclass
class C4CleanParams(Section):
    """C4 line cleaners (Raffel et al. 2020); each `true` removes the lines it matches."""

    citations: bool = True
    """Cut citation markers: `[1]`, `[citation needed]`, `[edit]`."""
    javascript: bool = True
    """Drop lines mentioning "javascript"."""
    policy: bool = True
    """Drop privacy / cookie / terms-of-use lines."""
    terminal_punct: bool = True
    """Drop lines not ending in terminal punctuation (. ! ? ")."""
    min_line_words: Optional[int] = 5
    """Drop lines with fewer words (C4: 5); null keeps all."""

    def __post_init__(self) -> None:
        check_positive(self.min_line_words, "min_line_words")


@dataclass
class WikipediaCleanParams(Section):
    tables: bool = True
    """Strip `{| ... |}` wikitables and stray table rows."""
    tails: bool = True
    """Cut from the first References / External links / See also / Notes ... heading to the end."""
    markup: bool = True
    """Strip leftover wikitext: refs, templates, links -> labels, quotes, headings, HTML tags."""


@dataclass
class GutenbergCleanParams(Section):
    header: bool = True
    """Cut the Project Gutenberg header (every START / SMALL PRINT marker variant) and credits."""
    footer: bool = True
    """Cut from the first END / End of the Project Gutenberg / FULL LICENSE marker."""
    unwrap: bool = True
    """Join hard-wrapped lines into one line per paragraph (indented blocks keep their breaks)."""


@dataclass
class CleanParams(Section):
    """Cleaner switches and batching for `clean@SRC` (expensive, cached). No thresholds here."""

    jobs: int = 0
    """Worker processes; 0 -> all cores. Output is identical for any value."""
    batch_docs: int = 256
    """Documents per work unit sent to a worker; memory holds ~2 x jobs batches."""
    whitespace: bool = True
    """Every kind: CRLF -> LF, control chars removed, trailing spaces cut, blank lines collapsed."""
    max_doc_chars: int = 10_000_000
    """Longest raw document cleaned, in characters; longer ones are handled by `on_long_doc` and
    their extra characters counted as removed by `max_doc_chars`. Bounds a worker's memory
    (~60 bytes per character cleaned). 10M is ~1.8x the longest single book on gutenberg.org
    (Shakespeare's complete works, ~5.5M) and far above any web page or Wikipedia article."""
    on_long_doc: Literal["cut", "skip"] = "cut"
    """`cut`: clean the first `max_doc_chars` characters; `skip`: clean nothing (the row stays,
    with empty text, which the filter drops). Either way the document is counted."""
    c4: C4CleanParams = field(default_factory=C4CleanParams)
    wikipedia: WikipediaCleanParams = field(default_factory=WikipediaCleanParams)
    gutenberg: GutenbergCleanParams = field(default_factory=GutenbergCleanParams)

    def __post_init__(self) -> None:
        check_nonneg(self.jobs, "jobs")
        check_positive(self.batch_docs, "batch_docs")
        check_positive(self.max_doc_chars, "max_doc_chars")


@dataclass
class GlobalFilter(Section):
    """`filter.global`: rules for every source kind. Field order = rule order (first failing
    rule is the drop reason, `global_<field>`). Each threshold compares the signal named by the
    rest of the field: `min_X` keeps X >= value, `max_X` keeps X <= value; null = rule off."""

    # length bounds
    min_chars: Optional[int] = 200
    max_chars: Optional[int] = None
    min_words: Optional[int] = 50
    """Gopher: 50 <= words <= 100,000."""
    max_words: Optional[int] = 100_000
    # Gopher quality (Rae et al. 2021, A.1.1)
    min_mean_word_length: Optional[float] = 3.0
    max_mean_word_length: Optional[float] = 10.0
    max_symbol_ratio: Optional[float] = 0.1
    """('#' + '...' + '…') per word."""
    max_bullet_line_ratio: Optional[float] = 0.9
    max_ellipsis_line_ratio: Optional[float] = 0.3
    min_alpha_word_ratio: Optional[float] = 0.8
    """Share of words holding a letter."""
    # web text heuristics
    min_alpha_ratio: Optional[float] = 0.6
    """Letters / non-space characters."""
    max_repeated_char_ratio: Optional[float] = 0.1
    """Share of characters in runs of 5+ identical non-space characters."""
    max_short_line_ratio: Optional[float] = None
    """Share of lines under 30 chars (off globally; FineWeb's set has it)."""
    max_boilerplate_line_ratio: Optional[float] = 0.3
    """Share of lines holding a boilerplate phrase (clean/quality.py BOILERPLATE)."""
    # English (no model download)
    min_stopword_ratio: Optional[float] = 0.15
    """English test: share of words that are English function words (English prose ~0.4)."""
    min_gopher_stopwords: Optional[int] = 2
    """Gopher: occurrences of the, be, to, of, and, that, have, with."""
    # Gopher repetition (Rae et al. 2021, table A1)
    max_dup_line_ratio: Optional[float] = 0.3
    max_dup_para_ratio: Optional[float] = 0.3
    max_dup_line_char_ratio: Optional[float] = 0.2
    max_dup_para_char_ratio: Optional[float] = 0.2
    max_top_2gram_ratio: Optional[float] = 0.2
    max_top_3gram_ratio: Optional[float] = 0.18
    max_top_4gram_ratio: Optional[float] = 0.16
    max_dup_5gram_ratio: Optional[float] = 0.15
    max_dup_6gram_ratio: Optional[float] = 0.14
    max_dup_7gram_ratio: Optional[float] = 0.13
    max_dup_8gram_ratio: Optional[float] = 0.12
    max_dup_9gram_ratio: Optional[float] = 0.11
    max_dup_10gram_ratio: Optional[float] = 0.10

    def __post_init__(self) -> None:
        _check_thresholds(self)


def _check_skip(section) -> None:
    names = {f.name for f in dataclasses.fields(GlobalFilter)}
    for k in section.skip_global:
        check(k in names, "skip_global", f"{k!r} is not a filter.global key; keys: {sorted(names)}")
    _check_thresholds(section)


@dataclass
class C4Filter(Section):
    """`filter.c4`: checked before the global rules for kind c4 (reason `c4_<field>`)."""

    skip_global: list[str] = field(default_factory=list)
    """filter.global keys not applied to this kind."""
    max_lorem_ipsum_count: Optional[int] = 0
    max_curly_brace_count: Optional[int] = 0
    min_sentence_count: Optional[int] = 3
    """C4 drops pages with fewer than 3 sentences."""
    min_alpha_ratio: Optional[float] = 0.7
    max_punct_ratio: Optional[float] = 0.1
    """Punctuation spam: non-word non-space characters / non-space characters."""
    max_nav_line_ratio: Optional[float] = 0.3
    """Share of raw page lines that are navigation (menus, breadcrumbs, pagers)."""
    min_long_paragraph_count: Optional[int] = None
    """Lines of >= 200 chars (C4's paragraph filter used 3)."""
    max_bad_word_count: Optional[int] = None
    """Words from c4.py BAD_WORDS; null = off (the default, as in C4's released variants)."""

    def __post_init__(self) -> None:
        _check_skip(self)


@dataclass
class WikipediaFilter(Section):
    skip_global: list[str] = field(default_factory=list)
    min_words: Optional[int] = 50
    """Stub articles (checked before global, so stubs are counted as `wikipedia_min_words`)."""
    max_list_line_ratio: Optional[float] = 0.8
    """List-heavy articles (disambiguation, "List of ...")."""

    def __post_init__(self) -> None:
        _check_skip(self)


@dataclass
class GutenbergFilter(Section):
    skip_global: list[str] = field(default_factory=lambda: ["max_words"])
    min_body_chars: Optional[int] = 1000
    """A book whose header/footer markers leave less than this is dropped."""

    def __post_init__(self) -> None:
        _check_skip(self)


@dataclass
class FinewebFilter(Section):
    """FineWeb's custom rules (Penedo et al. 2024)."""

    skip_global: list[str] = field(default_factory=list)
    min_terminal_punct_line_ratio: Optional[float] = 0.12
    max_short_line_ratio: Optional[float] = 0.67
    max_dup_line_char_ratio: Optional[float] = 0.1
    max_newline_word_ratio: Optional[float] = 0.3

    def __post_init__(self) -> None:
        _check_skip(self)


@dataclass
class FilterParams(Section):
    """Thresholds applied by `filter@SRC` to stored signals. `null` switches a rule off."""

    keep_rejects: bool = False
    """Also write rejected documents with their reason to data/rejects/SRC.parquet."""
    global_: GlobalFilter = field(default_factory=GlobalFilter)
    c4: C4Filter = field(default_factory=C4Filter)
    wikipedia: WikipediaFilter = field(default_factory=WikipediaFilter)
    gutenberg: GutenbergFilter = field(default_factory=GutenbergFilter)
    fineweb: FinewebFilter = field(default_factory=FinewebFilter)


@dataclass
class DedupParams(Section):
    """MinHash settings (signatures are computed in `clean@SRC`) and the `dedup` stage's choices."""

    ngram: int = 5
    """Words per shingle (read by `clean`: changing it recomputes signatures)."""
    num_perm: int = 128
    """MinHash slots per signature (read by `clean`; `dedup` checks the stored width)."""
    seed: int = 1
    """Seed of the MinHash hash functions (read by `clean`)."""
    threshold: float = 0.8
    """Estimated Jaccard at or above which two documents are near duplicates."""
    bands: Optional[int] = None
    """LSH bands; null -> chosen with `rows` from threshold and num_perm (see docs/dedup.md)."""
    rows: Optional[int] = None
    """Signature slots per band; bands * rows must be <= num_perm."""
    false_negative_weight: float = 0.9
    """Weight of missed pairs vs candidate pairs when bands/rows are chosen (in [0, 1])."""
    priority: list[str] = field(default_factory=list)
    """Sources ranked for keeping: the copy in the first-listed source survives; unlisted
    sources follow in `sources` order."""
    max_examples: int = 10
    """Example duplicate pairs written to reports/dedup.json."""

    def __post_init__(self) -> None:
        check(1 <= self.ngram <= 64, "ngram", f"must be in [1, 64], got {self.ngram}")
        check(1 <= self.num_perm <= 1024, "num_perm", f"must be in [1, 1024], got {self.num_perm}")
        check_fraction(self.threshold, "threshold", open_low=True)
        check_positive(self.bands, "bands")
        check_positive(self.rows, "rows")
        check_fraction(self.false_negative_weight, "false_negative_weight")
        check_nonneg(self.max_examples, "max_examples")
        b, r = self.bands or 1, self.rows or 1
        check(b * r <= self.num_perm, "bands",
              f"bands * rows must be <= num_perm ({self.num_perm}), got {b} * {r}")
        check(len(set(self.priority)) == len(self.priority), "priority",
              f"lists a source twice: {self.priority}")


@dataclass
class TokenizerParams(Section):
    """SentencePiece training (`tokenizer` stage). Never reads `mix.weights`: a mix sweep keeps
    one tokenizer and one tokenization."""

    vocab_size: int = 8000
    """Pieces, the 4 fixed specials, 256 byte-fallback pieces and "\\n" included."""
    sample_chars: int = 5_000_000
    """Characters of text in the training sample, drawn across sources by `sample_weights`."""
    sample_weights: dict[str, float] = field(default_factory=dict)
    """Source -> relative share of the sample; empty -> equal shares; 0 leaves a source out."""
    seed: int = 0
    """Seeds which documents the sample takes (sha256 of seed and id)."""
    character_coverage: float = 0.9995
    """Share of sample characters the vocab must cover; the rarest go to byte fallback."""
    model_type: Literal["bpe", "unigram"] = "bpe"
    num_threads: int = 1
    """Trainer threads. The model bytes depend on the thread count (measured), so it is a
    param, not the machine's core count; 0 -> all cores (then not reproducible across machines)."""

    def __post_init__(self) -> None:
        check(self.vocab_size >= 300, "vocab_size", f"must be >= 300 (261 fixed pieces + text), got {self.vocab_size}")
        check_positive(self.sample_chars, "sample_chars")
        for k, w in self.sample_weights.items():
            check(w >= 0, f"sample_weights.{k}", f"must be >= 0, got {w}")
        check(0.9 <= self.character_coverage <= 1.0, "character_coverage",
              f"must be in [0.9, 1], got {self.character_coverage}")
        check_nonneg(self.num_threads, "num_threads")


@dataclass
class MixParams(Section):
    """Weighted mixing of per-source token files (`mix` stage)."""

    weights: dict[str, float] = field(default_factory=dict)
    """Source -> relative weight of its train tokens; empty -> equal; 0 leaves a source out."""
    train_tokens: int = 1_000_000
    val_tokens: int = 100_000
    """Val tokens by the same weights from the per-source val splits; 0 -> every val document."""
    seed: int = 0
    on_short: Literal["repeat", "renormalize", "fail"] = "repeat"
    """A source with fewer train tokens than its share: repeat it, give its shortfall to the
    others, or fail."""
    tolerance: float = 0.05
    """Largest allowed relative miss |realised - target| / target of a source's train tokens."""
    max_val_overlap: float = 0.05
    """Largest allowed share of val documents sharing a 13-word n-gram with train."""

    def __post_init__(self) -> None:
        for k, w in self.weights.items():
            check(w >= 0, f"weights.{k}", f"must be >= 0, got {w}")
        check_positive(self.train_tokens, "train_tokens")
        check_nonneg(self.val_tokens, "val_tokens")
        check_fraction(self.tolerance, "tolerance")
        check_fraction(self.max_val_overlap, "max_val_overlap")


@dataclass
class ModelParams(Section):
    """Model shape (`model.*`): a named preset (see llmpipe.model.PRESETS) plus overrides.

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
    batch_tokens: int = 4096
    """Global batch in tokens (all devices, all accumulation micro-steps): a multiple of
    micro_batch * context * num_processes."""
    micro_batch: int = 8
    """Sequences per forward/backward per device."""
    seed: int = 0
    warmup: int = 10
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
    overfit_max_ratio: float = 0.6
    """The overfit check fails unless final loss <= overfit_max_ratio * first loss."""
    sample_prompts: list[str] = field(default_factory=lambda: ["The", "Once upon a time"])
    sample_tokens: int = 32
    max_steps: Optional[int] = None
    """Stop after this many optimizer steps (schedule unchanged): for smoke runs and tests."""

    def __post_init__(self) -> None:
        for k in ("tokens", "lr", "batch_tokens", "micro_batch", "eps", "eval_every", "eval_batches",
                  "ckpt_every", "keep_ckpts", "log_every", "spike_window", "overfit_steps",
                  "max_steps"):
            check_positive(getattr(self, k), k)
        for k in ("warmup", "weight_decay", "grad_clip", "spike_sigma", "sample_tokens"):
            check_nonneg(getattr(self, k), k)
        check_fraction(self.min_lr_ratio, "min_lr_ratio")
        check_fraction(self.decay_fraction, "decay_fraction")
        check_fraction(self.overfit_max_ratio, "overfit_max_ratio", open_low=True)
        check(0.0 <= self.ema < 1.0, "ema", f"must be in [0, 1), got {self.ema}")
        check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "betas",
              f"must be two numbers in [0, 1), got {self.betas}")


@dataclass
class CostParams(Section):
    """The cost gate (`cost.*`): measured throughput -> projected hours and dollars."""

    hourly_rate: float = 0.10
    """Dollars per device-hour."""
    max_cost: float = 1.0
    """Dollars; a projection above it refuses to start, measured spend reaching it stops the run."""
    num_devices: int = 1
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

    def __post_init__(self) -> None:
        check_nonneg(self.warmup_steps, "warmup_steps")
        for k in ("steps", "windows", "matmul_size"):
            check_positive(getattr(self, k), k)


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
    batch_size: int = 16
    """Windows of `model.context` tokens per forward pass."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    """Prompt suite for reports/samples.md (greedy and sampled continuation of each)."""
    prompts_file: Optional[str] = None
    """Extra prompts, one per line (blank lines and lines starting with # skipped)."""
    temperature: float = 0.8
    """Sampled continuations; the greedy one is always written too."""
    top_k: int = 50
    """0 -> sample from the whole vocabulary."""
    max_new_tokens: int = 48
    seed: int = 0
    """Seeds the max_tokens subset, the sampled continuations and the built-in MC task."""
    mc_tasks: list[Union[str, McTaskParams]] = field(default_factory=list)
    builtin_mc: BuiltinMcParams = field(default_factory=BuiltinMcParams)
    baseline: Optional[str] = None
    """A metrics file (e.g. a saved metrics/eval.json) whose `bits_per_byte` is the reference."""
    max_regression: float = 0.02
    """Fail when bits_per_byte > baseline * (1 + max_regression) (relative)."""

    def __post_init__(self) -> None:
        check_nonneg(self.max_tokens, "max_tokens")
        check_positive(self.batch_size, "batch_size")
        check_nonneg(self.temperature, "temperature")
        check_nonneg(self.top_k, "top_k")
        check_positive(self.max_new_tokens, "max_new_tokens")
        check_nonneg(self.max_regression, "max_regression")
        self.mc_tasks = [McTaskParams(path=t) if isinstance(t, str) else t for t in self.mc_tasks]


# Keys that are Python keywords are spelled with a trailing underscore in the dataclass.
_KEYWORD_KEYS = {"global": "global_"}


@dataclass
class Params(Section):
    sources: dict[str, SourceParams]
    split: SplitParams = field(default_factory=SplitParams)
    clean: CleanParams = field(default_factory=CleanParams)
    filter: FilterParams = field(default_factory=FilterParams)
    dedup: DedupParams = field(default_factory=DedupParams)
    tokenizer: TokenizerParams = field(default_factory=TokenizerParams)
    mix: MixParams = field(default_factory=MixParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    cost: CostParams = field(default_factory=CostParams)
    bench: BenchParams = field(default_factory=BenchParams)
    eval: EvalParams = field(default_factory=EvalParams)

    def __post_init__(self) -> None:
        check(len(self.sources) > 0, "sources", "must name at least one source")
        names = set(self.sources)
        for section, weights in (("mix.weights", self.mix.weights),
                                 ("tokenizer.sample_weights", self.tokenizer.sample_weights)):
            for k in weights:
                check(k in names, f"{section}.{k}", f"is not a source; sources are {sorted(names)}")
        for k in self.dedup.priority:
            check(k in names, "dedup.priority", f"{k!r} is not a source; sources are {sorted(names)}")


# --------------------------------------------------------------------------- the loader

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the type hint `tp`, recursively; return the converted value."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _convert(value, a, path)
            except ParamsError as e:
                errors.append(str(e))
        raise ParamsError(errors[0] if len(non_none) == 1 else
                          f"{path}: expected {' or '.join(_type_name(a) for a in non_none)} "
                          f"(or null), got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{path}: must be {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{path}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ParamsError(f"{path}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return int(value)  # `tokens: 1e9` (YAML 1.2 reads it as a float) is exactly 10**9
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ParamsError(f"{path}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"params.py: unsupported type hint {tp!r} at {path}")  # programming error


def from_dict(cls: type, data: Any, path: str = ""):
    """Build dataclass `cls` from a mapping, strictly. `path` prefixes every error."""
    where = path or "params.yaml"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    flds = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = _KEYWORD_KEYS.get(key, key)
        if name not in flds:
            allowed = ", ".join(sorted(k.rstrip("_") for k in flds))
            raise ParamsError(f"{_join(path, key)}: unknown key; allowed keys here: {allowed}")
        kwargs[name] = _convert(value, hints[name], _join(path, key))
    missing = [n for n, f in flds.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise ParamsError(f"{where}: missing required key(s): {', '.join(m.rstrip('_') for m in missing)}")
    try:
        obj = cls(**kwargs)
    except ParamsError as e:
        raise ParamsError(f"{_join(path, str(e))}" if path else str(e)) from None
    object.__setattr__(obj, "_path", path)
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file as DVC does: YAML 1.2 (`6e-4`, `1e-05` and `1E3` are numbers, `.inf`
    is infinity, `yes`/`on` are strings) and a key given twice in one mapping is an error."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    path = Path(path)
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        dup = re.match(r'found duplicate key "(.*?)"', str(e.problem or ""))
        if dup:  # DVC refuses such a file too; PyYAML would silently keep the last value
            raise ParamsError(f"{where}: key {dup.group(1)!r} is given twice in one mapping; "
                              f"keep one") from None
        what = "; ".join(str(x) for x in (e.context, e.problem) if x)
        raise ParamsError(f"{where}: not valid YAML: {what}") from None
    except YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate the whole params file."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the repo root, or pass --params)")
    data = read_yaml(path)
    try:
        params = from_dict(Params, data, "")
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
    _start_audit()
    if _accessed is not None:
        _set_live(params)
    return params


def _set_live(obj: Any) -> None:
    if isinstance(obj, Section):
        object.__setattr__(obj, "_live", True)
        for f in dataclasses.fields(obj):
            _set_live(object.__getattribute__(obj, f.name))
    elif isinstance(obj, dict):
        for v in obj.values():
            _set_live(v)


def as_dict(obj: Any) -> Any:
    """A section back as plain data (for reports and fingerprints); `global_` -> `global`."""
    if dataclasses.is_dataclass(obj):
        inv = {v: k for k, v in _KEYWORD_KEYS.items()}
        return {inv.get(f.name, f.name): as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_dict(v) for v in obj]
    return obj
