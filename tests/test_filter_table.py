"""The filter engine: rule order, null switches, skip_global, accounting invariants, rejects,
the stage script, and params validation."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from _cleankit import BASE, clean_texts, filter_params, read_kept, read_shards, shard_names
from llmpipe.data.clean import rules
from llmpipe.data.clean.pipeline import clean_table
from llmpipe.data.table import write_docs
from llmpipe.params import CleanParams, FilterParams, ParamsError, load_params

GERMAN = ("Der alte Leuchtturm stand mehr als hundert Jahre lang am Rand des Hafens, und die "
          "Seeleute vertrauten seinem Licht in jeder Nacht. ") * 3


def test_first_failing_rule_wins_in_documented_order():
    fp = FilterParams()
    rs = rules.rules_for(fp, "c4")
    names = [r.reason for r in rs]
    assert names[0] == "c4_max_lorem_ipsum_count"                  # kind section first
    assert names.index("c4_min_alpha_ratio") < names.index("global_min_chars")
    assert names.index("global_min_words") < names.index("global_min_stopword_ratio") \
        < names.index("global_max_dup_line_ratio")
    table = pa.table({r.signal: [0.0] for r in rs})               # fails every min_ rule
    code = rules.apply_rules(table, rs)
    assert rs[code[0] - 1].reason == next(r.reason for r in rs if r.op == "min")


def test_null_switches_a_rule_off_and_skip_global_removes_it():
    fp = filter_params(global__min_words=None)
    assert "global_min_words" not in [r.reason for r in rules.rules_for(fp, "c4")]
    assert "global_max_words" not in [r.reason for r in rules.rules_for(FilterParams(), "gutenberg")]
    assert "global_max_words" in [r.reason for r in rules.rules_for(FilterParams(), "c4")]


def test_families_cover_every_rule():
    fams = {rules.family(r) for k in ("c4", "wikipedia", "gutenberg", "fineweb")
            for r in rules.rules_for(FilterParams(), k)}
    assert fams == {"length", "quality", "english", "repetition", "c4", "wikipedia", "gutenberg", "fineweb"}


def _clean(tmp_path, texts, kind="c4"):
    src = tmp_path / "in.parquet"
    write_docs(src, [{"id": f"d{i}", "source": "web", "text": t, "url": None, "meta": None}
                     for i, t in enumerate(texts)])
    out = tmp_path / "clean.parquet"
    clean_table(src, out, kind, CleanParams(batch_docs=2), ngram=5, num_perm=16, seed=1, jobs=1)
    return out


def test_filter_table_accounts_for_every_document(tmp_path):
    texts = [BASE, "Too short.", GERMAN, BASE + " Lorem ipsum dolor.", "Home\n" + BASE, ""]
    src = _clean(tmp_path, texts)
    fp = FilterParams(keep_rejects=True)
    rep = rules.filter_table(src, tmp_path / "mask.npy", tmp_path / "rej.parquet", "c4", fp,
                             batch_size=2)
    dropped = rep["dropped_by_reason"]
    assert rep["docs_in"] == 6 and rep["docs_kept"] == 2
    assert rep["docs_in"] == rep["docs_kept"] + sum(dropped.values())
    assert dropped["c4_max_lorem_ipsum_count"] == 1 and dropped["global_min_stopword_ratio"] == 1
    assert dropped["c4_min_sentence_count"] == 2                   # "Too short." and ""
    assert set(dropped) == {r.reason for r in rules.rules_for(fp, "c4")}  # zeros listed too
    clean = pq.read_table(src)
    assert rep["chars_in"] == sum(map(len, texts))
    assert rep["chars_after_clean"] == sum(clean.column("chars").to_pylist())
    assert rep["chars_in"] - rep["chars_after_clean"] == sum(rep["chars_removed_by_cleaner"].values())
    assert rep["chars_removed_by_cleaner"]["c4_terminal_punct"] == len("Home\n")
    assert rep["chars_after_clean"] == rep["chars_kept"] + sum(rep["chars_dropped_by_reason"].values())
    # the output is a decision, not a copy: one int16 reason code per clean row (0 kept)
    mask = np.load(tmp_path / "mask.npy", allow_pickle=False)
    assert mask.dtype == np.int16 and mask.shape == (6,)
    rs = rules.rules_for(fp, "c4")
    assert [rs[c - 1].reason if c else None for c in mask.tolist()] == [
        None, "c4_min_sentence_count", "global_min_stopword_ratio", "c4_max_lorem_ipsum_count", None,
        "c4_min_sentence_count"]
    kept = clean.filter(pa.array(rules.kept_mask(tmp_path, "mask")))
    assert kept.column("id").to_pylist() == ["d0", "d4"]
    assert kept.column("text").to_pylist() == [BASE, BASE]
    rej = pq.read_table(tmp_path / "rej.parquet")
    assert rej.column_names == [*clean.column_names, "reason"]
    assert dict(zip(rej.column("id").to_pylist(), rej.column("reason").to_pylist())) == {
        "d1": "c4_min_sentence_count", "d2": "global_min_stopword_ratio",
        "d3": "c4_max_lorem_ipsum_count", "d5": "c4_min_sentence_count"}


def test_filter_source_masks_every_shard_and_rejects_stay_a_stable_output(tmp_path):
    """filter@SRC over shards: a mask per clean shard; the rejects folder is always written (a
    stable DVC output), holding rows only with keep_rejects; a rerun reuses every shard."""
    texts = {"a.00000": [BASE, "Too short."], "a.00001": [GERMAN], "b.00000": ["Home\n" + BASE, ""]}
    clean = clean_texts(tmp_path, texts, params=CleanParams(batch_docs=2))
    rep, how = rules.filter_source(clean, tmp_path / "f", tmp_path / "rej", source="s", kind="c4",
                                   filter_params=FilterParams(), jobs=1)
    assert how == "3 shard units: 3 built, 0 reused"
    assert (rep["docs_in"], rep["docs_kept"]) == (5, 2)
    assert shard_names(tmp_path / "f") == list(texts)
    assert [len(np.load(tmp_path / "f" / f"{n}.npy")) for n in texts] == [2, 1, 2]
    assert read_kept(clean, tmp_path / "f", ["id"]).column("id").to_pylist() == ["d0", "d3"]
    assert sorted(p.name for p in (tmp_path / "rej").iterdir()) == ["manifest.json"]  # no rows kept
    assert shard_names(tmp_path / "rej") == list(texts)
    # keep_rejects: the rejected rows of every shard, with their reason
    rep2, _ = rules.filter_source(clean, tmp_path / "f", tmp_path / "rej", source="s", kind="c4",
                                  filter_params=FilterParams(keep_rejects=True), jobs=1)
    rej = read_shards(tmp_path / "rej", ["id", "reason"]).to_pydict()
    assert dict(zip(rej["id"], rej["reason"])) == {"d1": "c4_min_sentence_count", "d2": "global_min_stopword_ratio",
                                                   "d4": "c4_min_sentence_count"}
    assert rep2 == rep
    _, how = rules.filter_source(clean, tmp_path / "f", tmp_path / "rej", source="s", kind="c4",
                                 filter_params=FilterParams(keep_rejects=True), jobs=1)
    assert how == "3 shard units: 0 built, 3 reused (workspace)"


def test_missing_signal_column_is_a_clear_error(tmp_path):
    src = _clean(tmp_path, [BASE], kind="fineweb")
    with pytest.raises(ValueError, match=r"no signal column\(s\) \['curly_brace_count'"):
        rules.filter_table(src, tmp_path / "k.npy", None, "c4", FilterParams())


def test_apply_rules_threshold_boundaries_are_inclusive():
    rs = [rules.Rule("g_min_x", "x", "min", 2.0), rules.Rule("g_max_x", "x", "max", 4.0)]
    code = rules.apply_rules(pa.table({"x": [1.0, 2.0, 4.0, 5.0]}), rs)
    assert code.tolist() == [1, 0, 0, 2]


def _params_file(tmp_path, section: str, body: dict):
    data = yaml.safe_load(open("params.yaml"))
    data[section] = body
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("body, message", [
    ({"global": {"min_word": 5}}, "filter.global.min_word: unknown key"),
    ({"global": {"max_dup_line_ratio": 1.5}}, r"filter.global.max_dup_line_ratio: must be in \[0, 1\]"),
    ({"global": {"min_words": 10, "max_words": 5}}, "filter.global.min_words: must be <= max_words"),
    ({"c4": {"skip_global": ["max_word"]}}, "filter.c4.skip_global: 'max_word' is not a filter.global key"),
    ({"c4": {"min_sentence_count": -1}}, "filter.c4.min_sentence_count: must be >= 0"),
])
def test_filter_params_errors_name_the_key(tmp_path, body, message):
    with pytest.raises(ParamsError, match=message):
        load_params(_params_file(tmp_path, "filter", body))


def test_clean_params_errors_name_the_key(tmp_path):
    with pytest.raises(ParamsError, match="clean.c4.min_line_words: must be > 0"):
        load_params(_params_file(tmp_path, "clean", {"c4": {"min_line_words": 0}}))


def test_filter_stage_main_writes_report_and_tables(tmp_path, monkeypatch):
    import importlib
    src = clean_texts(tmp_path, [BASE, "Too short."], params=CleanParams(batch_docs=2), source="web")
    params = _params_file(tmp_path, "filter", {"keep_rejects": True})
    data = yaml.safe_load(params.read_text())
    data["sources"] = {"web": {"kind": "c4", "uri": "unused.jsonl"}}
    data["mix"]["weights"] = {}
    data["tokenizer"]["sample_weights"] = {}
    data["dedup"]["priority"] = []
    params.write_text(yaml.safe_dump(data))
    mod = importlib.import_module("stages.filter")
    rc = mod.main(["--source", "web", "--in", str(src), "--out", str(tmp_path / "f"),
                   "--report", str(tmp_path / "r.json"), "--rejects", str(tmp_path / "rej"),
                   "--params", str(params)])
    assert rc == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (rep["docs_in"], rep["docs_kept"]) == (2, 1)
    assert read_shards(tmp_path / "rej", ["reason"]).column("reason").to_pylist() == ["c4_min_sentence_count"]
    assert np.array_equal(read_kept(src, tmp_path / "f", ["id"]).column("id").to_numpy(zero_copy_only=False),
                          np.array(["d0"], dtype=object))
