"""A minutes-long CPU recipe on plain text, scored on held-out text as one stream (issue 16).

For each corpus: a tokenizer trained on the train text only (llmpipe's `tokenizer.train`), the
train text cut into documents the way `txt_mode: chunks` cuts it (64 KiB runs of whole lines,
EOS between them, nothing else added), the real `train` stage (`python -m stages.train`) with the
recipe's params, then the held-out text scored as a stream with `llmpipe.eval.stream`
(context / 4 stride, and non-overlapping windows for comparison with the issue's figures).

Corpora (under --corpus, default /work/shared/corpus):
  shakespeare  tinyshakespeare.txt, first 90% train / last 10% val cut at the character where
               nanoGPT's prepare.py cuts (int(len(text) * 0.9))
  gutenberg    the .txt books: all but the last (by name) train, the last book's first 200 kB val
  wikipedia    the jsonl.gz articles: the first 90% train, the last 10% val (joined by a blank line)

    PYTHONPATH=src .venv/bin/python bench/bench_text_recipe.py --out bench/results/text_recipe.json \
        --runs shakespeare:default shakespeare:recipe gutenberg:recipe wikipedia:recipe

`CORPUS:baseline` (shakespeare only) trains nanoGPT's architecture and baby-config step
(`bench_vs_nanogpt.Gpt2Baseline`, character level) for as many seconds of loop as the llmpipe run
before it in `--runs` took, and scores the same held-out text as a stream (windows of its
context 64, stride 16): the two at the same wall-clock training budget, back to back.

The runs of one invocation are back to back on the same machine; the JSON keeps the command, the
load average before and after each run, train's wall time and the params of each recipe.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from llmpipe.data.sources.readers import _line_chunks  # noqa: E402
from llmpipe.data.tokenizer import fingerprint, load, train as train_spm  # noqa: E402

# The recipes compared. `default` = params.yaml before issue 16; `recipe` = the new defaults.
RECIPES = {
    "default": {"vocab": 8000, "train": {"tokens": 409600, "lr": 3e-3, "batch_tokens": 4096, "micro_batch": 8,
                                          "warmup": 10, "schedule": "cosine", "min_lr_ratio": 0.1}},
    "recipe": {"vocab": 8000, "train": {"tokens": 409600, "lr": 3e-3, "batch_tokens": 2048, "micro_batch": 8,
                                         "warmup": 20, "schedule": "cosine", "min_lr_ratio": 0.1}},
    "recipe_lr6": {"vocab": 8000, "train": {"tokens": 409600, "lr": 6e-3, "batch_tokens": 2048, "micro_batch": 8,
                                             "warmup": 20, "schedule": "cosine", "min_lr_ratio": 0.1}},
}


def corpus(name: str, root: Path) -> tuple[str, str]:
    """(train text, held-out text)."""
    if name == "shakespeare":
        text = (root / "shakespeare" / "tinyshakespeare.txt").read_text(encoding="utf-8")
        cut = int(len(text) * 0.9)  # nanoGPT shakespeare_char/prepare.py: data[:int(n*0.9)]
        return text[:cut], text[cut:]
    if name == "gutenberg":
        books = sorted((root / "gutenberg").glob("*.txt"))
        read = [b.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8").replace("\r\n", "\n") for b in books]
        return "".join(read[:-1]), read[-1][:200_000]
    if name == "wikipedia":
        with gzip.open(root / "wikipedia" / "wikipedia-20231101-en-1000.jsonl.gz", "rt", encoding="utf-8") as f:
            arts = [json.loads(line)["text"] for line in f if line.strip()]
        cut = int(len(arts) * 0.9)
        return "\n\n".join(arts[:cut]) + "\n", "\n\n".join(arts[cut:]) + "\n"
    raise SystemExit(f"unknown corpus {name!r}")


def workspace(ws: Path, train_text: str, val_text: str, vocab: int, train_params: dict) -> None:
    """ws/{artifacts/tokenizer, data/mix, params.yaml}, as the pipeline's stages leave them."""
    tdir = ws / "artifacts" / "tokenizer"
    train_spm([train_text], tdir, vocab_size=vocab, character_coverage=0.9995)
    tok = load(tdir)
    (tdir / "tokenizer.json").write_text(json.dumps({"vocab_size": tok.vocab_size,
                                                     "fingerprint": fingerprint(tdir / "spm.model")}))
    mix = ws / "data" / "mix"
    mix.mkdir(parents=True)
    for split, text in (("train", train_text), ("val", val_text)):  # val: train's own val loss only
        data = text.encode("utf-8")
        ids = []
        for _, chunk in _line_chunks(data, 0, 1 << 16):
            ids += tok.encode(chunk.decode("utf-8"), eos=True)
        np.asarray(ids, dtype=np.uint16).tofile(mix / f"{split}.bin")
    (mix / "data_meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": tok.vocab_size,
                                                    "tokenizer_fingerprint": tok.fingerprint}))
    (ws / "val.txt").write_text(val_text, encoding="utf-8")
    params = {"sources": {"c4": {"kind": "c4", "uri": "sample://c4"}},  # not read by train
              "tokenizer": {"vocab_size": vocab}, "model": {"preset": "tiny"},
              "train": {**train_params, "seed": 0}, "cost": {"require_benchmark": False, "max_cost": 100.0}}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(name: str, recipe: str, root: Path, tmp: Path) -> dict:
    import torch
    from llmpipe.eval.stream import score_text
    from llmpipe.train.model import load_model
    train_text, val_text = corpus(name, root)
    r = RECIPES[recipe]
    ws = tmp / f"{name}-{recipe}"
    workspace(ws, train_text, val_text, r["vocab"], r["train"])
    load0 = os.getloadavg()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "stages.train", "--data", "data/mix", "--tokenizer",
                        "artifacts/tokenizer", "--throughput", "runs/throughput.json", "--out", "runs/train"],
                       cwd=ws, env={**env, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"},
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"{name}:{recipe}: train failed:\n{p.stderr[-3000:]}")
    tok = load(ws / "artifacts" / "tokenizer")
    model, cfg = load_model(ws / "runs" / "train")
    torch.set_num_threads(os.cpu_count() or 1)
    scores = {f"stride_{s or 'context/4'}": score_text(model, tok, ws / "val.txt", stride=s, batch_size=16)
              for s in (0, cfg.context)}
    timing = json.loads((ws / "runs" / "train" / "timing.json").read_text()) if (ws / "runs/train/timing.json").exists() else {}
    summary = [line for line in p.stderr.splitlines() if "train:" in line][-1:]
    return {"corpus": name, "recipe": recipe, "params": r, "train_chars": len(train_text),
            "val_bytes": len(val_text.encode()), "train_stage_wall_s": round(wall, 1), "timing": timing,
            "train_summary": summary, "loadavg_before": load0, "loadavg_after": os.getloadavg(),
            "val_stream": {k: {"bits_per_byte": round(v["bits_per_byte"], 4), "tokens": v["tokens"],
                               "stride": v["stride"]} for k, v in scores.items()}}


