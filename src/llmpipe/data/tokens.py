"""Token files: one directory per token set (a source's `data/tokens/SRC`, or `data/mix`).

Per split (`train`, `val`) a directory holds:
    SPLIT.bin           flat token array, dtype uint16 if vocab <= 65536 else uint32; every
                        document is followed by EOS (id 3). `np.memmap(p, dtype, mode="r")`.
    SPLIT.idx           uint64, docs + 1 entries: document start offsets into SPLIT.bin, then the
                        total token count (so doc i is bin[idx[i]:idx[i+1]], EOS included).
    SPLIT.docs.parquet  one row per document, in .bin order: id, source, utf8_bytes (of the text,
                        for bits per byte).
    SPLIT.mask          (chat sources, and a mix holding one) uint8, one per token of SPLIT.bin:
                        1 where the token is a training target under `train.sft` (an assistant
                        turn's tokens and its <|end|>; every token of a non-chat document in a
                        mix), 0 elsewhere (system and user turns, markers, a chat document's EOS).
and, written last and atomically, `meta.json` (`data_meta.json` in data/mix): format, dtype,
vocab_size, eos_id, tokenizer_fingerprint (sha256 of spm.model), `rerun` (the stage that makes
it), and per split docs, tokens, utf8_bytes and each file's bytes + sha256.

Read with `open_tokens(dir, split, tokenizer=...)`; check with `verify_dir` / `llmpipe verify`.
Encoding a Document table into such a directory (`tokenize_source`) lives in encode.py.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmpipe.core.atomic import close_all, sha256_file
from llmpipe.data.table import TableWriter
from llmpipe.data.tokenizer import SPECIAL_IDS, Tokenizer, fingerprint

FORMAT = "llmpipe.tokens/1"  # the token-directory format name (not a module path): keep it
SPLITS = ("train", "val")
META_NAMES = ("meta.json", "data_meta.json")
DOCS_SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False),
                         pa.field("source", pa.string(), nullable=False),
                         pa.field("utf8_bytes", pa.int64(), nullable=False)])
CHUNK = 1 << 24  # tokens per chunk when scanning a .bin (32-64 MiB)
PROJECT_TOKENIZER = Path("artifacts/tokenizer/spm.model")  # what `llmpipe verify` checks by default


class TokenizerMismatch(UserError, ValueError):
    """Token files were made by another tokenizer than the one offered."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab <= 65536), else uint32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be > 0, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# --------------------------------------------------------------------------- writer

