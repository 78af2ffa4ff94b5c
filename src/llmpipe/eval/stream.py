"""Score any held-out text as one stream: bits per byte with the model's full context.

`eval.texts` (the eval stage) and `llmpipe eval --text FILE` (the CLI) use it. The per-source
figures (`evaluate.py`) score each val *document* from its start; this scores a text the model
never saw the way it will be used: one stream, every token predicted from up to `context`
tokens before it, however the text would have been cut into documents.

What is scored: the file's text (UTF-8; a leading BOM dropped and CRLF read as LF, as the `.txt`
reader does) encoded whole, preceded by EOS as the model saw before every training document, with
no EOS after it (a stream has no end). Windows of `context` tokens slide by `stride`: the first
window scores all its targets, each next one only its last `stride` targets (the ones not scored
yet), so every target after the first window is predicted from at least `context - stride`
tokens of context (stride = context: non-overlapping windows, cheapest, most pessimistic; the
cost is ~context / stride forward passes per token). Bits per byte = summed NLL / ln 2 / UTF-8
bytes of the text. Memory: the text's ids (4 bytes per token) and one batch of windows.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llmpipe.core.errors import UserError
from llmpipe.core.log import get_logger

log = get_logger("evaluate")
LN2 = math.log(2.0)
ENCODE_CHARS = 1 << 20  # characters per SentencePiece call, cut after a "\n" (ids identical to a
                        # whole encode: the tokenizer adds no prefix and "\n" is its own piece)


def read_text(path: str | Path) -> str:
    """The text of a held-out file, or a one-line error naming it and what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (a held-out text to score: eval.texts or --text)") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; give one text file per eval.texts entry or --text") from None
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 at byte {e.start}; convert the file to UTF-8") from None
    if not text.strip():
        raise UserError(f"{path}: no text to score (empty or blank)")
    return text.replace("\r\n", "\n")


