"""Weighted mixing of per-source token files into `data/mix/{train,val}` (the `mix` stage).

Plan, per source s with weight w_s (sources with weight 0 are left out):
    target_s = train_tokens * w_s / sum(w)
    whole documents in a seeded random order (rng seeded by mix.seed and the source name): the
    prefix that fits, then first-fit over the rest (`fill`), so |realised - target| <= half a
    document.
A source with fewer train tokens than its target follows `on_short`:
    repeat       pass over its documents again (a fresh order each pass); `repeats` counts passes
    renormalize  take all it has and give the shortfall to the others by their weights
    fail         stop with an error naming the source
Val comes only from the per-source val splits (decided by id hash in tokenize): the same
weights applied to `val_tokens`, documents until the target is reached (so every source with val
documents has at least one), or every val document of a source that has fewer (never repeated);
val_tokens 0 means every val document. The picked documents are shuffled together
(seeded) and gathered from the memmaps in chunks of whole documents.

Leakage check (`leakage.py`): share of val documents sharing a 13-word n-gram with a train document.

Loss mask: when a picked source has one (`kind: chat`: 1 on assistant tokens), the mix writes
`{train,val}.mask` beside the tokens, gathered the same way; documents of a source without one get
1 on every token (trained on whole under `train.sft`), and `splits.SPLIT.loss_tokens` counts the ones.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from llmpipe.core import seeds
from llmpipe.core.atomic import atomic_path, write_json
from llmpipe.data.leakage import val_overlap
from llmpipe.core.log import get_logger, n
from llmpipe.data.tokenizer import load
from llmpipe.data.weights import shares
from llmpipe.data.tokens import SPLITS, SplitWriter, TokenFile, make_meta, open_tokens, token_dtype

log = get_logger("mix")

GATHER_TOKENS = 1 << 23  # tokens per output chunk (16 MiB of uint16)


def train_targets(share: dict[str, float], available: dict[str, int], total: int,
                  on_short: str) -> dict[str, int]:
    """Tokens wanted per source. `renormalize` caps short sources and redistributes the rest."""
    targets = {s: round(total * f) for s, f in share.items()}
    short = [s for s in share if available[s] < targets[s]]
    if on_short == "fail" and short:
        s = short[0]
        raise UserError(f"mix: source {s!r} has {available[s]:,} train tokens, its share needs "
                         f"{targets[s]:,} (mix.on_short: fail); lower mix.train_tokens or its weight, "
                         "or set mix.on_short to repeat or renormalize")
    if on_short != "renormalize":
        return targets
    fixed: dict[str, int] = {}
    while True:  # each pass caps >= 1 source, so at most len(share) passes
        left = {s: f for s, f in share.items() if s not in fixed}
        budget = total - sum(fixed.values())
        wsum = sum(left.values())
        targets = {s: round(budget * f / wsum) for s, f in left.items()} if wsum else {}
        capped = {s: available[s] for s, t in targets.items() if available[s] < t}
        if not capped:
            return {**fixed, **targets}
        fixed.update(capped)


def fill(lengths: np.ndarray, target: int, reach: bool = False) -> np.ndarray:
    """Positions of the documents taken from `lengths` (in its seeded order) for `target` tokens.

    The prefix that stays <= target, then first-fit over the rest in the same order (a document
    is taken when it still fits), then the first skipped document whose overshoot is smaller
    than the remaining gap, if any. So the miss is at most half of the smallest skipped document;
    with few long documents (books) this lands far closer than a plain prefix, and only the
    tail of the order is affected. With `reach`: the shortest prefix whose sum is >= target.
    """
    cum = np.cumsum(lengths)
    k = int(np.searchsorted(cum, target, side="right"))  # docs [0, k) stay <= target
    if reach:
        return np.arange(min(k + (k == 0 or cum[k - 1] < target), len(cum)) if target > 0 else 0)
    take = np.zeros(len(lengths), bool)
    take[:k] = True
    got = int(cum[k - 1]) if k else 0
    if k < len(lengths):
        # first fit over the rest, in numpy: jump to the next document that still fits; the loop
        # runs once per document taken (few: each one shrinks the gap), never once per document
        rest_min = np.minimum.accumulate(lengths[::-1])[::-1]  # smallest doc from i on
        i, step = k, 1 << 16
        while i < len(lengths) and target - got >= rest_min[i]:
            fits = np.flatnonzero(lengths[i:i + step] <= target - got)
            if not len(fits):
                i += step
                continue
            i += int(fits[0])
            take[i] = True
            got += int(lengths[i])
            i += 1
        gap = target - got
        over = np.flatnonzero(~take & (lengths < 2 * gap))  # overshoot n - gap < gap
        if gap > 0 and len(over):
            take[over[0]] = True
    return np.flatnonzero(take)


def pick(lengths: np.ndarray, target: int, rng: np.random.Generator, repeat: bool,
         reach: bool = False) -> tuple[np.ndarray, int]:
    """Doc indices in a seeded order summing close to `target`; and the number of extra passes."""
    total = int(lengths.sum())
    if target <= 0 or total == 0:
        return np.zeros(0, np.int64), 0
    parts, passes, need = [], 0, target
    while need > 0:
        order = rng.permutation(len(lengths))
        if repeat and need >= total:
            parts.append(order)
            need -= total
        else:
            parts.append(order[fill(lengths[order], need, reach)])
            need = 0
        passes += 1
        if not repeat:
            break
    picked = np.concatenate(parts)
    return picked, max(0, passes - 1) if len(picked) else 0


def gather(files: list[TokenFile], src: np.ndarray, doc: np.ndarray, writer: SplitWriter,
           names: list[str], desc: str) -> np.ndarray:
    """Copy documents (src[i], doc[i]) in order into `writer`, in chunks of whole documents.
    Returns the UTF-8 bytes gathered from each file (repeats counted)."""
    views = [f.tokens.view(np.ndarray) for f in files]
    masks = [None if f.mask is None else f.mask.view(np.ndarray) for f in files] if writer.mask else None
    starts = np.zeros(len(src), np.int64)
    ends = np.zeros(len(src), np.int64)
    nbytes_all = np.zeros(len(src), np.int64)
    id_parts, id_pos = [], []
    for i, f in enumerate(files):  # ids and byte counts of the picked documents only
        sel = np.flatnonzero(src == i)
        starts[sel], ends[sel] = f.offsets[doc[sel]].astype(np.int64), f.offsets[doc[sel] + 1].astype(np.int64)
        rows = f.take_rows(doc[sel], ["id", "utf8_bytes"])
        nbytes_all[sel] = rows.column("utf8_bytes").to_numpy()
        id_parts.append(rows.column("id"))
        id_pos.append(sel)
    inverse = np.empty(len(src), np.int64)
    inverse[np.concatenate(id_pos) if id_pos else np.zeros(0, np.int64)] = np.arange(len(src))
    all_ids = pa.chunked_array([c for p in id_parts for c in p.chunks], type=pa.string()).take(pa.array(inverse))
    lengths = ends - starts
    cum = np.cumsum(lengths)
    lo = 0
    with tqdm(total=int(cum[-1]) if len(cum) else 0, desc=desc, unit="tok", unit_scale=True, leave=False,
              disable=None) as bar:
        while lo < len(src):
            hi = max(lo + 1, int(np.searchsorted(cum, (cum[lo - 1] if lo else 0) + GATHER_TOKENS)))
            s_, b_, e_ = src[lo:hi].tolist(), starts[lo:hi].tolist(), ends[lo:hi].tolist()
            chunk = np.concatenate([views[s][b:e] for s, b, e in zip(s_, b_, e_)])
            mask = None
            if masks is not None:  # a source without a mask (not chat) is trained on every token
                mask = np.concatenate([masks[s][b:e] if masks[s] is not None else np.ones(e - b, np.uint8)
                                       for s, b, e in zip(s_, b_, e_)])
            writer.add(chunk, lengths[lo:hi], nbytes_all[lo:hi], all_ids.slice(lo, hi - lo).to_pylist(),
                       [names[s] for s in s_], mask=mask)
            bar.update(int(lengths[lo:hi].sum()))
            lo = hi
    return np.bincount(src, weights=nbytes_all, minlength=len(files)).astype(np.int64)


def plan(lens: dict, share: dict[str, float], *, train_tokens: int, val_tokens: int, seed: int,
         on_short: str) -> tuple[dict, dict]:
    """lens: {source: {split: (docs,) token counts}}. Returns picks {(split, source): doc
    indices in order} and the per-source report (targets, realised tokens, repeats)."""
    avail = {s: int(lens[s]["train"].sum()) for s in share}
    targets = {"train": train_targets(share, avail, train_tokens, on_short),
               "val": {s: (round(val_tokens * f) if val_tokens else int(lens[s]["val"].sum()))
                       for s, f in share.items()}}
    picks, report = {}, {s: {"weight": f} for s, f in share.items()}
    for sp in SPLITS:
        for s in share:
            if sp == "train" and avail[s] == 0 and targets[sp][s] > 0:
                raise UserError(f"mix: source {s!r} has no train documents")
            # val reaches its target (every source with val docs is represented); train fills
            idx, reps = pick(lens[s][sp], targets[sp][s], seeds.rng(seed, s, sp),
                             repeat=sp == "train" and on_short == "repeat", reach=sp == "val")
            picks[(sp, s)] = idx
            report[s][sp] = {"target_tokens": targets[sp][s], "tokens": int(lens[s][sp][idx].sum()),
                             "docs": len(idx), "unique_docs": int(len(np.unique(idx))), "repeats": reps,
                             "available_tokens": int(lens[s][sp].sum())}
    return picks, report


def check_tolerance(report: dict, tolerance: float) -> None:
    """Add relative_miss per source; raise when a train share misses by more than `tolerance`."""
    for s, r in ((s, v["train"]) for s, v in report.items()):
        if r["repeats"]:
            log.warning("mix: %s has %s train tokens for a target of %s: its documents repeat (%d extra "
                        "passes)", s, f"{r['available_tokens']:,}", f"{r['target_tokens']:,}", r["repeats"])
        miss = abs(r["tokens"] - r["target_tokens"]) / max(1, r["target_tokens"])
        r["relative_miss"] = round(miss, 6)
        if miss > tolerance:
            raise UserError(f"mix: source {s!r} got {r['tokens']:,} train tokens for a target of "
                             f"{r['target_tokens']:,} ({miss:.2%} off > mix.tolerance {tolerance:.2%}); "
                             "its documents are too long for this target: raise mix.train_tokens or "
                             "mix.tolerance, or change on_short")


def build_mix(token_dirs: dict[str, Path], tokenizer_path: str | Path, out_dir: str | Path, *,
              weights: dict[str, float], train_tokens: int, val_tokens: int, seed: int, on_short: str,
              tolerance: float, max_val_overlap: float, ngram: int = 13,
              leakage_max_doc_freq: int | None = None, leakage_min_share: float = 0.0) -> dict:
    """The `mix` stage: write out_dir/{train,val}.{bin,idx,docs.parquet} + data_meta.json last."""
    tok = load(tokenizer_path)
    share = shares(weights, sorted(token_dirs), "mix.weights")
    names = list(share)
    files = {s: {sp: open_tokens(token_dirs[s], sp, tokenizer=tok) for sp in SPLITS} for s in names}
    lens = {s: {sp: np.diff(files[s][sp].offsets.astype(np.int64)) for sp in SPLITS} for s in names}
    picks, report = plan(lens, share, train_tokens=train_tokens, val_tokens=val_tokens, seed=seed,
                         on_short=on_short)
    check_tolerance(report, tolerance)
    if not any(len(picks[("val", s)]) for s in names):
        have = ", ".join(f"{s}: {len(lens[s]['train'])} train, {len(lens[s]['val'])} val" for s in names)
        raise UserError(f"mix: no val documents in any source ({have}); set split.min_val_docs >= 1 (a "
                        "source of one document then gives the last split.val_fraction of its text to val), "
                        "raise split.val_fraction, or cut long texts into documents (sources.SRC.txt_mode: "
                        "chunks)")
    leak = val_overlap({s: (files[s]["train"], np.unique(picks[("train", s)])) for s in names},
                       {s: (files[s]["val"], picks[("val", s)]) for s in names}, tok, ngram=ngram,
                       max_doc_freq=leakage_max_doc_freq, min_share=leakage_min_share)
    if leak["fraction"] > max_val_overlap:
        raise UserError(f"mix: {leak['val_docs_overlapping']:,} of {leak['val_docs']:,} val documents "
                         f"({leak['fraction']:.2%}) share a {ngram}-word n-gram with train (at least "
                         f"{leakage_min_share:.0%} of theirs, boilerplate n-grams ignored), above "
                         f"mix.max_val_overlap {max_val_overlap:.2%}; e.g. {leak['examples'][:5]}")
    dtype = token_dtype(tok.vocab_size)
    # a loss mask beside the tokens as soon as one picked source has one (chat): train.sft reads it
    with_mask = any(files[s][sp].mask is not None for s in names for sp in SPLITS)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        splits = {}
        for sp in SPLITS:
            src = np.concatenate([np.full(len(picks[(sp, s)]), i) for i, s in enumerate(names)]).astype(np.int64)
            doc = np.concatenate([picks[(sp, s)] for s in names]).astype(np.int64)
            order = seeds.rng(seed, "*", sp).permutation(len(src))  # interleave sources
            with SplitWriter(tmp, sp, dtype, mask=with_mask) as w:
                nbytes = gather([files[s][sp] for s in names], src[order], doc[order], w, names, f"mix {sp}")
                splits[sp] = w.close()
            for i, s in enumerate(names):  # read once, while gathering: the report's byte counts
                report[s][sp]["utf8_bytes"] = int(nbytes[i])
        meta = make_meta(tok, dtype, splits, rerun="dvc repro mix", kind="mix", sources=report, leakage=leak,
                         params={"weights": weights, "train_tokens": train_tokens, "val_tokens": val_tokens,
                                 "seed": seed, "on_short": on_short, "tolerance": tolerance,
                                 "max_val_overlap": max_val_overlap})
        write_json(tmp / "data_meta.json", meta)
    return meta


def summary_line(meta: dict, seconds: float) -> str:
    """The mix stage's one-line summary."""
    tr, va = meta["splits"]["train"], meta["splits"]["val"]
    mb = (tr["files"]["bin"]["bytes"] + va["files"]["bin"]["bytes"]) / 1e6
    shares = ", ".join(f"{s} {r['train']['tokens'] / max(tr['tokens'], 1):.1%}"
                       f"{' x' + str(r['train']['repeats'] + 1) if r['train']['repeats'] else ''}"
                       for s, r in meta["sources"].items())
    return (f"mix: train {n(tr['tokens'])} tokens ({n(tr['docs'])} docs), val {n(va['tokens'])} tokens "
            f"({n(va['docs'])} docs); {shares}; val overlap {100 * meta['leakage']['fraction']:.2f}%; "
            f"{mb:.1f} MB in {seconds:.1f}s")


def summary(meta: dict) -> dict:
    """Flat metrics for reports/mix.json (what `dvc metrics diff` shows)."""
    out = {f"{sp}_tokens": meta["splits"][sp]["tokens"] for sp in SPLITS}
    out.update({f"{sp}_docs": meta["splits"][sp]["docs"] for sp in SPLITS})
    out["val_overlap"] = meta["leakage"]["fraction"]
    for s, r in meta["sources"].items():
        total = meta["splits"]["train"]["tokens"] or 1
        out[f"share_{s}"] = round(r["train"]["tokens"] / total, 6)
        out[f"repeats_{s}"] = r["train"]["repeats"]
    return out