class SplitWriter:
    """Append documents to SPLIT.bin/.idx/.docs.parquet in `out_dir`, hashing as it goes (memory
    stays constant: the .idx offsets are written as the documents arrive, not kept).

    `out_dir` is the temp directory of an `atomic_path` (the token directory is the atomic unit).
    Use it as a context manager: on an exception every file is closed at once, so a full disk
    leaves no open handle behind to fail again (and print) when garbage-collected."""

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, stem: str | None = None,
                 mask: bool = False):
        self.dir, self.split, self.dtype = Path(out_dir), split, np.dtype(dtype)
        self.stem = stem or split  # file names STEM.bin/.idx/.docs.parquet (a shard: NAME.SPLIT)
        self.bin_sha, self.idx_sha, self.mask_sha = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
        self.docs = self.tokens = self.utf8_bytes = self.loss_tokens = 0
        self.mask = None  # STEM.mask: one uint8 per token (SFT loss mask), when asked for
        self.bin = open(self.dir / f"{self.stem}.bin", "wb")
        try:
            if mask:
                self.mask = open(self.dir / f"{self.stem}.mask", "wb")
            self.idx = open(self.dir / f"{self.stem}.idx", "wb")
            self._write_idx(np.zeros(1, np.uint64))
            self.table = TableWriter(self.dir / f"{self.stem}.docs.parquet", DOCS_SCHEMA).__enter__()
        except BaseException:
            close_all([f.close for f in (self.bin, self.mask, getattr(self, "idx", None)) if f is not None])
            raise

    def _write_idx(self, offsets: np.ndarray) -> None:
        self.idx.write(offsets.data)
        self.idx_sha.update(offsets.data)

    def add(self, tokens: np.ndarray, lengths: np.ndarray, utf8_bytes: np.ndarray,
            ids: list[str], sources: list[str], mask: np.ndarray | None = None) -> None:
        """tokens: (sum(lengths),) with EOS closing each doc; lengths, utf8_bytes: (docs,);
        mask: (sum(lengths),) 0/1, required when the writer was made with `mask=True`."""
        tokens = np.ascontiguousarray(tokens, dtype=self.dtype)
        assert len(tokens) == int(lengths.sum()) and len(ids) == len(lengths) == len(utf8_bytes)
        assert (mask is None) == (self.mask is None), "a mask writer takes a mask with every add"
        if mask is not None:
            mask = np.ascontiguousarray(mask, dtype=np.uint8)
            assert len(mask) == len(tokens)
            self.mask.write(mask.data)
            self.mask_sha.update(mask.data)
            self.loss_tokens += int(np.count_nonzero(mask))
        self.bin.write(tokens.data)
        self.bin_sha.update(tokens.data)
        self._write_idx(self.tokens + np.cumsum(lengths, dtype=np.uint64))
        self.docs += len(ids)
        self.tokens += len(tokens)
        self.utf8_bytes += int(np.sum(utf8_bytes))
        self.table.write({"id": ids, "source": sources, "utf8_bytes": np.asarray(utf8_bytes, np.int64)})

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        """Close every file even if one fails (a write buffered until close can hit a full disk);
        the docs table sees the first error, so its temp is removed instead of renamed."""
        if self.bin.closed and self.idx.closed:
            return
        err = close_all([self.bin.close, self.idx.close] + ([self.mask.close] if self.mask else []), exc)
        err = close_all([lambda: self.table.__exit__(type(err) if err else None, err, None)], err)
        if err is not None and err is not exc:
            raise err

    def close(self) -> dict:
        self._close()
        files = {"bin": (f"{self.stem}.bin", self.bin_sha.hexdigest()),
                 "idx": (f"{self.stem}.idx", self.idx_sha.hexdigest()),
                 "docs": (f"{self.stem}.docs.parquet", sha256_file(self.dir / f"{self.stem}.docs.parquet"))}
        extra = {}
        if self.mask is not None:
            files["mask"] = (f"{self.stem}.mask", self.mask_sha.hexdigest())
            extra["loss_tokens"] = self.loss_tokens  # tokens trained on under train.sft
        return {"docs": self.docs, "tokens": self.tokens, "utf8_bytes": self.utf8_bytes, **extra,
                "files": {k: {"name": name, "bytes": (self.dir / name).stat().st_size, "sha256": sha}
                          for k, (name, sha) in files.items()}}


def make_meta(tok: Tokenizer, dtype: np.dtype, splits: dict, rerun: str, kind: str, **extra) -> dict:
    """meta.json of a token directory; `kind` says what wrote it: "source" (tokenize@SRC, with
    `source`) or "mix" (the mix stage, with `sources`: each source's realised tokens)."""
    assert kind in ("source", "mix"), kind
    return {"format": FORMAT, "kind": kind, "dtype": np.dtype(dtype).name, "vocab_size": tok.vocab_size,
            "eos_id": tok.eos_id, "special_ids": dict(SPECIAL_IDS),
            "tokenizer_fingerprint": tok.fingerprint, "rerun": rerun, "splits": splits, **extra}


# --------------------------------------------------------------------------- reader

