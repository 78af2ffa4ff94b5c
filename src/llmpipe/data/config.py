"""Params sections of the data stages: `sources.*`, `split`, `clean`, `filter`, `dedup`,
`tokenizer`, `mix`. `clean` and `filter` are assembled from the source kinds
(`llmpipe.data.kinds`): each kind package brings its `clean.KIND` and `filter.KIND` sections."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

from llmpipe.core.config import (Section, check, check_fraction, check_nonneg, check_positive)
from llmpipe.data import kinds
from llmpipe.data.kinds.base import GlobalFilter

# The built-in offline corpus (`uri: sample://KIND`) exists for these kinds.
SAMPLE_KINDS = ("c4", "wikipedia", "gutenberg", "fineweb", "chat")




@dataclass
class SourceParams(Section):
    """One input corpus (`sources.SRC`)."""

    kind: str
    """Which per-source cleaner and filter set applies."""
    uri: str
    """`sample://KIND` (built-in offline corpus), a local file/dir/glob, or `hf://datasets/...`."""
    format: Literal["auto", "parquet", "jsonl", "txt"] = "auto"
    """File format; `auto` picks from the extension (.parquet, .jsonl, .jsonl.gz, .json.gz, .txt)."""
    text_field: str = "text"
    """Field (column) holding the document text."""
    messages_field: str = "messages"
    """`kind: chat` only: field (column) holding the conversation, a list of {role, content}."""
    id_field: Optional[str] = None
    """Field holding a stable id; None -> sha256 of the text (content id). `path` for .txt files."""
    url_field: Optional[str] = None
    """Field holding the document URL; None -> no url."""
    meta_fields: list[str] = field(default_factory=list)
    """Extra fields kept as a JSON object in `meta` (e.g. title, timestamp); absent ones are omitted."""
    txt_mode: Literal["file", "paragraphs", "chunks"] = "file"
    """For .txt: one document per file; `paragraphs`: one per block of non-blank lines (with the
    blank lines after it); `chunks`: one per run of whole lines of at most `txt_chunk_bytes`.
    Either split keeps every byte: a file's documents concatenated are its text (docs/ingest.md)."""
    txt_chunk_bytes: int = 1 << 16
    """For `txt_mode: chunks`: most UTF-8 bytes per document (a longer line is cut at this size)."""
    max_docs: Optional[int] = None
    """Stop after this many documents written (None -> all)."""
    on_bad_record: Literal["fail", "skip"] = "fail"
    """A bad record stops the stage naming file, line and rule (fail), or is counted and skipped."""
    on_bad_file: Literal["fail", "skip"] = "fail"
    """A file that breaks part-way (truncated/corrupt compressed stream or Parquet, unreadable) stops
    the stage (fail), or its records before the break are kept and the file is reported (skip)."""
    shard_mb: int = 256
    """Text (millions of characters) per shard: an input file with more is cut into several shards,
    `FILE.00000`, `FILE.00001`, ... Each shard is redone or reused as a whole (README "Shards")."""
    sample_docs: int = 0
    """For sample:// only: number of documents to generate (0 -> the generator's default)."""
    sample_seed: int = 0
    """For sample:// only: seed of the generator (same seed and Python version -> same corpus)."""

    def __post_init__(self) -> None:
        check_positive(self.max_docs, "max_docs")
        check_positive(self.shard_mb, "shard_mb")
        check(self.txt_chunk_bytes >= 16, "txt_chunk_bytes", f"must be >= 16, got {self.txt_chunk_bytes}")
        check_nonneg(self.sample_docs, "sample_docs")
        check_nonneg(self.sample_seed, "sample_seed")
        check(bool(self.uri), "uri", "must be a non-empty string")
        check(self.kind in kinds.KINDS, "kind",
              f"must be one of {', '.join(repr(k) for k in kinds.KINDS)}, got {self.kind!r}")
        check(not self.uri.startswith("sample://") or self.uri[9:] in SAMPLE_KINDS,
              "uri", f"sample corpora are sample://{'|'.join(SAMPLE_KINDS)}, got {self.uri!r}")
        chat_sample = self.uri == "sample://chat"
        check((self.kind == "chat") == chat_sample or not self.uri.startswith("sample://"), "kind",
              "sample://chat holds conversations: use it with kind: chat (and kind: chat with "
              f"conversation files or sample://chat), got kind {self.kind!r} with {self.uri!r}")
        check(self.kind != "chat" or self.format != "txt", "format",
              "kind: chat reads conversations from JSON lines or Parquet (a messages field), not .txt")


