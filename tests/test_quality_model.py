"""The learned quality score: hashed n-gram features, deterministic training (byte-identical model),
scoring shards (`quality@SRC`, reused when nothing changed), and `filter.global.min_quality_score`
over the stored scores (a threshold change never rescores)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _cleankit import clean_dir, clean_sources, doc_rows, docstrings, filter_params, write_ingested
from llmpipe.core.errors import UserError
from llmpipe.data import quality_model as qm
from llmpipe.data.quality_stage import passages, sample_passages, score_source, train_model
from llmpipe.params import FilterParams, QualityParams

SPAM = ("buy cheap best price deals online shop now click here free shipping discount casino bonus win "
        "login register cart checkout offer limited sale coupon code subscribe follow share like").split()
NAV = ["Home | Shop | Cart | Login", "Click here to subscribe!", "Copyright 2024 All rights reserved."]


def spam_page(k: int) -> str:
    rng = np.random.default_rng(k)
    lines = [" ".join(rng.choice(SPAM, size=int(rng.integers(8, 20)))) + rng.choice([".", "!", ""])
             for _ in range(int(rng.integers(6, 14)))]
    return "\n".join([NAV[k % 3], *lines, NAV[(k + 1) % 3]])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """ROOT/{ingested,clean}/{ref,web}: two shards each, ref = real prose (kind wikipedia), web =
    spam pages (kind c4). Only the first shard of each is sampled for training (sample_shards=1)."""
    root = tmp_path_factory.mktemp("quality")
    prose = docstrings()
    half = len(prose) // 2
    tables = {"ref": ("wikipedia", {"a.00000": prose[:half], "b.00000": prose[half:]}),
              "web": ("c4", {"x.00000": [spam_page(k) for k in range(120)],
                             "y.00000": [spam_page(k) for k in range(1000, 1120)]})}
    clean_sources(root, tables, num_perm=16)
    return root


PARAMS = QualityParams(sample_shards=1, feature_bits=14, epochs=60, max_docs=400, chunk_chars=1500)
KINDS = {"ref": "wikipedia", "web": "c4"}


def only_quality(threshold: float | None, kind: str) -> FilterParams:
    """Every rule off but filter.global.min_quality_score."""
    rules = [f for f in FilterParams().global_.__dataclass_fields__ if f.startswith(("min_", "max_"))]
    return filter_params(kind_off=kind, **{**{f"global__{f}": None for f in rules},
                                           "global__min_quality_score": threshold})


def test_features_are_means_of_hashed_ngrams_within_each_document():
    x = qm.features(["The cat sat.", "", "the CAT, sat", "dog"], ngram=2, feature_bits=10, max_chars=100)
    assert x.n == 4
    per_doc = np.bincount(x.row, weights=x.val, minlength=4)
    assert np.allclose(per_doc, [1, 0, 1, 1])                       # a mean: weights sum to 1
    assert np.bincount(x.row, minlength=4).tolist() == [5, 0, 5, 1]  # 3 words + 2 bigrams; no bigram across docs
    a, c = (sorted(x.col[x.row == d].tolist()) for d in (0, 2))
    assert a == c                                                    # normalised like dedup: case, punctuation
    assert 0 <= x.col.min() and x.col.max() < 1 << 10


def test_passages_cut_at_whitespace_and_keep_every_word():
    text = " ".join(f"word{k}" for k in range(500))
    ps = passages(text, 100)
    assert all(len(p) <= 100 for p in ps) and " ".join(ps) == text


def test_training_is_deterministic_and_separates_held_out_text(corpus, tmp_path):
    """Two runs give the same bytes; the unseen second shards are scored on the right side."""
    r1 = train_model(corpus / "clean", corpus / "ingested", KINDS, PARAMS, tmp_path / "m1")
    r2 = train_model(corpus / "clean", corpus / "ingested", KINDS, PARAMS, tmp_path / "m2")
    for f in (qm.WEIGHTS, qm.META):
        assert (tmp_path / "m1" / f).read_bytes() == (tmp_path / "m2" / f).read_bytes()
    assert r1 == r2 and r1["trained"] and r1["passages"]["positive"] == r1["passages"]["negative"] > 50
    assert r1["held_out_accuracy"] >= 0.9 and r1["held_out_auc"] >= 0.95
    model = qm.load(tmp_path / "m1")
    import pyarrow.parquet as pq
    unseen_ref = pq.read_table(corpus / "clean/ref/b.00000.parquet", columns=["text"]).column("text").to_pylist()
    unseen_web = pq.read_table(corpus / "clean/web/y.00000.parquet", columns=["text"]).column("text").to_pylist()
    assert (model.score(unseen_ref) > 0.5).mean() > 0.9 and (model.score(unseen_web) < 0.5).mean() > 0.9
    other = train_model(corpus / "clean", corpus / "ingested", KINDS,
                        QualityParams(**{**PARAMS.__dict__, "seed": 1}), tmp_path / "m3")
    assert (tmp_path / "m3" / qm.WEIGHTS).read_bytes() != (tmp_path / "m1" / qm.WEIGHTS).read_bytes()
    assert other["trained"]


def test_scores_feed_the_filter_and_a_threshold_sweep_never_rescores(corpus, tmp_path):
    train_model(corpus / "clean", corpus / "ingested", KINDS, PARAMS, tmp_path / "model")
    rep, how = score_source(corpus / "clean/web", tmp_path / "model", tmp_path / "q/web", source="web", params=PARAMS)
    assert rep["docs"] == 240 and how == "2 shard units: 2 built, 0 reused"
    assert sum(rep["histogram_0_to_1"]) == 240 and rep["quantiles"]["p50"] < 0.5
    inodes = {p.name: p.stat().st_ino for p in (tmp_path / "q/web").glob("*.npy")}
    _, how = score_source(corpus / "clean/web", tmp_path / "model", tmp_path / "q/web", source="web", params=PARAMS)
    assert how == "2 shard units: 0 built, 2 reused (workspace)"
    kept = {}
    for t in (None, 0.2, 0.5, 0.9):
        fp = only_quality(t, "c4")
        out = tmp_path / f"f-{t}"
        from llmpipe.data.clean.rules import filter_source
        frep, _ = filter_source(corpus / "clean/web", out, None, source="web", kind="c4", filter_params=fp,
                                jobs=1, quality_dir=tmp_path / "q/web")
        kept[t] = frep["docs_kept"]
        if t is not None:
            s = np.concatenate([np.load(tmp_path / f"q/web/{n}.npy") for n in ("x.00000", "y.00000")])
            codes = np.concatenate([np.load(out / f"{n}.npy") for n in ("x.00000", "y.00000")])
            assert frep["docs_kept"] == int((s >= t).sum())
            assert frep["dropped_by_reason"]["global_min_quality_score"] == int((s < t).sum())
            assert ((codes == 0) == (s >= t)).all()
    assert kept[None] == 240 and kept[0.2] >= kept[0.5] >= kept[0.9]
    assert inodes == {p.name: p.stat().st_ino for p in (tmp_path / "q/web").glob("*.npy")}  # never rescored


def test_untrained_model_scores_half_and_the_rule_refuses_it(corpus, tmp_path):
    rep = train_model(corpus / "clean", corpus / "ingested", {"ref": "wikipedia"}, PARAMS, tmp_path / "model")
    assert not rep["trained"] and "negatives from []" in rep["why"]
    score_source(corpus / "clean/ref", tmp_path / "model", tmp_path / "q/ref", source="ref", params=PARAMS)
    assert np.all(np.load(tmp_path / "q/ref/a.00000.npy") == 0.5)
    fp = only_quality(0.5, "wikipedia")
    from llmpipe.data.clean.rules import filter_source
    with pytest.raises(UserError, match="the quality model is untrained"):
        filter_source(corpus / "clean/ref", tmp_path / "f", None, source="ref", kind="wikipedia",
                      filter_params=fp, jobs=1, quality_dir=tmp_path / "q/ref")
    with pytest.raises(UserError, match="no quality model"):
        qm.load(tmp_path / "nothing")
    json.loads((tmp_path / "model" / qm.META).read_text())  # still a valid model file


def test_documents_holding_an_eval_item_are_dropped_under_their_own_reason(corpus, tmp_path):
    """A page quoting a multiple-choice item (context + a choice, 13+ words, other case and
    punctuation) is dropped as global_max_eval_ngrams; one holding a short prompt is not."""
    from llmpipe.data import contamination
    from llmpipe.data.clean.rules import filter_source
    task = tmp_path / "task.jsonl"
    item = {"context": "The committee that reviewed the old bridge over the river decided in the end that",
            "choices": ["it should be rebuilt in stone.", "nothing was wrong."], "label": 0}
    task.write_text(json.dumps(item) + "\n")
    prose = docstrings()[:3]
    texts = [prose[0] + "\n\nTHE COMMITTEE that reviewed the old bridge over the river -- decided, in the end, "
             "that it should be rebuilt in stone!\n\n" + prose[1], prose[1] + " The history of the " + prose[2], prose[2]]
    write_ingested(tmp_path / "ing", {"p.00000": doc_rows(texts, "p-", "page")}, "page")
    clean_dir(tmp_path / "ing", tmp_path / "clean", "c4", source="page", num_perm=16)
    train_model(corpus / "clean", corpus / "ingested", KINDS, PARAMS, tmp_path / "model")
    items = contamination.ngram_set(contamination.item_texts(["The history of the"], [task]), 13)
    assert len(items) > 0
    rep, _ = score_source(tmp_path / "clean", tmp_path / "model", tmp_path / "q", source="page", params=PARAMS,
                          eval_items=items)
    assert np.load(tmp_path / "q/p.00000.eval.npy").tolist()[1:] == [0, 0] and rep["docs_sharing_eval_ngrams"] == 1
    fp = only_quality(None, "c4")
    fp.global_.max_eval_ngrams = 0
    frep, _ = filter_source(tmp_path / "clean", tmp_path / "f", None, source="page", kind="c4", filter_params=fp,
                            jobs=1, quality_dir=tmp_path / "q")
    assert frep["dropped_by_reason"] == {"global_max_eval_ngrams": 1}
    assert np.load(tmp_path / "f/p.00000.npy").tolist()[0] != 0 and frep["docs_kept"] == 2


def test_named_reference_sources_keep_the_sample_when_a_source_is_added(corpus, tmp_path):
    """quality.positives / negatives pin the sample (and so the model): a new web source changes
    nothing; picked by kind (null), the same source adds negatives. Both pick today's sample."""
    import dataclasses
    import shutil
    root = tmp_path / "c"
    for stage in ("clean", "ingested"):
        shutil.copytree(corpus / stage, root / stage)
        shutil.copytree(corpus / stage / "web", root / stage / "web2")   # another web source, same files
    named = dataclasses.replace(PARAMS, positives=["ref", "gone"], negatives=["web"])  # "gone": not a source
    out = {}
    for label, params, kinds in (("kinds", PARAMS, KINDS), ("named", named, KINDS),
                                 ("kinds+web2", PARAMS, {**KINDS, "web2": "c4"}),
                                 ("named+web2", named, {**KINDS, "web2": "c4"})):
        info = sample_passages(root / "clean", root / "ingested", kinds, params, tmp_path / label)
        out[label] = ((tmp_path / label / "passages.parquet").read_bytes(), info)
    assert out["named"][0] == out["kinds"][0] == out["named+web2"][0] != out["kinds+web2"][0]
    assert out["named+web2"][1]["negative_sources"] == ["web"] and out["named+web2"][1]["named_but_absent"] == ["gone"]
    assert out["kinds+web2"][1]["negative_sources"] == ["web", "web2"]


