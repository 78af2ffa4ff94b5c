"""Exact-dedup hashes and MinHash signatures, vectorised with numpy.

MinHash (Broder 1997, "On the resemblance and containment of documents"): for a document's set
of word n-gram shingles S and K independent hash functions h_k, the signature is
sig[k] = min over s in S of h_k(s); two documents agree on slot k with probability equal to the
Jaccard similarity of their shingle sets, so the fraction of agreeing slots estimates it.

How it is computed here, for a whole batch of documents at once (no per-shingle Python call):
  1. `normalize` each text (NFKC, lowercase, punctuation/symbols removed, single spaces) and
     join the batch into one UTF-8 byte buffer, documents separated by b"\\n".
  2. Every shingle is a contiguous byte range of that buffer (tokens are separated by exactly
     one space), so its 64-bit hash is a polynomial hash of the range, read off prefix sums in
     O(1): H[s, e) = (P[e] - P[s]) * R^-s + (e - s)  (mod 2^64), then mixed by the
     MurmurHash3 64-bit finaliser and cut to 32 bits. Stable across processes and machines.
  3. K hash functions h_k(x) = (a_k * x + b_k) mod 2^64, keeping the high 32 bits: the
     multiply-add-shift family of Dietzfelbinger (1996, "Universal hashing and k-wise
     independent random variables via integer arithmetic without primes"), strongly universal
     on 32-bit keys and free of the integer division that `mod p` costs. The high 32 bits are monotone in the 64-bit value, so the min is
     taken on 64-bit values and shifted once per document.
a_k, b_k come from blake2b(seed, k), not from a numpy generator, so a signature never changes
with the numpy version. Shapes: signatures (N, num_perm) uint32.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

EMPTY_SLOT = np.uint32(0xFFFFFFFF)  # every slot of the signature of a document with no words
_M64 = (1 << 64) - 1
_RADIX = (0x100000001B3 * 0x9E3779B1 | 1) & _M64  # odd 64-bit multiplier, polynomial hash
_RADIX_INV = pow(_RADIX, -1, 1 << 64)     # its inverse mod 2^64 (exists because it is odd)
_PUNCT = re.compile(r"[^\w\s]|_")         # punctuation, symbols, control chars, underscore
_BATCH_BYTES = 1 << 22                    # bytes of normalised text hashed per inner batch
_PERM_CELLS = 1 << 20                     # num_perm x shingles cells per permutation chunk


def _ascii_tables() -> tuple[bytes, bytes]:
    """bytes.translate tables doing for ASCII exactly what the regex path does (5x faster)."""
    table, delete = bytearray(range(256)), bytearray()
    for i in range(128):
        c = chr(i)
        if _PUNCT.match(c):
            delete.append(i)
        elif c.isspace():
            table[i] = 0x20            # includes \x1c-\x1f, which bytes.split() would not split on
        else:
            table[i] = ord(c.lower())
    return bytes(table), bytes(delete)


_ASCII_TABLE, _ASCII_DELETE = _ascii_tables()


def normalize(text: str) -> str:
    """NFKC, lowercase, punctuation and symbols removed, whitespace collapsed to single spaces."""
    if text.isascii():  # fast path, same result (NFKC is the identity on ASCII)
        return b" ".join(text.encode("ascii").translate(_ASCII_TABLE, _ASCII_DELETE).split()
                         ).decode("ascii")
    text = unicodedata.normalize("NFKC", _MARK_RUN.sub(_cap_marks, text)).lower()
    return " ".join(_PUNCT.sub("", text).split())


# NFKC sorts each run of combining marks by insertion (quadratic in the run's length): one
# "Zalgo" cluster of 40k marks cost ~90 ms per 100 KB. No language stacks more than a handful of
# marks on one letter, so the hashed view keeps the first MAX_MARK_RUN of a run (the stored text
# is untouched). The ranges are the combining diacritics blocks that such text uses.
MAX_MARK_RUN = 32
_MARK_RUN = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
                       "{%d,}" % (MAX_MARK_RUN + 1))


def _cap_marks(m: re.Match) -> str:
    return m.group(0)[:MAX_MARK_RUN]


def exact_hash(text: str) -> str:
    """Hex digest (32 chars) identifying the normalised text (exact duplicates share it)."""
    return _digest(normalize(text))


def _digest(norm: str) -> str:
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).hexdigest()


def perm_params(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), each (num_perm,) uint64, a odd; derived from blake2b so they never drift."""
    a = np.empty(num_perm, dtype=np.uint64)
    b = np.empty(num_perm, dtype=np.uint64)
    for k in range(num_perm):
        d = hashlib.blake2b(f"llmpipe-minhash:{seed}:{k}".encode(), digest_size=16).digest()
        a[k] = int.from_bytes(d[:8], "little") | 1
        b[k] = int.from_bytes(d[8:], "little")
    return a, b


