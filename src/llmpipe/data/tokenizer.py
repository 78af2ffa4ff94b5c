"""SentencePiece BPE tokenizer: deterministic training sample, training, loading, encoding, stats.

Output contract of the `tokenizer` stage (`artifacts/tokenizer/`):
    spm.model       the SentencePiece model (its sha256 is the tokenizer *fingerprint*)
    spm.vocab       piece<TAB>score per line, for humans
    tokenizer.json  vocab_size, special ids, fingerprint, training-sample counts and, per source,
                    fertility (tokens per whitespace word), bytes per token, byte-fallback share

Special ids are fixed whatever the vocab: pad=0, unk=1, bos=2, eos=3 (`SPECIAL_IDS`), then the
chat markers `<|system|>`=4, `<|user|>`=5, `<|assistant|>`=6, `<|end|>`=7 (`chat.CHAT_IDS`,
reserved in every tokenizer, so a pretrained model and its chat SFT share one; user-defined
pieces: read as one token wherever they appear in text); "\\n" is a user-defined piece too
(id 8) so newlines never cost a byte-fallback token. Normalisation is `identity`, extra
whitespace is kept and no dummy "▁" is put before a text, so the ids are the text's bytes and
nothing else: `decode(encode(text)) == text` for any UTF-8 text, and a text cut at line ends
encodes to the same ids as the whole (`encode(a) + encode(b) == encode(a + b)` when `a` ends in
"\\n"). Without that, every document would start with a "▁" that is not in it, and the pieces,
learnt from lines that each got a leading "▁", would not match a word after a newline
(`▁BAPTISTA` learnt, `B,APT,ISTA` encoded). Control pieces (`</s>`) are never read from text:
the EOS between documents is only ever the one `encode.py` adds.

Load it back with `load("artifacts/tokenizer/spm.model") -> Tokenizer`.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import sentencepiece as spm

from llmpipe.core.atomic import atomic_path, sha256_file, write_json
from llmpipe.data.table import missing_input, read_batches
from llmpipe.core import workers
from llmpipe.core.log import get_logger, n
from llmpipe.core.seeds import unit_hash
from llmpipe.data.chat import CHAT_IDS, CHAT_PIECES
from llmpipe.data.weights import shares

log = get_logger("tokenizer")

SPECIAL_IDS = {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
NEWLINE_PIECE = "\n"
# SentencePiece silently drops training sentences longer than max_sentence_length bytes; we
# raise the limit and cut longer lines ourselves (at whitespace), counting every cut.
MAX_SENTENCE_BYTES = 16384
STATS_CHARS_PER_SOURCE = 2_000_000  # text per source used for fertility stats (sample prefix)


def fingerprint(spm_path: str | Path) -> str:
    """The tokenizer fingerprint: sha256 of the spm.model bytes."""
    return sha256_file(spm_path)


# --------------------------------------------------------------------------- training sample

def sample_budgets(sources: list[str], weights: dict[str, float], sample_chars: int) -> dict[str, int]:
    """Characters to sample per source: `sample_chars` split by `weights` (empty -> equal)."""
    return {s: int(sample_chars * f) for s, f in shares(weights, sources, "tokenizer.sample_weights").items()}


class SentenceFeed:
    """Turn documents into SentencePiece training sentences (non-empty lines), counting cuts."""

    def __init__(self, max_bytes: int = MAX_SENTENCE_BYTES):
        self.max_chars = max_bytes // 4  # a UTF-8 character is at most 4 bytes
        self.docs = self.sentences = self.chars = self.cut_lines = 0

    def __call__(self, texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            self.docs += 1
            self.chars += len(text)
            for line in text.split("\n"):
                if not line.strip():
                    continue
                if len(line) > self.max_chars:
                    self.cut_lines += 1
                    yield from self._cut(line)
                else:
                    self.sentences += 1
                    yield line

    def _cut(self, line: str) -> Iterator[str]:
        while line:
            piece = line[: self.max_chars]
            if len(line) > self.max_chars:
                space = piece.rfind(" ")
                piece = piece[:space] if space > 0 else piece  # no space at all: hard cut
            self.sentences += 1
            yield piece
            line = line[len(piece):]


# --------------------------------------------------------------------------- training

# SentencePiece reports bad sizes as RuntimeError("INTERNAL: ...") after reading the sample;
# these turn them into the params keys and the numbers it computed.
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
FIXED_PIECES = len(SPECIAL_IDS) + len(CHAT_PIECES) + 1 + 256  # specials, chat markers, "\n", byte fallback


@contextlib.contextmanager
def _sentencepiece_errors(feed: "SentenceFeed", vocab_size: int, character_coverage: float):
    try:
        yield
    except RuntimeError as e:
        msg = str(e)
        if m := _TOO_SMALL.search(msg):
            need = int(m.group(2))
            raise UserError(
                f"tokenizer.vocab_size: {vocab_size} is too small for this sample: SentencePiece needs "
                f">= {need} ({need - FIXED_PIECES} distinct characters at character_coverage "
                f"{character_coverage} + {FIXED_PIECES} fixed pieces); set tokenizer.vocab_size >= {need} "
                "or lower tokenizer.character_coverage") from None
        if m := _TOO_HIGH.search(msg):
            raise UserError(
                f"tokenizer.vocab_size: {vocab_size} is more pieces than a sample of {feed.chars:,} "
                f"characters can make (at most {m.group(2)}); lower tokenizer.vocab_size to <= "
                f"{m.group(2)} or raise tokenizer.sample_chars") from None
        if "sentences_.empty()" in msg:
            raise UserError(f"tokenizer: the training sample is empty ({feed.docs:,} documents, no "
                            "non-blank line); check tokenizer.sample_chars and that dedup kept "
                            "documents") from None
        raise


def train(texts: Iterable[str], out_dir: str | Path, *, vocab_size: int, character_coverage: float,
          model_type: str = "bpe", num_threads: int = 1) -> dict:
    """Train on `texts` (streamed) and write spm.model + spm.vocab into `out_dir` atomically.

    With fixed input the model bytes are identical run to run for a given `num_threads`;
    different thread counts give different (equally valid) models, so it is a param.
    """
    feed = SentenceFeed()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()  # not model_prefix: the model proto would record that (random) path
    with _sentencepiece_errors(feed, vocab_size, character_coverage):
        spm.SentencePieceTrainer.train(
            sentence_iterator=feed(texts), model_writer=model, model_type=model_type,
            vocab_size=vocab_size, character_coverage=character_coverage,
            byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
            user_defined_symbols=[*CHAT_PIECES, NEWLINE_PIECE],  # ids 4-7 (chat.CHAT_IDS), then 8
            pad_id=SPECIAL_IDS["pad"], unk_id=SPECIAL_IDS["unk"],
            bos_id=SPECIAL_IDS["bos"], eos_id=SPECIAL_IDS["eos"],
            input_sentence_size=0, shuffle_input_sentence=False,  # we sampled already
            max_sentence_length=MAX_SENTENCE_BYTES, num_threads=num_threads, minloglevel=2)
    with atomic_path(out_dir / "spm.model") as t:
        t.write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size()))
    with atomic_path(out_dir / "spm.vocab") as t:
        t.write_text(vocab, encoding="utf-8")
    return {"docs": feed.docs, "chars": feed.chars, "sentences": feed.sentences,
            "long_lines_cut": feed.cut_lines, "sentences_skipped": 0}


# --------------------------------------------------------------------------- loading, encoding

@dataclass
class Tokenizer:
    """A loaded SentencePiece model with the fixed special ids."""

    sp: spm.SentencePieceProcessor
    path: Path
    fingerprint: str

    bos_id = SPECIAL_IDS["bos"]
    eos_id = SPECIAL_IDS["eos"]
    pad_id = SPECIAL_IDS["pad"]
    unk_id = SPECIAL_IDS["unk"]

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self.sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) not in (self.pad_id, self.bos_id, self.eos_id)])

    def piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def byte_mask(self) -> np.ndarray:
        """(vocab_size,) bool: True for byte-fallback pieces <0x..>."""
        return np.array([self.sp.is_byte(i) for i in range(self.vocab_size)], dtype=bool)


def load(path: str | Path) -> Tokenizer:
    """Load spm.model (or a directory holding it); checks the special ids are the fixed ones."""
    path = Path(path)
    if path.is_dir():
        path = path / "spm.model"
    if not path.exists():
        raise missing_input(path, "tokenizer")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    got = {"pad": sp.pad_id(), "unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id()}
    if got != SPECIAL_IDS:
        raise UserError(f"{path}: special ids {got} differ from llmpipe's fixed {SPECIAL_IDS}; "
                         "retrain with `dvc repro tokenizer`")
    chat = {k: sp.piece_to_id(p) for k, p in zip(CHAT_IDS, CHAT_PIECES)}
    if chat != CHAT_IDS:  # a tokenizer from before the chat markers were reserved
        raise UserError(f"{path}: chat marker ids {chat} differ from llmpipe's fixed {CHAT_IDS} (a tokenizer "
                        "made before they were reserved); retrain with `dvc repro` (tokenizer and what follows)")
    return Tokenizer(sp=sp, path=path, fingerprint=fingerprint(path))


def text_stats(tok: Tokenizer, texts: Iterable[str], max_chars: int = STATS_CHARS_PER_SOURCE) -> dict:
    """Fertility (tokens per whitespace word), bytes per token and byte-fallback share."""
    is_byte = tok.byte_mask()
    words = tokens = nbytes = byte_tokens = chars = 0
    for text in texts:
        if chars >= max_chars:
            break
        chars += len(text)
        ids = np.asarray(tok.sp.encode(text), dtype=np.int64)
        words += len(text.split())
        tokens += len(ids)
        nbytes += len(text.encode("utf-8"))
        byte_tokens += int(is_byte[ids].sum())
    return {"words": words, "tokens": tokens, "utf8_bytes": nbytes,
            "fertility": round(tokens / words, 4) if words else None,
            "bytes_per_token": round(nbytes / tokens, 4) if tokens else None,
            "byte_fallback_share": round(byte_tokens / tokens, 6) if tokens else None}


def pinned_shards(clean_root: Path, sources: list[str], count: int) -> dict[str, list[dict]]:
    """The shards each source's sample is drawn from: its first `count` clean shards in input-file
    order, each {name, docs, chars, fingerprint (sha256 of its clean text)}. Clean, not filtered:
    a `filter.*` sweep then keeps the tokenizer (and every token shard it would re-encode), and
    runs that differ only in thresholds share one tokenizer, so their scores compare."""
    from llmpipe.core.shards import read_manifest, shards
    out = {}
    for src in sources:
        picked = []
        for sh in shards(read_manifest(Path(clean_root) / src, f"clean@{src}"))[:count]:
            name = sh["name"]
            one = sum(f.endswith(".parquet") for f in sh["files"]) == 1  # stats are per unit: its own
            chars = sh["stats"].get("chars", 0) if one else 0  # 0: take documents in order up to the budget
            picked.append({"name": name, "docs": int(sh["docs"]), "chars": int(chars),
                           "fingerprint": sh["files"][f"{name}.parquet"]["sha256"]})
        out[src] = picked
    return out


def iter_pinned_sample(clean_dir: Path, picked: list[dict], budget: int, seed: int,
                       chars_total: int) -> Iterator[str]:
    """Texts of one source's sample, in one pass over its pinned clean shards: a document is taken
    when unit_hash(seed, id) < budget / chars_total, unless an exact copy of it (same exact_hash)
    is already in the sample; stops once the budget is spent. Memory: one batch and the exact
    hashes taken."""
    rate = min(1.0, budget / chars_total) if chars_total else 1.0
    taken, seen = 0, set()
    for sh in picked:
        for batch in read_batches(Path(clean_dir) / f"{sh['name']}.parquet", ["id", "text", "exact_hash"]):
            ids, texts, hashes = (batch.column(k).to_pylist() for k in ("id", "text", "exact_hash"))
            for doc_id, text, h in zip(ids, texts, hashes):
                if taken >= budget:
                    return
                if h not in seen and (rate >= 1.0 or unit_hash(seed, doc_id) < rate):
                    seen.add(h)
                    taken += len(text)
                    yield text


def build_tokenizer(clean_root: str | Path, sources: list[str], out_dir: str | Path,
                    *, vocab_size: int, sample_chars: int, sample_weights: dict[str, float], seed: int,
                    character_coverage: float, model_type: str = "bpe", num_threads: int = 1,
                    sample_shards: int = 8) -> tuple[dict, str]:
    """The `tokenizer` stage: sample each source's pinned shards, train, write `out_dir` (spm.model,
    spm.vocab, tokenizer.json and a manifest) atomically. The tokenizer is kept, byte for byte,
    while its sample's inputs and params are unchanged: data added in later shards never retrains
    it. Returns (tokenizer.json, "trained" | "reused ...")."""
    from llmpipe.core import code
    from llmpipe.core.shards import ShardedDir, digest
    clean_root = Path(clean_root)
    budgets = sample_budgets(sorted(sources), sample_weights, sample_chars)
    picked = pinned_shards(clean_root, sorted(budgets), sample_shards)
    num_threads = workers.resolve(num_threads)  # 0 -> all cores (model bytes then depend on them)
    fp = digest("tokenizer", code.fingerprint("stages.tokenizer"), vocab_size, sample_chars, budgets, seed,
                character_coverage, model_type, num_threads, picked)
    with ShardedDir(out_dir, stage="tokenizer") as d:
        if d.reuse("tokenizer", fp) is not None:
            info = json.loads((d.tmp / "tokenizer.json").read_text(encoding="utf-8"))
            d.finish()
            return info, f"reused ({d.previous.where}): its pinned sample shards and params are unchanged"
        if "tokenizer.json" in d.previous.files:  # say loudly why it moves: every tokenize@ reruns
            try:
                was = json.loads(d.previous.files["tokenizer.json"].read_text(encoding="utf-8"))["sample"].get("shards", {})
            except (OSError, ValueError, KeyError):
                was = {}
            now = {s: [p["name"] for p in v] for s, v in picked.items()}
            moved = {s: {"+": sorted(set(now[s]) - set(was.get(s, []))), "-": sorted(set(was.get(s, [])) - set(now[s]))}
                     for s in now}
            moved = {s: m for s, m in moved.items() if m["+"] or m["-"]}
            log.warning("tokenizer: retraining (%s), so every tokenize@ stage re-encodes; %s", 
                        f"sample shards changed: {moved}" if moved else
                        "tokenizer params, code or the pinned shards' contents changed",
                        "pin fewer shards with tokenizer.sample_shards to keep it while sources grow"
                        if moved else "expected after a tokenizer.* change")
        log.info("tokenizer sample: %s characters per source from shards %s",
                 {s: f"{b:,}" for s, b in budgets.items()}, {s: [p["name"] for p in v] for s, v in picked.items()})
        keep_for_stats: dict[str, list[str]] = {s: [] for s in budgets}

        def texts() -> Iterator[str]:
            for src, budget in budgets.items():
                chars_total = sum(p["chars"] for p in picked[src])
                kept = 0
                for text in iter_pinned_sample(clean_root / src, picked[src], budget, seed, chars_total):
                    if kept < STATS_CHARS_PER_SOURCE:  # the fertility stats use the sample's start
                        keep_for_stats[src].append(text)
                        kept += len(text)
                    yield text

        sample = train(texts(), d.tmp, vocab_size=vocab_size, character_coverage=character_coverage,
                       model_type=model_type, num_threads=num_threads)
        tok = load(d.tmp / "spm.model")
        per_source = {src: text_stats(tok, keep_for_stats[src]) for src in budgets}
        info = {"vocab_size": tok.vocab_size, "special_ids": dict(SPECIAL_IDS),
                "chat_ids": {k: tok.sp.piece_to_id(p) for k, p in zip(CHAT_IDS, CHAT_PIECES)},
                "chat_pieces": list(CHAT_PIECES),
                "newline_id": tok.sp.piece_to_id(NEWLINE_PIECE), "fingerprint": tok.fingerprint,
                "model_type": model_type, "character_coverage": character_coverage,
                "num_threads": num_threads,
                "sample": {**sample, "chars_budget": budgets,
                           "shards": {s: [p["name"] for p in v] for s, v in picked.items()}},
                "sources": per_source}
        write_json(d.tmp / "tokenizer.json", info)
        d.add("tokenizer", fp, ["spm.model", "spm.vocab", "tokenizer.json"], shards=[])
        d.finish()
    return info, "trained"


def read_info(tokenizer_dir: str | Path) -> dict:
    """The tokenizer stage's tokenizer.json (vocab size, special ids, fingerprint, ...)."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro tokenizer` first")
    return json.loads(path.read_text(encoding="utf-8"))


def summary_line(info: dict, seconds: float, reused: bool = False) -> str:
    """The tokenizer stage's one-line summary (`reused`: kept from the previous run, not trained)."""
    s = info["sample"]
    fert = ", ".join(f"{k} {v['fertility']}" for k, v in info["sources"].items())
    speed = f"checked in {seconds:.1f}s" if reused else \
        f"in {seconds:.1f}s ({n(s['chars'] / max(seconds, 1e-9))} chars/s)"
    return (f"tokenizer: vocab {n(info['vocab_size'])} trained on {n(s['docs'])} docs, {n(s['chars'])} chars, "
            f"{n(s['sentences'])} sentences ({n(s['long_lines_cut'])} long lines cut) {speed}; tokens per word: {fert}; "
            f"fingerprint {info['fingerprint'][:12]}")