def test_the_sample_is_linked_back_while_its_pinned_shards_and_params_are_unchanged(corpus, tmp_path):
    """quality_sample reruns whenever a source folder changes; with the same pinned shards (names
    and sha256) and params it links its previous files back instead of reading the shards again."""
    import dataclasses
    out = tmp_path / "s"
    first = sample_passages(corpus / "clean", corpus / "ingested", KINDS, PARAMS, out)
    ino = (out / "passages.parquet").stat().st_ino
    again = sample_passages(corpus / "clean", corpus / "ingested", KINDS, PARAMS, out)
    assert "reused" not in first and again.pop("reused") == "workspace" and again == first
    assert (out / "passages.parquet").stat().st_ino == ino                 # linked, not rewritten
    fresh = sample_passages(corpus / "clean", corpus / "ingested", KINDS, PARAMS, tmp_path / "fresh")
    assert (tmp_path / "fresh" / "passages.parquet").read_bytes() == (out / "passages.parquet").read_bytes()
    more = sample_passages(corpus / "clean", corpus / "ingested", KINDS, dataclasses.replace(PARAMS, sample_shards=2), out)
    assert "reused" not in more and more["negative"] > first["negative"]     # the second shards are read
    assert (out / "passages.parquet").stat().st_ino != ino


def test_eval_ngrams_are_compared_on_64_bit_hashes():
    """32-bit n-gram hashes collide ~S x I / 2^32 times over S corpus shingles and I item n-grams
    (23 false flags on the real samples against a 200-item task: bench/results/contamination.json)."""
    from llmpipe.data import contamination
    text = " ".join(f"w{k}" for k in range(200))
    items = contamination.ngram_set([text], 13)
    assert len(items) == 188 and int(items.max()) >= 1 << 32
    assert contamination.shared_ngrams([text[:400], "nothing here at all"], items, 13).tolist()[1] == 0
    assert contamination.shared_ngrams([text], items, 13).tolist() == [188]