class _Powers:
    """Growing tables R^j and R^-j mod 2^64 (uint64 products wrap, which is the modulus)."""

    def __init__(self) -> None:
        self.pow = np.ones(1, dtype=np.uint64)
        self.inv = np.ones(1, dtype=np.uint64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pow) < n:
            m = max(n, 2 * len(self.pow))
            with np.errstate(over="ignore"):
                self.pow = np.cumprod(np.full(m, _RADIX, dtype=np.uint64)) * np.uint64(_RADIX_INV)
                self.inv = np.cumprod(np.full(m, _RADIX_INV, dtype=np.uint64)) * np.uint64(_RADIX)
        return self.pow[:n], self.inv[:n]


_POWERS = _Powers()


def mix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 finaliser, in place on uint64: spreads every input bit over the output."""
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def shingle_hashes(norms: list[str], ngram: int, full: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes (as uint64) of every word n-gram of already-normalised texts; `full`: the
    whole 64-bit mixed hash (for exact n-gram lookups against a large set, where 32 bits collide:
    `contamination.py`).

    Returns (hashes (S,), doc (S,) int64 index into `norms`, non-decreasing). A text with fewer
    than `ngram` words yields one shingle of all its words; an empty text yields none.
    """
    buf = np.frombuffer("\n".join(norms).encode("utf-8"), dtype=np.uint8)
    if buf.size == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    sep = (buf == 0x20) | (buf == 0x0A)
    word = ~sep
    edge = np.diff(np.concatenate(([False], word, [False])).astype(np.int8))
    starts = np.flatnonzero(edge == 1)        # (T,) first byte of each token
    ends = np.flatnonzero(edge == -1)         # (T,) one past its last byte
    tok_doc = np.searchsorted(np.flatnonzero(buf == 0x0A), starts)  # (T,) document of each token
    counts = np.bincount(tok_doc, minlength=len(norms))
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # full n-grams: token i .. i+n-1 inside one document
    if len(starts) >= ngram:
        i = np.arange(len(starts) - ngram + 1)
        i = i[tok_doc[i] == tok_doc[i + ngram - 1]]
    else:
        i = np.empty(0, np.int64)
    s, e, d = starts[i], ends[i + ngram - 1], tok_doc[i]
    short = np.flatnonzero((counts > 0) & (counts < ngram))  # one shingle of all their words
    if short.size:
        s = np.concatenate((s, starts[first[short]]))
        e = np.concatenate((e, ends[first[short] + counts[short] - 1]))
        d = np.concatenate((d, short))
        order = np.argsort(d, kind="stable")
        s, e, d = s[order], e[order], d[order]
    rpow, rinv = _POWERS.get(len(buf) + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(buf) + 1, dtype=np.uint64)
        np.cumsum(buf.astype(np.uint64) * rpow[: len(buf)], out=prefix[1:])
        h = (prefix[e] - prefix[s]) * rinv[s]
        h += (e - s).astype(np.uint64)    # length mixed in, so "a" and "a\0" cannot collide
        h = mix64(h) if full else mix64(h) >> np.uint64(32)
    return h, d.astype(np.int64)


