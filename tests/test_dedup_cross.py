"""Cross-source near duplicates: the canonical view (`canonical.py`), its signatures written by
clean@SRC, and dedup's second pass over them, which links documents of different sources only."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _cleankit import clean_sources, dedup_status, filter_dir
from llmpipe.core.errors import UserError
from test_clean_linear import GROWTH_LIMIT, growth
from llmpipe.data import canonical
from llmpipe.data.dedup import dedup_sharded
from llmpipe.params import DedupParams, FilterParams

K = 64


def words(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"w{x}" for x in rng.integers(0, 100_000, size=n)]


def article(seed: int, list_seed: int | None = None) -> str:
    """A Wikipedia-like page: title, prose paragraphs under headings, and a block of list items
    (6 words, no end mark: the Wikipedia cleaner keeps them, C4's line rules drop them)."""
    prose = [" ".join(words(seed * 100 + k, 12)) + "." for k in range(8)]
    items = [" ".join(words((list_seed or seed) * 1000 + k, 6)) for k in range(14)]
    return "\n".join(["Title Of It", prose[0], prose[1], "", "Early life", prose[2], prose[3], "",
                      *items, "", "Career", prose[4], prose[5], prose[6], prose[7]])


def test_view_keeps_prose_lines_and_joins_hard_wrapped_ones():
    raw = ("Title\n\nA first line of prose that ends right here.\nEarly life\nshort line.\n"
           "This paragraph is hard wrapped over\nthree lines by a typesetter long\nago, and ends here.\n"
           "A list item of several words\n\nHome | About | Contact\n")
    assert canonical.view(raw) == ("A first line of prose that ends right here.\n"
                                   "This paragraph is hard wrapped over three lines by a typesetter long ago, and ends here.")
    # the same prose, re-wrapped, with CRLF, or already through C4's line rules: the same view
    unwrapped = raw.replace("over\nthree", "over three").replace("long\nago", "long ago")
    assert canonical.view(unwrapped.replace("\n", "\r\n")) == canonical.view(raw)
    c4_cleaned = "A first line of prose that ends right here.\n" + unwrapped.split("\n")[5]
    assert canonical.view(c4_cleaned) == canonical.view(raw)


def test_canonical_text_falls_back_to_the_raw_text_when_the_view_is_short():
    listing = "\n".join(" ".join(words(k, 6)) for k in range(30))  # no line ends a sentence
    assert canonical.view(listing) == ""
    assert canonical.canonical_text(listing) == listing
    a = canonical.signatures([listing, listing + "\nw1 w2 w3 w4 w5 w6", article(1)], 5, K, 1)
    assert (a[0] == a[1]).mean() > 0.8          # a list page still matches its copy ...
    assert (a[0] == a[2]).mean() < 0.1          # ... and nothing else through an empty view


def test_view_is_linear_in_a_run_of_hard_wrapped_lines():
    """A run of joined lines is collected as parts: 8x the lines costs ~8x, not 64x."""
    def make(n: int) -> str:
        return "\n".join(["one two three four five six"] * n)   # one run that never ends
    assert growth(canonical.view, make, 20_000) < GROWTH_LIMIT


def build(root: Path, tables: dict[str, tuple[str, dict[str, list[str]]]]) -> Path:
    """ROOT/{ingested,clean,filtered}/SRC through the real clean@SRC (the source's kind) and
    filter@SRC (rules off): {source: (kind, {shard: [text, ...]})}."""
    clean_sources(root, tables, num_perm=K)
    for src, (kind, _) in tables.items():
        filter_dir(root / "clean" / src, root / "filtered" / src, kind, FilterParams(enabled=False), src)
    return root


def corpus(root: Path) -> Path:
    page = article(1)
    copy = page.replace(words(100, 12)[3], "edited", 1)      # one word of the prose edited
    twin = article(1, list_seed=7)                             # the same prose, other list items
    return build(root, {
        "wiki": ("wikipedia", {"a.00000": [page, article(2)], "b.00000": [twin]}),
        "web": ("c4", {"x.00000": [article(3), copy], "y.00000": [article(4)]}),
    })


def test_cross_source_copy_is_found_whatever_each_cleaner_kept(tmp_path):
    """The C4 copy of a Wikipedia page: C4's cleaner drops its list and headings, Wikipedia's
    keeps them, so the cleaned signatures miss it; the canonical ones find it. The wiki twin with
    the same prose but other list items stays: within a source the cleaned text decides."""
    root = corpus(tmp_path)
    sources = ["wiki", "web"]
    off = dedup_sharded(root / "clean", root / "filtered", tmp_path / "off", sources,
                        DedupParams(num_perm=K, cross_source=False), cache_dir=tmp_path / "cache")
    assert off["docs_kept"] == off["docs_in"] == 6
    assert off["cross_source"]["enabled"] is False and off["cross_source"]["removed_by_source_pair"] == {}
    outs = {}
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):   # reference; bounded; bounded from the cache
        out = tmp_path / f"on-{cache is None}-{len(outs)}"
        rep = dedup_sharded(root / "clean", root / "filtered", out, sources, DedupParams(num_perm=K),
                            cache_dir=cache)
        assert dedup_status(out, root / "clean", "web").tolist() == [0, 2, 0]
        assert dedup_status(out, root / "clean", "wiki").tolist() == [0, 0, 0]
        assert rep["cross_source"]["removed_by_source_pair"] == {
            "web -> wiki": {"exact_duplicate": 0, "near_duplicate": 1}}
        assert (rep["candidate_pairs"], rep["verified_pairs"]) == (off["candidate_pairs"], 1)  # counts of the first pass
        outs[len(outs)] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.npy"))}
    assert outs[0] == outs[1] == outs[2]
    # the pair's estimated Jaccard on the cleaned texts is well below the threshold
    sig = {s: np.load(root / "clean" / s / f"{n}.minhash.npy") for s, n in (("wiki", "a.00000"), ("web", "x.00000"))}
    assert (sig["wiki"][0] == sig["web"][1]).mean() < 0.7


def test_cross_pass_without_canonical_signatures_says_what_to_rerun(tmp_path):
    root = corpus(tmp_path)
    man = root / "clean" / "web" / "manifest.json"
    m = json.loads(man.read_text())
    for unit in m["units"]:
        unit["files"] = {k: v for k, v in unit["files"].items() if not k.endswith(".canon.npy")}
    man.write_text(json.dumps(m))
    with pytest.raises(UserError, match=r"clean@web: shard x.00000 has no canonical signatures .*dvc repro clean@web"):
        dedup_sharded(root / "clean", root / "filtered", tmp_path / "out", ["wiki", "web"], DedupParams(num_perm=K),
                      cache_dir=tmp_path / "cache")
    rep = dedup_sharded(root / "clean", root / "filtered", tmp_path / "out", ["wiki", "web"],
                        DedupParams(num_perm=K, cross_source=False), cache_dir=tmp_path / "cache")
    assert rep["docs_kept"] == 6