def read_meta(path: str | Path) -> tuple[Path, dict]:
    """(directory, meta) for a token directory or a .bin inside one."""
    d = Path(path)
    if d.is_file():
        d = d.parent
    for name in META_NAMES:
        if (d / name).exists():
            try:
                meta = json.loads((d / name).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise VerifyError(f"{d / name}: not valid JSON ({e}); rerun the stage that wrote it") from None
            missing = [k for k in ("format", "dtype", "splits") if not isinstance(meta, dict) or k not in meta]
            if missing:
                raise VerifyError(f"{d / name}: not a token-directory meta (missing {', '.join(missing)}); "
                                  "rerun the stage that wrote it")
            return d, meta
    raise FileNotFoundError(f"{d}: no meta.json or data_meta.json; not a token directory "
                            "(did you run `dvc repro tokenize` / `dvc repro mix`?)")


def check_fingerprint(meta: dict, tokenizer: str | Path | Tokenizer, where: str = "") -> None:
    """Raise TokenizerMismatch unless the token files were made with this tokenizer."""
    if isinstance(tokenizer, Tokenizer):
        fp, name = tokenizer.fingerprint, tokenizer.path
    else:
        name = Path(tokenizer) / "spm.model" if Path(tokenizer).is_dir() else Path(tokenizer)
        fp = fingerprint(name)
    if meta.get("tokenizer_fingerprint") != fp:
        raise TokenizerMismatch(
            f"{where or 'token files'}: made with tokenizer {str(meta.get('tokenizer_fingerprint'))[:12]}, "
            f"but the tokenizer given ({name}) is {fp[:12]}; rerun `{meta.get('rerun', 'dvc repro tokenize')}` "
            "(or `dvc repro` for the whole chain)")


@dataclass
class TokenFile:
    """One split of a token directory: memory-mapped tokens plus document offsets."""

    dir: Path
    split: str
    meta: dict
    tokens: np.ndarray   # (tokens,) uint16/uint32 memmap, read-only (a `Concat` of them when sharded)
    offsets: np.ndarray  # (docs + 1,) uint64
    docs_files: list[Path] | None = None  # the .docs.parquet files in order (sharded); None: SPLIT's
    mask: np.ndarray | None = None  # (tokens,) uint8 SFT loss mask (a `Concat` when sharded); None: no mask

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        """Tokens of document i, its closing EOS included."""
        return self.tokens[int(self.offsets[i]):int(self.offsets[i + 1])]

    @property
    def utf8_bytes(self) -> int:
        return int(self.meta["splits"][self.split]["utf8_bytes"])

    def doc_table(self, columns: list[str] | None = None) -> pa.Table:
        """id, source, utf8_bytes per document (or only `columns`), in .bin order. Every document's
        row: to look up a few documents of a big token set, use `take_rows`."""
        if self.docs_files is None:
            return pq.read_table(self.dir / f"{self.split}.docs.parquet", columns=columns)
        schema = DOCS_SCHEMA if columns is None else pa.schema([DOCS_SCHEMA.field(c) for c in columns])
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in self.docs_files]) \
            if self.docs_files else schema.empty_table()

    def doc_bytes(self) -> np.ndarray:
        """(docs,) int64 UTF-8 bytes of each document's text (bits per byte of any subset)."""
        return self.doc_table(["utf8_bytes"]).column("utf8_bytes").to_numpy()

    def take_rows(self, docs: np.ndarray, columns: list[str]) -> pa.Table:
        """The doc-table rows of documents `docs` (any order, repeats allowed), reading only the
        shards they lie in, one at a time: memory follows len(docs), not the token set's size."""
        docs = np.asarray(docs, dtype=np.int64)
        if not len(docs):
            return pa.schema([DOCS_SCHEMA.field(c) for c in columns]).empty_table()
        if self.docs_files is None:
            return self.doc_table(columns).take(pa.array(docs))
        counts = [int(sh["splits"][self.split]["docs"]) for sh in self.meta["shards"]]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        order = np.argsort(docs, kind="stable")
        shard_of = np.searchsorted(starts, docs[order], side="right") - 1
        parts = []
        for k in np.unique(shard_of).tolist():
            local = docs[order][shard_of == k] - starts[k]
            parts.append(pq.read_table(self.docs_files[k], columns=columns).take(pa.array(local)))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return pa.concat_tables(parts).take(pa.array(inverse))