@dataclass
class SplitParams(Section):
    """Train/val split by a hash of the document id, decided once in `tokenize`."""

    val_fraction: float = 0.05
    """Expected share of each source's documents in val: a document is val when
    sha256(f"{seed}:{id}") read as a fraction of 2^64 is below this."""
    seed: int = 0
    min_val_docs: int = 1
    """Each source keeps at least this many val documents (its lowest id hashes), so a source of
    a few long documents (books) still has a val split; never its last train document. With
    `group_by`: this many val groups (every document of each), never the last group."""
    group_by: Optional[str] = None
    """What decides val together, so val never shares a group with train: null (each document on
    its own), `file` (the input file), `path:N` (the first N parts of the input file's path: its
    folder), `url_host` (the URL's host), or `meta:FIELD` (a `meta_fields` value, e.g. a book id).
    The hash is of (seed, group key); a document without a URL or that field is its own group."""

    def __post_init__(self) -> None:
        check(0.0 < self.val_fraction < 1.0, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        check_nonneg(self.min_val_docs, "min_val_docs")
        g = self.group_by
        check(g is None or g in ("file", "url_host") or (g.startswith("meta:") and len(g) > 5)
              or (g.startswith("path:") and g[5:].isdigit() and int(g[5:]) > 0), "group_by",
              f"must be null, file, path:N (N >= 1), url_host or meta:FIELD, got {g!r}")



@dataclass
class CleanBase(Section):
    """Cleaner switches and batching for `clean@SRC` (expensive, cached). No thresholds here.
    `clean.KIND` sections come from the kinds that have cleaners."""

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

    def __post_init__(self) -> None:
        check_nonneg(self.jobs, "jobs")
        check_positive(self.batch_docs, "batch_docs")
        check_positive(self.max_doc_chars, "max_doc_chars")


@dataclass
class FilterBase(Section):
    """Thresholds applied by `filter@SRC` to stored signals. `null` switches a rule off.
    `filter.KIND` sections come from the kinds."""

    enabled: bool = True
    """false: `filter@SRC` keeps every document (no rule runs), e.g. for curated text."""
    keep_rejects: bool = False
    """Also write rejected documents with their reason to data/rejects/SRC.parquet."""
    global_: GlobalFilter = field(default_factory=GlobalFilter)


def _with_kinds(name: str, base: type, attr: str) -> type:
    """`base` plus one field per source kind that defines `attr` (its section class)."""
    extra = [(k, getattr(mod, attr), field(default_factory=getattr(mod, attr)))
             for k, mod in kinds.KINDS.items() if hasattr(mod, attr)]
    cls = dataclasses.make_dataclass(name, extra, bases=(base,))
    cls.__module__, cls.__doc__ = __name__, base.__doc__
    return cls


CleanParams = _with_kinds("CleanParams", CleanBase, "CleanParams")
FilterParams = _with_kinds("FilterParams", FilterBase, "FilterParams")


@dataclass
class DedupParams(Section):
    """MinHash settings (signatures are computed in `clean@SRC`) and the `dedup` stage's choices."""

    ngram: int = 5
    """Words per shingle (read by `clean`: changing it recomputes signatures)."""
    num_perm: int = 128
    """MinHash slots per signature (read by `clean`; `dedup` checks the stored width)."""
    seed: int = 1
    """Seed of the MinHash hash functions (read by `clean`)."""
    exact: bool = True
    """Remove exact duplicates (same normalised text); false keeps them (to near dedup, if on,
    they are near duplicates of Jaccard 1)."""
    near: bool = True
    """Remove near duplicates (MinHash LSH); false skips it."""
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
    memory_mb: int = 1024
    """Memory for the band and hash records grouped at once: dedup partitions its on-disk
    records so that one partition fits (peak RSS follows this, not the corpus size)."""
    jobs: int = 0
    """Worker processes for band keys and partitions; 0 -> all cores (one process below 100k
    documents, where starting workers costs more than they save); same output for any value."""
    cross_source: bool = True
    """Also compare documents of different sources on their canonical signatures (the prose
    lines of the raw text, whatever the kind's cleaner did: `canonical.py`); within a source the
    cleaned-text signatures decide alone. Needs `near`."""
    cross_threshold: float = 0.8
    """Estimated canonical Jaccard at or above which two documents of different sources are
    near duplicates (its bands x rows are chosen like `threshold`'s)."""
    containment: bool = True
    """After the other passes, remove a survivor whose canonical prose is mostly contained in a
    survivor of another source (a chapter copied into a web page, the book in the Gutenberg
    source): `contain.py`. Needs `near`."""
    contain_threshold: float = 0.8
    """Estimated containment (share of the smaller document's sampled shingles that the larger
    one holds) at or above which the smaller is removed."""
    contain_min_samples: int = 20
    """Documents with fewer sampled shingles (1 in 8 of their view's: ~160 words of prose) are
    never judged contained, nor containers: too few samples to estimate from."""
    contain_max_docs: int = 32
    """A sampled shingle that more surviving documents share is common phrasing, not evidence of
    a copy: it is not counted (this also bounds the pairs each shingle makes)."""

    def __post_init__(self) -> None:
        check(1 <= self.ngram <= 64, "ngram", f"must be in [1, 64], got {self.ngram}")
        check(1 <= self.num_perm <= 1024, "num_perm", f"must be in [1, 1024], got {self.num_perm}")
        check_fraction(self.threshold, "threshold", open_low=True)
        check_fraction(self.cross_threshold, "cross_threshold", open_low=True)
        check_fraction(self.contain_threshold, "contain_threshold", open_low=True)
        check(self.contain_min_samples >= 1, "contain_min_samples", f"must be >= 1, got {self.contain_min_samples}")
        check(2 <= self.contain_max_docs <= 4096, "contain_max_docs",
              f"must be in [2, 4096], got {self.contain_max_docs}")
        check_positive(self.bands, "bands")
        check_positive(self.rows, "rows")
        check_fraction(self.false_negative_weight, "false_negative_weight")
        check_nonneg(self.max_examples, "max_examples")
        check(self.memory_mb >= 16, "memory_mb", f"must be >= 16, got {self.memory_mb}")
        check_nonneg(self.jobs, "jobs")
        b, r = self.bands or 1, self.rows or 1
        check(b * r <= self.num_perm, "bands",
              f"bands * rows must be <= num_perm ({self.num_perm}), got {b} * {r}")
        check(len(set(self.priority)) == len(self.priority), "priority",
              f"lists a source twice: {self.priority}")


@dataclass
class QualityParams(Section):
    """The learned quality score (`quality_model` trains it, `quality@SRC` scores every clean
    shard, `filter.global.min_quality_score` thresholds it): `data/quality_model.py`."""

    positive_kinds: list[str] = field(default_factory=lambda: ["wikipedia", "gutenberg"])
    """Sources of these kinds give the reference (positive) passages, from their clean shards."""
    negative_kinds: list[str] = field(default_factory=lambda: ["c4", "fineweb"])
    """Sources of these kinds give the raw web (negative) passages, from their ingested shards."""
    positives: Optional[list[str]] = None
    """The reference sources by name (their clean shards give the positive passages); null: every
    source of a `positive_kinds` kind. Named, a source added later never retrains the model. A
    name that is not in `sources` is skipped (`quality_sample` logs it): removing a source needs
    no edit here."""
    negatives: Optional[list[str]] = None
    """The raw web sources by name (their ingested shards give the negatives); null: every source
    of a `negative_kinds` kind."""
    sample_shards: int = 8
    """Passages come from each source's first this many shards: a new input file never retrains."""
    max_docs: int = 20_000
    """Passages per class at most (the lowest seeded hashes of passage keys: a bounded sample)."""
    chunk_chars: int = 4000
    """Documents are cut into passages of at most this many characters (books into many)."""
    holdout_fraction: float = 0.1
    """Share of passages (by seeded hash) held out for the reported accuracy."""
    ngram: int = 2
    """Word 1..ngram-grams are the features (DCLM's fastText uses uni- and bigrams)."""
    feature_bits: int = 18
    """Hashed feature buckets: 2^feature_bits weights (4 bytes each in the model file)."""
    max_chars: int = 20_000
    """Characters of a document read when scoring (and of a passage when training)."""
    epochs: int = 150
    """Full-batch Adam steps."""
    lr: float = 0.2
    l2: float = 1e-7
    """L2 penalty on the weights (per mean-loss unit)."""
    seed: int = 0
    batch_docs: int = 2048
    """Documents scored per batch (memory: ~60 bytes per feature per batch)."""
    eval_ngram: int = 13
    """Word n-gram length of the contamination guard: `quality@SRC` counts the n-grams a document
    shares with the eval prompts and multiple-choice items (`filter.global.max_eval_ngrams`)."""
    jobs: int = 0
    """Worker processes for scoring shards; 0 -> all cores (same output)."""

    def __post_init__(self) -> None:
        for key in ("sample_shards", "max_docs", "chunk_chars", "ngram", "max_chars", "epochs", "batch_docs",
                    "eval_ngram"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        check(8 <= self.feature_bits <= 26, "feature_bits", f"must be in [8, 26], got {self.feature_bits}")
        check(0.0 <= self.holdout_fraction < 1.0, "holdout_fraction",
              f"must be in [0, 1), got {self.holdout_fraction}")
        check_positive(self.lr, "lr")
        check_nonneg(self.l2, "l2")
        check_nonneg(self.jobs, "jobs")
        for key in ("positive_kinds", "negative_kinds"):
            for k in getattr(self, key):
                check(k in kinds.KINDS, key, f"{k!r} is not a source kind; kinds: {sorted(kinds.KINDS)}")
        both = sorted(set(self.positive_kinds) & set(self.negative_kinds))
        check(not both, "negative_kinds", f"{both} are also positive_kinds")
        for key in ("positives", "negatives"):
            names = getattr(self, key)
            check(names is None or len(set(names)) == len(names), key, f"lists a source twice: {names}")
        both = sorted(set(self.positives or []) & set(self.negatives or []))
        check(not both, "negatives", f"{both} are also positives")

    def reference_sources(self, kinds_of: dict[str, str]) -> tuple[list[str], list[str]]:
        """(positive sources, negative sources) in `sources` order: the named ones, or those of
        the positive / negative kinds. `kinds_of`: {source: kind}."""
        by_kind = ([s for s, k in kinds_of.items() if k in self.positive_kinds],
                   [s for s, k in kinds_of.items() if k in self.negative_kinds])   # both always read:
        named = (self.positives, self.negatives)                                  # both are declared
        return tuple(by_kind[i] if named[i] is None else [s for s in kinds_of if s in named[i]]
                     for i in (0, 1))


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
    sample_shards: int = 8
    """The sample is drawn from the first `sample_shards` shards of each source (in input-file
    order), so new files do not move the tokenizer; retraining is a params change."""
    character_coverage: float = 0.9995
    """Share of sample characters the vocab must cover; the rarest go to byte fallback."""
    model_type: Literal["bpe", "unigram"] = "bpe"
    num_threads: int = 1
    """Trainer threads. The model bytes depend on the thread count (measured), so it is a
    param, not the machine's core count; 0 -> all cores (then not reproducible across machines)."""

    def __post_init__(self) -> None:
        check(300 <= self.vocab_size <= 1 << 20, "vocab_size",
              f"must be in [300, 1048576] (265 fixed pieces + text), got {self.vocab_size}")
        check_positive(self.sample_chars, "sample_chars")
        check_positive(self.sample_shards, "sample_shards")
        for k, w in self.sample_weights.items():
            check(w >= 0, f"sample_weights.{k}", f"must be >= 0, got {w}")
        check(0.9 <= self.character_coverage <= 1.0, "character_coverage",
              f"must be in [0.9, 1], got {self.character_coverage}")
        check_nonneg(self.num_threads, "num_threads")


@dataclass
class TokenizeParams(Section):
    """`tokenize@SRC`: how the encode runs (the split is `split.*`). Output is the same for any value."""

    jobs: int = 0
    """Worker processes; 0 -> all cores, but at most one per 4 MiB of the source's text (a small
    source encodes in-process)."""

    def __post_init__(self) -> None:
        check_nonneg(self.jobs, "jobs")


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
    leakage_max_doc_freq: Optional[int] = 10
    """Train 13-grams found in more train documents than this are boilerplate (templates,
    licences) and never count as leakage; null counts every n-gram (`leakage.py`)."""
    leakage_min_share: float = 0.5
    """A val document overlaps train when at least this share of its 13-grams (and at least
    one) is in train; 0 -> a single shared 13-gram is enough (GPT-3's rule)."""

    def __post_init__(self) -> None:
        for k, w in self.weights.items():
            check(w >= 0, f"weights.{k}", f"must be >= 0, got {w}")
        check_positive(self.train_tokens, "train_tokens")
        check_nonneg(self.val_tokens, "val_tokens")
        check_fraction(self.tolerance, "tolerance")
        check_fraction(self.max_val_overlap, "max_val_overlap")
        check_positive(self.leakage_max_doc_freq, "leakage_max_doc_freq")
        check_fraction(self.leakage_min_share, "leakage_min_share")

