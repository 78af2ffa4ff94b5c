"""What every source kind shares: the `filter.global` rules and the base of a kind's own filter
section (`filter.KIND`), whose `skip_global` names global rules the kind does not apply."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from llmpipe.core.config import Section, check, check_thresholds


@dataclass
class GlobalFilter(Section):
    """`filter.global`: rules for every source kind. Field order = rule order (first failing
    rule is the drop reason, `global_<field>`). Each threshold compares the signal named by the
    rest of the field: `min_X` keeps X >= value, `max_X` keeps X <= value; null = rule off."""

    unbounded_ratios: ClassVar[tuple[str, ...]] = ("symbol_ratio",)  # '#' and '...' per word

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
    # learned (quality_model / quality@SRC: data/quality_model.py)
    min_quality_score: Optional[float] = None
    """The learned quality score (0-1: reference-like text vs raw web, GPT-3 / DCLM style);
    null = off. Scores are stored per shard by `quality@SRC`, so a sweep never rescores."""
    # contamination guard (quality@SRC: data/contamination.py)
    max_eval_ngrams: Optional[int] = None
    """Word n-grams (`quality.eval_ngram`, 13) a document may share with the eval prompts and
    multiple-choice items; 0 drops every document holding one (reason `global_max_eval_ngrams`),
    null = off (the counts are still in reports/quality/SRC.json)."""

    def __post_init__(self) -> None:
        check_thresholds(self)



@dataclass
class KindFilter(Section):
    """Base of `filter.KIND`: the kind's own thresholds (checked before the global rules, reason
    `KIND_<field>`, in field order) and the global rules it skips."""

    skip_global: list[str] = field(default_factory=list)
    """filter.global keys not applied to this kind."""

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(GlobalFilter)}
        for k in self.skip_global:
            check(k in names, "skip_global", f"{k!r} is not a filter.global key; keys: {sorted(names)}")
        check_thresholds(self)
