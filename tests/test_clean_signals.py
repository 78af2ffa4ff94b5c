"""Signals: exact values on tiny hand-computed documents."""
from __future__ import annotations

import pytest

from llmpipe.data.clean import signals


def test_tokens_strip_punctuation_and_lowercase():
    assert signals.tokens(["The", "cat,", "--", "(sat)", "Mr."]) == ["the", "cat", "sat", "mr"]


def test_top_ngram_share_counts_the_most_frequent_repeat():
    toks = "aa b aa b cc dd".split()            # 10 chars; "aa b" twice -> 2 * 3 chars
    out = signals.ngram_signals(toks)
    assert out["top_2gram_ratio"] == pytest.approx(6 / 10)
    assert out["top_3gram_ratio"] == 0.0       # every 3-gram once: no repetition
    assert out["dup_5gram_ratio"] == 0.0


def test_duplicated_ngram_share_counts_later_occurrences_only():
    first = "one two three four five".split()
    toks = first + ["six"] + first              # the second copy of the 5-gram is the repeat
    out = signals.ngram_signals(toks)
    total = sum(map(len, toks))
    assert out["dup_5gram_ratio"] == pytest.approx(sum(map(len, first)) / total)
    assert out["dup_6gram_ratio"] == 0.0
    assert signals.ngram_signals(["solo"]) == {k: 0.0 for k in out}


def test_overlapping_repeats_are_counted_once():
    toks = ["w"] * 12                           # every 5-gram after the first repeats
    out = signals.ngram_signals(toks)
    assert out["dup_5gram_ratio"] == pytest.approx(11 / 12)   # tokens 1..11 covered
    assert out["top_2gram_ratio"] == pytest.approx(11 * 2 / 12)


def test_compute_line_paragraph_and_quality_signals():
    text = "Hello world, said the cat.\nHello world, said the cat.\n\n- a bullet...\n#tag and ### more"
    s = signals.compute(text, text, "fineweb")
    assert s["lines"] == 4 and s["words"] == 17 and s["chars"] == len(text)
    assert s["dup_line_ratio"] == pytest.approx(1 / 4)
    assert s["dup_line_char_ratio"] == pytest.approx(len("Hello world, said the cat.") / len(text))
    assert s["dup_para_ratio"] == 0.0
    assert s["bullet_line_ratio"] == pytest.approx(1 / 4)
    assert s["ellipsis_line_ratio"] == pytest.approx(1 / 4)
    assert s["symbol_ratio"] == pytest.approx((4 + 1) / 17)   # 4 '#' + one '...'
    assert s["gopher_stopwords"] == 3                          # the, the, and
    assert s["terminal_punct_line_ratio"] == pytest.approx(3 / 4)
    assert s["newline_word_ratio"] == pytest.approx(4 / 17)
    assert s["alpha_word_ratio"] == pytest.approx(15 / 17)     # "-" and "###" have no letter


def test_empty_document_has_zero_signals_not_nan():
    s = signals.compute("", "", "c4")
    assert set(s) == set(signals.signal_types("c4"))
    assert all(v == 0 for v in s.values())


def test_c4_and_wikipedia_signals():
    raw = "Home\nAbout us\nShop | Blog | News\nA real sentence here. Another one! And a third?"
    s = signals.compute(raw, "A real sentence here. Another one! And a third? lorem ipsum {x}", "c4")
    assert s["nav_line_ratio"] == pytest.approx(3 / 4)
    assert s["sentence_count"] == 3
    assert s["lorem_ipsum_count"] == 1 and s["curly_brace_count"] == 2
    w = signals.compute("", "Intro sentence here.\n* item one\nShort name\nA full sentence ends.", "wikipedia")
    assert w["list_line_ratio"] == pytest.approx(2 / 4)
