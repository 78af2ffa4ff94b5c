"""MinHash signatures and exact hashes: exact values against a plain-Python reference."""
from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from llmpipe.data import minhash
from llmpipe.data.minhash import EMPTY_SLOT, exact_hash, jaccard_estimate, normalize, signatures

M64 = (1 << 64) - 1
SRC = Path(__file__).resolve().parents[1] / "src"


def ref_signature(text: str, ngram: int, num_perm: int, seed: int) -> list[int]:
    """The documented algorithm, one shingle at a time with Python ints (no numpy)."""
    words = normalize(text).split()
    if not words:
        return [0xFFFFFFFF] * num_perm
    grams = [words[i:i + ngram] for i in range(max(1, len(words) - ngram + 1))]
    a, b = minhash.perm_params(num_perm, seed)
    sig = [M64] * num_perm
    for g in grams:
        data = " ".join(g).encode("utf-8")
        h = sum(byte * pow(minhash._RADIX, j, 1 << 64) for j, byte in enumerate(data)) & M64
        h = (h + len(data)) & M64
        for shift, mult in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53), (33, None)):
            h ^= h >> shift
            if mult:
                h = (h * mult) & M64
        x = h >> 32
        sig = [min(s, (int(ak) * x + int(bk)) & M64) for s, ak, bk in zip(sig, a, b)]
    return [s >> 32 for s in sig]


def test_normalize_exact_strings():
    assert normalize("  Hello,\tWORLD!!\n\nIt's  fine_tune. ") == "hello world its finetune"
    assert normalize("ﬁne Café — “quoted” ½") == "fine café quoted 12"
    assert normalize("a\x1fb\u00a0c\u2003d") == "a b c d"
    assert normalize("...!!!") == ""


def test_normalize_ascii_fast_path_matches_unicode_path():
    def slow(t):
        return " ".join(minhash._PUNCT.sub("", unicodedata.normalize("NFKC", t).lower()).split())
    every_ascii = "".join(chr(i) for i in range(128))
    assert normalize(every_ascii) == slow(every_ascii)
    for i in range(128):
        s = f"ab{chr(i)}cd {chr(i)}"
        assert normalize(s) == slow(s), repr(chr(i))


def test_exact_hash_ignores_case_punctuation_whitespace():
    h = exact_hash("The cat sat.")
    assert h == exact_hash("the   CAT, sat!") and len(h) == 32 and int(h, 16) >= 0
    assert h != exact_hash("The cat sat on the mat.")


@pytest.mark.parametrize("ngram", [1, 3, 5])
def test_signatures_match_reference(ngram):
    texts = ["The quick brown fox jumps over the lazy dog, again and again.",
             "Ünïcödé façade — naïve café, résumé!", "two words", "", "!!!",
             "one two three four five", "one two three four five six"]
    sig = signatures(texts, ngram=ngram, num_perm=16, seed=7)
    assert sig.shape == (len(texts), 16) and sig.dtype == np.uint32
    for row, text in zip(sig, texts):
        assert row.tolist() == ref_signature(text, ngram, 16, 7), text


def test_empty_and_short_documents():
    sig = signatures(["", "  ,. ", "Alpha beta", "alpha, BETA!"], ngram=5, num_perm=8, seed=1)
    assert (sig[0] == EMPTY_SLOT).all() and (sig[1] == EMPTY_SLOT).all()
    assert (sig[2] == sig[3]).all() and not (sig[2] == EMPTY_SLOT).any()


def test_batching_and_chunking_do_not_change_signatures(monkeypatch):
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{x}" for x in rng.integers(0, 50, size=n)) for n in range(0, 60)]
    full = signatures(texts, 3, 32, 5)
    monkeypatch.setattr(minhash, "_BATCH_BYTES", 50)      # many byte batches
    monkeypatch.setattr(minhash, "_PERM_CELLS", 32 * 7)    # documents span permutation chunks
    assert np.array_equal(signatures(texts, 3, 32, 5), full)
    single = np.concatenate([signatures([t], 3, 32, 5) for t in texts])
    assert np.array_equal(single, full)


def test_hashes_and_signatures_is_both_in_one_pass():
    texts = ["One text, here.", "", "another ONE text here"]
    hashes, sig = minhash.hashes_and_signatures(texts, 2, 16, 3)
    assert hashes == [exact_hash(t) for t in texts]
    assert np.array_equal(sig, signatures(texts, 2, 16, 3))


def test_seed_changes_signatures():
    t = ["some words that make a few shingles here"]
    assert not np.array_equal(signatures(t, 2, 16, 1), signatures(t, 2, 16, 2))


def test_estimate_tracks_true_jaccard():
    words = [f"tok{i}" for i in range(400)]
    edited = list(words)
    for i in range(0, 400, 40):               # 10 substitutions: 50 of 396 5-grams change
        edited[i] = f"new{i}"
    sets = [{" ".join(w[i:i + 5]) for i in range(len(w) - 4)} for w in (words, edited)]
    true = len(sets[0] & sets[1]) / len(sets[0] | sets[1])
    sig = signatures([" ".join(words), " ".join(edited)], 5, 256, 3)
    est = float(jaccard_estimate(sig[0], sig[1]))
    assert abs(est - true) < 0.1, (est, true)  # sd at 256 perms is ~0.02
    assert jaccard_estimate(sig[0], sig[0]) == 1.0


def test_signatures_identical_across_processes():
    texts = ["Déjà vu: the same text, hashed in another process.", "short", "",
             " ".join(f"w{i}" for i in range(300))]
    here = signatures(texts, 5, 64, 11).tobytes().hex()
    code = ("import sys; from llmpipe.data.minhash import signatures; "
            f"sys.stdout.write(signatures({texts!r}, 5, 64, 11).tobytes().hex())")
    for hashseed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hashseed,
                                  "PYTHONPATH": str(SRC)}).stdout
        assert out == here