def encode_stream(tokenizer, text: str) -> np.ndarray:
    """(n,) int64 ids of `text`, encoded ENCODE_CHARS at a time, cut where SentencePiece's own
    pre-split cuts (after a newline, else before a space that follows a non-space), so the ids
    are those of one whole encode."""
    parts, lo = [], 0
    while lo < len(text):
        hi = min(lo + ENCODE_CHARS, len(text))
        if hi < len(text):
            nl = text.rfind("\n", lo, hi)
            if nl >= lo:
                hi = nl + 1
            else:
                sp = hi
                while sp > lo + 1 and not (text[sp] == " " and not text[sp - 1].isspace()):
                    sp -= 1
                hi = sp if sp > lo + 1 else hi  # one huge word: a hard cut (ids may differ there)
        parts.append(np.asarray(tokenizer.encode(text[lo:hi]), dtype=np.int64))
        lo = hi
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, scored) per window over n predictions: inputs seq[begin:end], targets
    seq[begin+1:end+1], the last `scored` of them counted. Every target is counted once."""
    out, done, begin = [], 0, 0
    while done < n:
        end = min(begin + context, n)
        out.append((begin, end, end - done))
        done = end
        begin += stride
    return out


@torch.no_grad()
def stream_nll(model, ids: np.ndarray, start_id: int, *, stride: int, batch_size: int) -> tuple[float, int]:
    """(summed NLL in nats, windows) of `ids` scored as one stream after `start_id` (module doc)."""
    device = next(model.parameters()).device
    context = model.cfg.context
    seq = torch.from_numpy(np.concatenate([[start_id], ids]).astype(np.int64))
    wins = windows(len(ids), context, stride)
    total = 0.0
    for b in range(0, len(wins), batch_size):
        chunk = wins[b:b + batch_size]
        T = max(e - s for s, e, _ in chunk)
        x = torch.zeros((len(chunk), T), dtype=torch.long)
        y = torch.full((len(chunk), T), -1, dtype=torch.long)  # -1: padding or context only
        for r, (s, e, scored) in enumerate(chunk):
            x[r, :e - s] = seq[s:e]
            y[r, e - s - scored:e - s] = seq[e - scored + 1:e + 1]
        logits, _ = model(x.to(device))  # (B, T, V)
        nll = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.view(-1).to(device), ignore_index=-1,
                              reduction="sum")
        total += float(nll.double())
    return total, len(wins)


def score_text(model, tokenizer, path: str | Path, *, stride: int, batch_size: int) -> dict:
    """Bits per byte of one held-out text file as a stream, with its counts and sha256."""
    context = model.cfg.context
    stride = resolve_stride(stride, context)
    text = read_text(path)
    ids = encode_stream(tokenizer, text)
    nll, n_windows = stream_nll(model, ids, tokenizer.eos_id, stride=stride, batch_size=batch_size)
    if not math.isfinite(nll):
        from llmpipe.train.sampling import NonFiniteModel
        raise NonFiniteModel(f"{path}: the model's summed log-likelihood of the text is {nll} (its logits "
                             "overflow): the model is broken; retrain it (`dvc repro -f train`)")
    data = text.encode("utf-8")
    out = {"bits_per_byte": nll / LN2 / len(data), "loss": nll / len(ids), "tokens": int(len(ids)),
           "bytes": len(data), "nll_bits": nll / LN2, "context": context, "stride": stride, "windows": n_windows,
           "sha256": hashlib.sha256(data).hexdigest()}
    log.info("%s: %s bytes, %s tokens as one stream (context %d, stride %d): bits/byte %.4f", path,
             f"{out['bytes']:,}", f"{out['tokens']:,}", context, stride, out["bits_per_byte"])
    return out


def resolve_stride(stride: int, context: int) -> int:
    """`stride` tokens (0 -> context // 4), checked against the model's context."""
    stride = stride or max(1, context // 4)
    if not 1 <= stride <= context:
        raise UserError(f"eval.stride: {stride} must be in [1, {context}] (the model's context); 0 -> context / 4")
    return stride


def score_texts(model, tokenizer, paths: list[str], *, stride: int, batch_size: int) -> dict:
    """{file name: score_text(...)} of each held-out text (names: the path as given)."""
    return {str(p): score_text(model, tokenizer, p, stride=stride, batch_size=batch_size) for p in paths}


def cli_eval(a) -> int:
    """`llmpipe eval --text FILE ...`: one line per text, then the eval stage's per-source val
    figures from `--metrics` when that file exists (the same model, if it is the same run)."""
    import json
    import sys
    from llmpipe.data.tokenizer import load as load_tokenizer
    from llmpipe.train.device import resolve_device
    from llmpipe.train.model import check_tokenizer, load_model
    from llmpipe.train.sampling import check_finite

    if a.batch_size < 1:
        raise UserError(f"--batch-size: must be >= 1, got {a.batch_size}")
    tok = load_tokenizer(a.tokenizer)
    model, cfg = load_model(a.model, device=resolve_device(a.device, key="--device", mps=True))
    check_finite(model, Path(a.model) / "model.safetensors")
    check_tokenizer(a.model, a.tokenizer)
    if tok.vocab_size != cfg.vocab_size:
        raise UserError(f"{a.tokenizer}: vocab {tok.vocab_size} != model vocab {cfg.vocab_size} "
                        f"({a.model}/config.json); pass the run's own --tokenizer")
    out = {"texts": score_texts(model, tok, a.text, stride=a.stride, batch_size=a.batch_size)}
    metrics = Path(a.metrics)
    if metrics.is_file():
        stage = json.loads(metrics.read_text(encoding="utf-8"))
        out["per_source"] = stage.get("per_source", {})
        out["val_bits_per_byte"] = stage.get("bits_per_byte")
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    for name, m in out["texts"].items():
        print(f"{name}: {m['bits_per_byte']:.4f} bits/byte as a stream ({m['bytes']:,} bytes, {m['tokens']:,} tokens, "
              f"context {m['context']}, stride {m['stride']})")
    for src, m in out.get("per_source", {}).items():
        print(f"  val {src} ({metrics}): {m['bits_per_byte']:.4f} bits/byte ({m['docs']:,} documents, "
              "each from its start)", file=sys.stdout)
    return 0
