"""Benchmark tokenize@SRC and mix -> bench/results/tokens.json.

    .venv/bin/python bench/bench_tokens.py [--corpus /work/shared/corpus] [--out FILE] [--scales 1,4]

On real text (the shared corpus samples: c4, wikipedia, fineweb rows; a benchmark, not a test):
  * SentencePiece's own `encode` of the same texts in one thread (the peer),
  * `tokenize_source` with 1 worker and with all cores: tokens/s, parallel efficiency
    = rate / (cores x single-thread rate) (target >= 0.8),
  * SentencePiece's own multi-threaded batch encode on all cores (the same machine load),
  * peak summed RSS of the tokenize process tree (polled; counts pages shared by the forked
    workers once per process, so an upper bound) and peak summed PSS (shared pages split between
    the processes sharing them) at corpus scale 1x and 4x (documents repeated with new ids;
    memory should not grow with the corpus),
  * mix: the gather of whole documents from the memmaps (MB/s written, target >= 300) and the
    whole `build_mix` (gather + leakage check + hashing).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmpipe.atomic import write_json  # noqa: E402
from llmpipe.docs import DOC_SCHEMA, TableWriter  # noqa: E402
from llmpipe.mix import build_mix, gather, source_rng  # noqa: E402
from llmpipe.tokenizer import build_tokenizer, load  # noqa: E402
from llmpipe.tokens import SplitWriter, open_tokens, token_dtype  # noqa: E402


def real_texts(corpus: Path) -> dict[str, list[str]]:
    out = {}
    with gzip.open(corpus / "c4/c4-en-train-00000-first1000.jsonl.gz", "rt") as f:
        out["c4"] = [json.loads(line)["text"] for line in f]
    with gzip.open(corpus / "wikipedia/wikipedia-20231101-en-1000.jsonl.gz", "rt") as f:
        out["wikipedia"] = [json.loads(line)["text"] for line in f]
    out["fineweb"] = [t for p in sorted((corpus / "fineweb").glob("*.parquet"))
                      for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]
    return out


def write_source(path: Path, src: str, texts: list[str], copies: int) -> int:
    with TableWriter(path, DOC_SCHEMA) as w:
        for c in range(copies):
            w.write({"id": [f"{src}-{c}-{i}" for i in range(len(texts))], "source": [src] * len(texts),
                     "text": texts, "url": [None] * len(texts), "meta": [None] * len(texts)})
    return sum(len(t.encode()) for t in texts) * copies


def tree_mem(proc: psutil.Process) -> tuple[int, int]:
    """(RSS, PSS) bytes of a process and all its descendants now, each summed."""
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            m = p.memory_full_info()
            rss, pss = rss + m.rss, pss + m.pss
        except psutil.Error:
            pass
    return rss, pss


def run_tokenize(tmp: Path, src: str, jobs: int) -> tuple[float, int, int, int]:
    """(seconds, tokens, peak summed RSS, PSS of the process tree) of `python -m stages.tokenize`."""
    params = tmp / "params.yaml"
    params.write_text("sources:\n  x:\n    kind: c4\n    uri: sample://c4\nsplit:\n  val_fraction: 0.05\n")
    out = tmp / f"tokens-{src}-{jobs}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stages.tokenize", "--source", src,
                             "--dedup", str(tmp / f"{src}.parquet"), "--tokenizer", str(tmp / "tok/spm.model"),
                             "--out", str(out), "--jobs", str(jobs), "--params", str(params)],
                            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
                            stderr=subprocess.DEVNULL)
    ps, peak, peak_pss = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:  # poll every 20 ms: parent + workers together
        rss, pss = tree_mem(ps)
        peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"tokenize failed ({proc.returncode})")
    meta = json.loads((out / "meta.json").read_text())
    tokens = sum(v["tokens"] for v in meta["splits"].values())
    return seconds, tokens, peak, peak_pss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/corpus"))
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--scales", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4],
                    help="corpus sizes as multiples of the real sample (documents repeated with new ids)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/tokens.json")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    texts = real_texts(args.corpus)
    allt = [t for ts in texts.values() for t in ts]
    res: dict = {"machine": {"cores": cores, "python": platform.python_version(), "cpu": platform.processor()},
                 "vocab_size": args.vocab, "docs": len(allt), "mb": round(sum(len(t.encode()) for t in allt) / 1e6, 2)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for src, ts in texts.items():
            write_source(tmp / "dedup" / f"{src}.parquet", src, ts, 1)
        build_tokenizer({s: tmp / "dedup" / f"{s}.parquet" for s in texts}, tmp / "tok", vocab_size=args.vocab,
                        sample_chars=10_000_000, sample_weights={}, seed=0, character_coverage=0.9995)
        tok = load(tmp / "tok/spm.model")
        # the peer: SentencePiece encode, one thread, same texts (best of 3)
        best = min(_timed(lambda: tok.sp.encode(allt, num_threads=1)) for _ in range(3))
        n_tok = sum(map(len, tok.sp.encode(allt, num_threads=1))) + len(allt)  # + EOS, like ours
        single = n_tok / best
        res["spm_encode_1thread_tokens_per_s"] = round(single)
        best_n = min(_timed(lambda: tok.sp.encode(allt, num_threads=cores)) for _ in range(3))
        res[f"spm_encode_{cores}threads_tokens_per_s"] = round(n_tok / best_n)
        # ours, on one concatenated source of everything at scale 1x and 4x
        rows = []
        for scale in args.scales:
            nbytes = write_source(tmp / f"all{scale}.parquet", "all", allt, scale)
            for jobs in sorted({1, cores}):
                if scale > 1 and jobs == 1:
                    continue
                sec, toks, rss, pss = run_tokenize(tmp, f"all{scale}", jobs)
                rate = toks / sec
                rows.append({"scale": scale, "mb": round(nbytes / 1e6, 1), "jobs": jobs, "seconds": round(sec, 2),
                             "tokens": toks, "tokens_per_s": round(rate),
                             "vs_single_thread_spm": round(rate / single, 3),
                             "vs_spm_own_threads": round(rate / (n_tok / best_n), 3) if jobs == cores else None,
                             "parallel_efficiency": round(rate / (jobs * single), 3),
                             "peak_rss_mb": round(rss / 2**20, 1), "peak_pss_mb": round(pss / 2**20, 1)})
                print(rows[-1], file=sys.stderr)
        res["tokenize"] = rows
        # mix: gather speed on the 4x token file, then the whole stage
        tf = open_tokens(tmp / f"tokens-all4-{cores}", "train")
        lens = np.diff(tf.offsets.astype(np.int64))
        doc = source_rng(0, "bench").permutation(len(lens))
        (tmp / "g").mkdir()
        w = SplitWriter(tmp / "g", "train", token_dtype(tok.vocab_size))
        t0 = time.perf_counter()
        gather([tf], np.zeros(len(doc), np.int64), doc, w, ["all"], "gather")
        w.close()
        sec = time.perf_counter() - t0
        mb = len(tf.tokens) * tf.tokens.dtype.itemsize / 1e6
        res["mix_gather"] = {"mb": round(mb, 1), "seconds": round(sec, 3), "mb_per_s": round(mb / sec, 1),
                             "docs": len(doc)}
        t0 = time.perf_counter()
        meta = build_mix({"all": tmp / f"tokens-all4-{cores}"}, tmp / "tok/spm.model", tmp / "mix",
                         weights={}, train_tokens=int(lens.sum()), val_tokens=0, seed=0,
                         on_short="repeat", tolerance=0.05, max_val_overlap=1.0)
        sec = time.perf_counter() - t0
        mb = (meta["splits"]["train"]["files"]["bin"]["bytes"] + meta["splits"]["val"]["files"]["bin"]["bytes"]) / 1e6
        res["mix_stage"] = {"mb": round(mb, 1), "seconds": round(sec, 3), "mb_per_s": round(mb / sec, 1),
                            "note": "includes the 13-gram leakage check and sha256 of every file"}
    res["command"] = "python bench/bench_tokens.py"
    write_json(args.out, res)
    print(json.dumps(res, indent=2))
    return 0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
