"""Curated text (issue #16, first item): the `text` kind cleans nothing and keeps every byte;
`filter.enabled`, `dedup.exact` and `dedup.near` switch those stages off as a whole."""
from __future__ import annotations

from pathlib import Path

import pytest

from llmpipe.data.clean import rules, signals
from llmpipe.data.clean.pipeline import clean_text, cleaner_names, process_batch
from llmpipe.params import CleanParams, DedupParams, FilterParams

from test_dedup import K, TABLES, run_reference, run_sharded


def test_text_kind_keeps_every_byte_and_has_only_global_signals():
    raw = "ROMEO:\r\nBut soft!   \n\n\n\n  What light\tthrough yonder window breaks?\x07\n"
    text, removed = clean_text(raw, "text", CleanParams())
    assert text == raw and all(v == 0 for v in removed.values())
    assert cleaner_names("text") == ["max_doc_chars", "whitespace"]
    cols = process_batch([raw], "text", CleanParams(), 5, 16, 1)
    assert cols["text"] == [raw] and cols["chars"] == [len(raw)]
    assert set(signals.signal_types("text")) == set(signals.signal_types("fineweb")) - {
        "terminal_punct_line_ratio", "newline_word_ratio"}
    # another kind with the same switches does clean that whitespace
    assert clean_text(raw, "fineweb", CleanParams())[0] != raw


def test_filter_enabled_false_runs_no_rule():
    assert rules.rules_for(FilterParams(), "text")  # the global rules apply by default
    off = FilterParams(enabled=False)
    assert rules.rules_for(off, "c4") == [] and rules.rules_for(off, "text") == []


@pytest.mark.parametrize("run", [run_reference, run_sharded], ids=["reference", "sharded"])
def test_dedup_exact_and_near_switch_off(tmp_path, run):
    def _run(tmp_path: Path, **kw) -> dict:
        rep, kept = run(tmp_path, TABLES, DedupParams(num_perm=K, priority=["wikipedia", "c4"], **kw))
        return {"rep": rep, **kept}

    both = _run(tmp_path / "both")
    assert both["rep"]["dropped_by_reason"] == {"exact_duplicate": 2, "near_duplicate": 1}
    no_near = _run(tmp_path / "no_near", near=False)
    assert no_near["rep"]["dropped_by_reason"] == {"exact_duplicate": 2, "near_duplicate": 0}
    assert "c-2" in no_near["c4"]  # the near copy stays
    no_exact = _run(tmp_path / "no_exact", exact=False)
    # exact copies are still near duplicates (Jaccard 1) of the kept one
    assert no_exact["rep"]["dropped_by_reason"]["exact_duplicate"] == 0
    assert no_exact["c4"] == both["c4"]
    none = _run(tmp_path / "none", exact=False, near=False)
    assert none["rep"]["docs_kept"] == none["rep"]["docs_in"] == 7