def run_baseline(name: str, root: Path, tmp: Path, budget_s: float) -> dict:
    """nanoGPT's architecture and step (bench_vs_nanogpt.Gpt2Baseline, its baby config: char
    level, context 64, batch 12) trained for `budget_s` seconds of loop, then the held-out text
    scored as a stream (windows of 64 sliding by 16)."""
    if name != "shakespeare":
        raise SystemExit("the baseline runs on shakespeare only (character ids of an ASCII text = bytes)")
    sys.path.insert(0, str(REPO / "bench"))
    from bench_vs_nanogpt import prepare_chars
    text = (root / "shakespeare" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    ws = tmp / f"{name}-baseline"
    prepare_chars(ws, text, int(len(text) * 0.9))
    load0 = os.getloadavg()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    p = subprocess.run([sys.executable, str(REPO / "bench" / "bench_vs_nanogpt.py"), "--child", "baseline",
                        "--work", str(ws), "--steps", "0", "--budget", str(budget_s)],
                       cwd=ws, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{name}:baseline failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return {"corpus": name, "recipe": "baseline", "budget_seconds": round(budget_s, 1),
            "params": {"model": "Gpt2Baseline: d_model 128, 4 layers, 4 heads, context 64, GELU 4x, vocab "
                                "65 characters", "train": "batch 12 x 64, lr 1e-3, warmup 100, cosine to 1e-4 "
                                "over the steps the budget allows, AdamW (0.9, 0.99), wd 0.1, clip 1.0"},
            "steps": r["steps"], "tokens": r["tokens"], "loop_seconds": round(r["loop_seconds"], 1),
            "threads": r["threads"], "loadavg_before": load0, "loadavg_after": os.getloadavg(),
            "val_stream": {"stride_16": {"bits_per_byte": round(r["val_bits_per_byte_stream"], 4),
                                         "stride": 16, "context": 64}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/corpus"))
    ap.add_argument("--runs", nargs="+", default=["shakespeare:default", "shakespeare:recipe"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tmp", type=Path, default=None)
    a = ap.parse_args()
    import tempfile
    tmp = a.tmp or Path(tempfile.mkdtemp(prefix="text-recipe-"))
    results = []
    for spec in a.runs:
        name, recipe = spec.split(":")
        if recipe == "baseline":  # the same loop seconds as the last llmpipe run on this corpus
            prev = [x for x in results if x["corpus"] == name and x["recipe"] != "baseline"]
            if not prev:
                print(f"{spec}: put an llmpipe run of {name} before it (its loop time is the budget)", file=sys.stderr)
                raise SystemExit(2)
            res = run_baseline(name, a.corpus, tmp, prev[-1]["timing"]["loop_seconds"])
        else:
            res = run(name, recipe, a.corpus, tmp)
        print(json.dumps(res), flush=True)
        results.append(res)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"command": " ".join(sys.argv), "cpu_count": os.cpu_count(),
                                     "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
