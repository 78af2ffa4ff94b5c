"""The contamination guard on the real samples: how many train documents a 13-gram check against
an eval task flags, and whether they are copies of its items or chance; writes
bench/results/contamination.json.

    PYTHONPATH=src .venv/bin/python bench/bench_contamination.py --corpus ../shared/corpus

The eval task is built like HellaSwag or the built-in multiple choice, from 200 real Wikipedia
articles held out of train: per article one example, context = 25 words from the start of one of
its sentences, choices = the true next 12 words and the next 12 words of three other held-out
articles (`contamination.item_texts` joins context and each choice). Train is every other real
document: the 1,000 C4 pages, the FineWeb rows, the other 800 Wikipedia articles, the Gutenberg
books (raw text; the guard counts on clean text, which holds less), plus 20 planted copies of
held-out articles in C4 (the contamination the guard is for). Per source: documents sharing >= 1
word 13-gram with the items (`filter.global.max_eval_ngrams: 0` drops them), their counts, and
for the unplanted ones the shared n-grams, so one can read whether they are chance or copies.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from llmpipe.core.atomic import write_json
from llmpipe.data import contamination
from llmpipe.data.minhash import normalize

ROOT = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def build_task(held: list[str], rng) -> list[dict]:
    out = []
    for k, art in enumerate(held):
        words = art.split()
        starts = [i for i in range(1, len(words) - 40) if words[i - 1].endswith(".")]
        if not starts:
            continue
        s = starts[int(rng.integers(len(starts)))]
        right = " ".join(words[s + 25: s + 37])
        wrong = []
        for j in rng.choice([j for j in range(len(held)) if j != k], size=3, replace=False).tolist():
            w = held[j].split()
            at = int(rng.integers(0, max(1, len(w) - 12)))
            wrong.append(" ".join(w[at: at + 12]))
        out.append({"context": " ".join(words[s: s + 25]), "choices": [right, *wrong], "label": 0, "article": k})
    return out


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/contamination.json")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    load0 = os.getloadavg()
    rng = np.random.default_rng(a.seed)
    wiki = list(dict.fromkeys(read_jsonl(a.corpus / "wikipedia/wikipedia-20231101-en-1000.jsonl.gz")))
    long_ = [t for t in wiki if len(t.split()) >= 200]
    order = rng.permutation(len(long_))
    held = [long_[i] for i in order[:200]]
    held_set = set(held)
    task = build_task(held, rng)
    task_file = Path("/tmp") / f"contamination-task-{os.getpid()}.jsonl"
    task_file.write_text("".join(json.dumps(e) + "\n" for e in task))
    items = contamination.ngram_set(contamination.item_texts([], [task_file]), 13)
    task_file.unlink()
    planted = [held[e["article"]] for e in task[:20]]
    train = {"c4": read_jsonl(a.corpus / "c4/c4-en-train-00000-first1000.jsonl.gz") + planted,
             "wikipedia": [t for t in wiki if t not in held_set],
             "gutenberg": list(dict.fromkeys(read_jsonl(a.corpus / "gutenberg/gutenberg-68-books.jsonl.gz")))}
    fw = []
    for p in sorted((a.corpus / "fineweb").glob("*.parquet")):
        fw += pq.read_table(p, columns=["text"]).column("text").to_pylist()
    train["fineweb"] = fw
    planted_set = set(planted)
    per_source, unplanted = {}, []
    item_ngrams = {}
    for e in task:
        for c in e["choices"]:
            w = normalize(f"{e['context']} {c}").split()
            for i in range(len(w) - 12):
                item_ngrams.setdefault(" ".join(w[i:i + 13]), e["article"])
    for src, texts in train.items():
        counts = contamination.shared_ngrams(texts, items, 13)
        flagged = np.flatnonzero(counts > 0)
        per_source[src] = {"docs": len(texts), "flagged": int(len(flagged)),
                           "flagged_planted": int(sum(texts[i] in planted_set for i in flagged.tolist())),
                           "shared_ngrams_of_flagged": sorted(counts[flagged].tolist(), reverse=True)[:20]}
        for i in flagged.tolist():
            if texts[i] in planted_set:
                continue
            w = normalize(texts[i]).split()
            hits = sorted({" ".join(w[j:j + 13]) for j in range(len(w) - 12)} & set(item_ngrams))
            unplanted.append({"source": src, "row": i, "shared": int(counts[i]), "words": len(w),
                              "ngrams": hits[:3], "text_start": texts[i][:120]})
    return {
        "command": "PYTHONPATH=src .venv/bin/python bench/bench_contamination.py " + " ".join(sys.argv[1:]),
        "load_average_before_after": [round(x, 2) for x in load0 + os.getloadavg()],
        "machine": platform.platform(), "task_examples": len(task), "item_13grams": int(len(items)),
        "planted_copies_in_c4": len(planted), "per_source": per_source,
        "unplanted_flagged": unplanted, "out": str(a.out)}


if __name__ == "__main__":
    res = main()
    write_json(Path(res.pop("out")), res)
    print(json.dumps({k: res[k] for k in ("per_source", "task_examples", "item_13grams")}, indent=1))
    print(len(res["unplanted_flagged"]), "unplanted flagged")
    for u in res["unplanted_flagged"][:15]:
        print(u["source"], u["shared"], u["ngrams"][:1], u["text_start"][:80].replace("\n", " "))