def memmap_tokens(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.stat().st_size == 0:  # np.memmap refuses empty files
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def open_tokens(path: str | Path, split: str, tokenizer: str | Path | Tokenizer | None = None) -> TokenFile:
    """Open SPLIT of a token directory; with `tokenizer`, refuse files made by another one.
    A sharded source directory (meta `shards`) opens as one TokenFile over all its shards in order."""
    d, meta = read_meta(path)
    if split not in meta["splits"]:
        raise UserError(f"{d}: no split {split!r}; has {sorted(meta['splits'])}")
    if tokenizer is not None:
        check_fingerprint(meta, tokenizer, str(d))
    dtype = np.dtype(meta["dtype"])
    if "shards" not in meta:
        tokens = memmap_tokens(d / f"{split}.bin", dtype)
        offsets = np.fromfile(d / f"{split}.idx", dtype=np.uint64)
        mask = memmap_tokens(d / f"{split}.mask", np.uint8) if "mask" in meta["splits"][split]["files"] else None
        return TokenFile(dir=d, split=split, meta=meta, tokens=tokens, offsets=offsets, mask=mask)
    infos = [sh["splits"][split] for sh in meta["shards"]]
    parts = [memmap_tokens(d / i["files"]["bin"]["name"], dtype) for i in infos]
    mask = None
    if infos and all("mask" in i["files"] for i in infos):
        mask = Concat([memmap_tokens(d / i["files"]["mask"]["name"], np.uint8) for i in infos], np.uint8)
    offs, base = [np.zeros(1, np.uint64)], 0
    for i in infos:
        o = np.fromfile(d / i["files"]["idx"]["name"], dtype=np.uint64)
        offs.append(o[1:] + np.uint64(base))
        base += int(o[-1]) if len(o) else 0
    docs = [d / i["files"]["docs"]["name"] for i in infos]
    return TokenFile(dir=d, split=split, meta=meta, tokens=Concat(parts, dtype), offsets=np.concatenate(offs),
                     docs_files=docs, mask=mask)


class Concat:
    """The token arrays of a sharded directory read as one (no copy): len, slices and integer
    (array) indexing, as the readers of a TokenFile use them."""

    def __init__(self, parts: list[np.ndarray], dtype: np.dtype):
        self.parts, self.dtype = parts, np.dtype(dtype)
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def view(self, _cls=None) -> "Concat":
        return self

    def __array__(self, dtype=None, copy=None):
        return self[0:len(self)] if dtype is None else self[0:len(self)].astype(dtype)

    def __getitem__(self, key):
        if isinstance(key, slice):
            lo, hi, step = key.indices(len(self))
            if step != 1:
                raise IndexError("Concat: slices with a step are not supported")
            if hi <= lo:
                return np.zeros(0, self.dtype)
            a = int(np.searchsorted(self.starts, lo, side="right")) - 1
            b = int(np.searchsorted(self.starts, hi, side="left"))
            out = [np.asarray(self.parts[k][max(lo - self.starts[k], 0): min(hi, self.starts[k + 1]) - self.starts[k]])
                   for k in range(a, b)]
            return out[0] if len(out) == 1 else np.concatenate(out)
        idx = np.asarray(key, dtype=np.int64)
        if ((idx < -len(self)) | (idx >= len(self))).any():
            raise IndexError(f"index out of range for {len(self)} tokens")
        idx = np.where(idx < 0, idx + len(self), idx)
        if idx.ndim == 0:
            k = int(np.searchsorted(self.starts, int(idx), side="right")) - 1
            return self.parts[k][int(idx) - self.starts[k]]
        k = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty(idx.shape, self.dtype)
        for part in np.unique(k):
            sel = k == part
            out[sel] = np.asarray(self.parts[part])[idx[sel] - self.starts[part]]
        return out


# --------------------------------------------------------------------------- verify, stats

class VerifyError(UserError, ValueError):
    """The first problem found in a token directory."""


def _verify_split(d: Path, meta: dict, split: str) -> None:
    if "shards" not in meta:
        _verify_files(d, meta, meta["splits"][split], split)
        return
    sums = {"docs": 0, "tokens": 0, "utf8_bytes": 0}
    for sh in meta["shards"]:
        info = sh["splits"][split]
        _verify_files(d, meta, info, f"{sh['name']}.{split}")
        for k in sums:
            sums[k] += info[k]
    want = {k: meta["splits"][split][k] for k in sums}
    if sums != want:
        raise VerifyError(f"{d}: the {split} shards add up to {sums}, the meta says {want}")


def _verify_files(d: Path, meta: dict, info: dict, stem: str) -> None:
    """Check one set of STEM.bin/.idx/.docs.parquet against its meta entry `info`."""
    dtype = np.dtype(meta["dtype"])
    for key, f in info["files"].items():
        p = d / f["name"]
        if not p.exists():
            raise VerifyError(f"{p}: missing")
        if p.stat().st_size != f["bytes"]:
            raise VerifyError(f"{p}: {p.stat().st_size} bytes, meta says {f['bytes']} (truncated or rewritten)")
    if dtype != token_dtype(meta["vocab_size"]):
        raise VerifyError(f"{d}: dtype {dtype} but vocab {meta['vocab_size']} needs {token_dtype(meta['vocab_size'])}")
    bin_p, idx_p = d / info["files"]["bin"]["name"], d / info["files"]["idx"]["name"]
    if info["files"]["bin"]["bytes"] != info["tokens"] * dtype.itemsize:
        raise VerifyError(f"{bin_p}: size is not tokens x {dtype.itemsize} bytes")
    tokens = memmap_tokens(bin_p, dtype)
    off = np.fromfile(idx_p, dtype=np.uint64).astype(np.int64)
    if len(off) != info["docs"] + 1 or off[0] != 0 or off[-1] != info["tokens"]:
        raise VerifyError(f"{idx_p}: expected {info['docs'] + 1} offsets from 0 to {info['tokens']}")
    if len(off) > 1 and not np.all(np.diff(off) > 0):
        bad = int(np.argmin(np.diff(off) > 0))
        raise VerifyError(f"{idx_p}: offsets not increasing at document {bad}")
    eos, n_eos = meta["eos_id"], 0
    for lo in range(0, len(tokens), CHUNK):
        chunk = np.asarray(tokens[lo:lo + CHUNK])
        if chunk.size and int(chunk.max()) >= meta["vocab_size"]:
            raise VerifyError(f"{bin_p}: token {int(chunk.max())} >= vocab {meta['vocab_size']} "
                              f"near offset {lo + int(chunk.argmax())}")
        n_eos += int(np.count_nonzero(chunk == eos))
    if len(off) > 1:
        ends = np.asarray(tokens[off[1:] - 1])
        if not np.all(ends == eos):
            bad = int(np.argmin(ends == eos))
            raise VerifyError(f"{bin_p}: document {bad} does not end with EOS ({eos})")
    if n_eos != info["docs"]:
        raise VerifyError(f"{bin_p}: {n_eos} EOS tokens for {info['docs']} documents")
    if "mask" in info["files"]:
        _verify_mask(d / info["files"]["mask"]["name"], info, off)
    if pq.ParquetFile(d / info["files"]["docs"]["name"]).metadata.num_rows != info["docs"]:
        raise VerifyError(f"{d / info['files']['docs']['name']}: row count != {info['docs']} documents")
    for key, f in info["files"].items():
        if sha256_file(d / f["name"]) != f["sha256"]:
            raise VerifyError(f"{d / f['name']}: sha256 differs from meta (corrupted or edited)")


def _verify_mask(path: Path, info: dict, off: np.ndarray) -> None:
    """A loss mask: one 0/1 byte per token, `loss_tokens` ones."""
    if info["files"]["mask"]["bytes"] != info["tokens"]:
        raise VerifyError(f"{path}: {info['files']['mask']['bytes']} bytes for {info['tokens']} tokens (one per token)")
    ones = 0
    m = memmap_tokens(path, np.uint8)
    for lo in range(0, len(m), CHUNK):
        chunk = np.asarray(m[lo:lo + CHUNK])
        if chunk.size and int(chunk.max()) > 1:
            raise VerifyError(f"{path}: value {int(chunk.max())} near offset {lo + int(chunk.argmax())}; a mask holds 0 or 1")
        ones += int(np.count_nonzero(chunk))
    if ones != info.get("loss_tokens", ones):
        raise VerifyError(f"{path}: {ones} masked-in tokens, meta says loss_tokens {info['loss_tokens']}")


def verify_dir(path: str | Path, tokenizer: str | Path | Tokenizer | None = None) -> dict:
    """Check a token directory (or one .bin's split); raise VerifyError naming the first problem."""
    d, meta = read_meta(path)
    if meta.get("format") != FORMAT:
        raise VerifyError(f"{d}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if tokenizer is not None:
        try:
            check_fingerprint(meta, tokenizer, str(d))
        except TokenizerMismatch as e:
            raise VerifyError(str(e)) from None
    p = Path(path)
    splits = [p.name[:-4].rsplit(".", 1)[-1]] if p.is_file() and p.suffix == ".bin" else list(meta["splits"])
    for split in splits:
        if split not in meta["splits"]:
            raise VerifyError(f"{p}: not a split listed in the meta")
        _verify_split(d, meta, split)
    return meta


def verify_path(path: str, tokenizer: str | None = None) -> int:
    """`llmpipe verify PATH`: 0 and an OK line, or 1 and the first problem.

    `tokenizer`: an spm.model (or its directory) the fingerprint must match; None: the project's,
    PROJECT_TOKENIZER under the current directory (the repo root), when it exists; "none": skip.
    """
    if tokenizer is None:
        tokenizer = str(PROJECT_TOKENIZER) if PROJECT_TOKENIZER.exists() else None
        unchecked = f"no {PROJECT_TOKENIZER} in the current directory, pass --tokenizer PATH"
    else:
        tokenizer = None if tokenizer.lower() == "none" else tokenizer
        unchecked = "--tokenizer none"
    try:
        meta = verify_dir(path, tokenizer)
    except VerifyError as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    parts = ", ".join(f"{s}: {v['docs']:,} docs {v['tokens']:,} tokens" for s, v in meta["splits"].items())
    fp = meta["tokenizer_fingerprint"][:12]
    tok = f"tokenizer {fp} (= {tokenizer})" if tokenizer else \
        f"tokenizer {fp} (not checked: {unchecked}; only meta.json's own sha256s were checked)"
    print(f"OK {path}: {meta['dtype']}, vocab {meta['vocab_size']}, {tok}; {parts}")
    return 0


def stats(path: str | Path) -> dict:
    """Counts per split and, for a mix, each source's share of the tokens."""
    d, meta = read_meta(path)
    out = {"dir": str(d), "dtype": meta["dtype"], "vocab_size": meta["vocab_size"],
           "tokenizer_fingerprint": meta["tokenizer_fingerprint"], "splits": {}}
    for split, v in meta["splits"].items():
        row = {k: v[k] for k in ("docs", "tokens", "utf8_bytes")}
        row["bytes_per_token"] = round(v["utf8_bytes"] / v["tokens"], 4) if v["tokens"] else None
        if meta.get("kind", "mix" if "sources" in meta else "source") == "mix":  # per source realised
            toks = {s: m[split]["tokens"] for s, m in meta["sources"].items()}
        else:
            toks = {meta.get("source", d.name): v["tokens"]}
        total = sum(toks.values())
        row["sources"] = {s: {"tokens": t, "share": round(t / total, 6) if total else 0.0} for s, t in toks.items()}
        out["splits"][split] = row
    return out


def stats_path(path: str, as_json: bool = False) -> int:
    """`llmpipe stats PATH`: a table (or JSON) of counts and per-source shares."""
    s = stats(path)
    if as_json:
        print(json.dumps(s, indent=2, sort_keys=True))
        return 0
    print(f"{s['dir']}: {s['dtype']}, vocab {s['vocab_size']:,}, tokenizer {s['tokenizer_fingerprint'][:12]}")
    print(f"{'split':<6} {'source':<12} {'docs':>12} {'tokens':>14} {'share':>7} {'bytes/tok':>9}")
    for split, row in s["splits"].items():
        print(f"{split:<6} {'(all)':<12} {row['docs']:>12,} {row['tokens']:>14,} {1:>7.1%} "
              f"{row['bytes_per_token'] or 0:>9.3f}")
        for src, v in row["sources"].items():
            print(f"{'':<6} {src:<12} {'':>12} {v['tokens']:>14,} {v['share']:>7.1%}")
    return 0