def _min_hash(h: np.ndarray, doc: np.ndarray, n_docs: int, a: np.ndarray,
              b: np.ndarray) -> np.ndarray:
    """(n_docs, K) uint32 signatures from shingle hashes h (S,) of documents doc (S,)."""
    k = len(a)
    out = np.full((k, n_docs), _M64, dtype=np.uint64)   # (K, N): reduceat runs on contiguous rows
    step = max(1, _PERM_CELLS // k)
    cells = np.empty((k, step), dtype=np.uint64)       # ~8 MB scratch, reused
    with np.errstate(over="ignore"):
        for lo in range(0, len(h), step):
            x, dd = h[lo: lo + step], doc[lo: lo + step]
            c = cells[:, : len(x)]
            np.multiply(a[:, None], x[None, :], out=c)   # (K, s)
            c += b[:, None]
            seg = np.flatnonzero(np.concatenate(([True], dd[1:] != dd[:-1])))
            mins = np.minimum.reduceat(c, seg, axis=1)   # (K, docs in chunk)
            ids = dd[seg]
            out[:, ids] = np.minimum(out[:, ids], mins)  # a document may span two chunks
    return np.ascontiguousarray((out >> np.uint64(32)).astype(np.uint32).T)


def signatures(texts: list[str], ngram: int, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (N, num_perm) uint32 of word `ngram`-shingles of normalised texts.

    A document with no words gets all slots EMPTY_SLOT (0xFFFFFFFF). Identical in every process.
    """
    return hashes_and_signatures(texts, ngram, num_perm, seed, with_exact=False)[1]


def hashes_and_signatures(texts: list[str], ngram: int, num_perm: int, seed: int,
                          with_exact: bool = True) -> tuple[list[str], np.ndarray]:
    """([exact_hash(t) for t in texts], signatures(texts, ...)), normalising each text once."""
    exact, out, _ = _signatures(texts, ngram, num_perm, seed, with_exact, None)
    return exact, out


def signatures_and_samples(texts: list[str], ngram: int, num_perm: int, seed: int,
                           sample_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(signatures(texts, ...), samples): `samples` (M,) uint64 = doc << 32 | h for every distinct
    shingle hash h of each text whose low `sample_bits` bits are 0 (1 in 2^sample_bits shingles),
    ascending. That is Broder's MOD_m sample (1997): the share of a's sampled shingles that b's
    sample also holds estimates the containment |a & b| / |a|, whatever the sizes of a and b
    (MinHash slots estimate Jaccard, which is ~0 for a chapter against its whole book)."""
    _, out, samples = _signatures(texts, ngram, num_perm, seed, False, sample_bits)
    return out, samples


def _signatures(texts, ngram, num_perm, seed, with_exact, sample_bits):
    if ngram < 1 or num_perm < 1:
        raise ValueError(f"ngram and num_perm must be >= 1, got {ngram}, {num_perm}")
    if len(texts) >= 1 << 32:
        raise ValueError(f"{len(texts)} texts in one call: at most 2^32")
    a, b = _perm_cache(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    exact: list[str] = []
    samples: list[np.ndarray] = []
    lo = 0
    while lo < len(texts):
        norms, size = [], 0
        while lo + len(norms) < len(texts) and (size < _BATCH_BYTES or not norms):
            norms.append(normalize(texts[lo + len(norms)]))
            size += len(norms[-1]) + 1
        if with_exact:
            exact += [_digest(t) for t in norms]
        h, d = shingle_hashes(norms, ngram)
        out[lo: lo + len(norms)] = _min_hash(h, d, len(norms), a, b)
        if sample_bits is not None:
            pick = (h & np.uint64((1 << sample_bits) - 1)) == 0
            samples.append(np.unique(((d[pick] + lo).astype(np.uint64) << np.uint64(32)) | h[pick]))
        lo += len(norms)
    return exact, out, (np.concatenate(samples) if samples else np.zeros(0, np.uint64))


_PERMS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _perm_cache(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    key = (num_perm, seed)
    if key not in _PERMS:
        _PERMS[key] = perm_params(num_perm, seed)
    return _PERMS[key]


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal slots along the last axis: an unbiased estimate of Jaccard similarity."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)
