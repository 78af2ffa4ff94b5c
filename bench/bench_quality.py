"""The learned quality score on the real samples; writes bench/results/quality.json.

    PYTHONPATH=src:. .venv/bin/python bench/bench_quality.py --corpus ../shared/corpus

1. ingest + clean + filter (default params) of the four real samples (C4, Wikipedia, Gutenberg,
   FineWeb) with the stage scripts, then `quality_model` (default `quality.*`: clean Wikipedia and
   Gutenberg passages vs raw C4 and FineWeb) and `quality@SRC`, as dvc.yaml runs them;
2. the model's held-out accuracy and AUC, the score distribution per source, and how the set
   that filter keeps changes under `filter.global.min_quality_score` 0.1 / 0.25 / 0.5 (per source);
3. documents at the margin (scores within 0.05 of 0.5 among filter-kept C4 and FineWeb
   documents), first 160 characters, for docs/cleaning.md;
4. scoring throughput: docs/s of `Model.score` on one core (one process, the filter-kept C4 and
   FineWeb documents, best of 3), and the CPU seconds of each stage process.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from ruamel.yaml import YAML

from llmpipe.core.atomic import write_json
from llmpipe.data import quality_model as qm

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("c4", "wikipedia", "gutenberg", "fineweb")


def stage(args: list[str], params: Path, log: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    with open(log, "a") as f:
        subprocess.run([sys.executable, "-m", *args, "--params", str(params)], cwd=ROOT, env=env, check=True,
                       stdout=f, stderr=f)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/quality.json")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    y = YAML(typ="rt")
    p = y.load((ROOT / "params.yaml").read_text())
    overrides = y.load((ROOT / "bench/real_corpus_params.yaml").read_text())
    corpus = str(a.corpus.resolve())
    for key, value in overrides.items():
        if key.startswith("sources."):
            _, src, field = key.split(".", 2)
            p["sources"][src][field] = value.replace("/work/shared/corpus", corpus) if isinstance(value, str) else value
    params = work / "params.yaml"
    with open(params, "w") as f:
        y.dump(p, f)
    log, cpu = work / "stages.log", {}
    for s in SOURCES:
        cpu[f"ingest@{s}"] = stage(["stages.ingest", "--source", s, "--out", str(work / "ingested" / s), "--no-progress"],
                                   params, log)
        cpu[f"clean@{s}"] = stage(["stages.clean", "--source", s, "--in", str(work / "ingested" / s),
                                   "--out", str(work / "clean" / s), "--jobs", "1"], params, log)
    cpu["quality_model"] = stage(["stages.quality_model", "--clean", str(work / "clean"), "--ingested",
                                  str(work / "ingested"), "--out", str(work / "model"), "--report",
                                  str(work / "quality_model.json")], params, log)
    per_source, kept_texts = {}, {}
    for s in SOURCES:
        cpu[f"quality@{s}"] = stage(["stages.quality", "--source", s, "--in", str(work / "clean" / s), "--model",
                                     str(work / "model"), "--out", str(work / "quality" / s), "--report",
                                     str(work / f"quality-{s}.json")], params, log)
        cpu[f"filter@{s}"] = stage(["stages.filter", "--source", s, "--in", str(work / "clean" / s), "--out",
                                    str(work / "filtered" / s), "--report", str(work / f"filter-{s}.json"),
                                    "--quality", str(work / "quality" / s), "--jobs", "1"], params, log)
        scores, kept, texts = [], [], []
        man = json.loads((work / "clean" / s / "manifest.json").read_text())
        for u in man["units"]:
            for sh in u["shards"]:
                scores.append(np.load(work / "quality" / s / f"{sh['name']}.npy"))
                kept.append(np.load(work / "filtered" / s / f"{sh['name']}.npy") == 0)
                texts += pq.read_table(work / "clean" / s / f"{sh['name']}.parquet", columns=["text"]).column(
                    "text").to_pylist()
        sc, kp = np.concatenate(scores), np.concatenate(kept)
        kept_texts[s] = [t for t, k in zip(texts, kp) if k]
        per_source[s] = {
            "docs": int(len(sc)), "filter_kept": int(kp.sum()),
            "score_quantiles_of_kept": {f"p{q}": round(float(np.percentile(sc[kp], q)), 3) for q in (10, 25, 50, 75, 90)},
            "kept_with_min_quality_score": {str(t): int((kp & (sc >= t)).sum()) for t in (0.1, 0.25, 0.5)},
            "margin_examples": [{"score": round(float(sc[i]), 3), "text": texts[i][:160]}
                                for i in np.flatnonzero(kp & (np.abs(sc - 0.5) < 0.05))[:4].tolist()]
            if s in ("c4", "fineweb") else [],
        }
    model = qm.load(work / "model")
    web = kept_texts["c4"] + kept_texts["fineweb"]
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        model.score(web)
        best = min(best, time.process_time() - t)
    return {
        "command": "PYTHONPATH=src:. .venv/bin/python bench/bench_quality.py " + " ".join(sys.argv[1:]),
        "model": json.loads((work / "quality_model.json").read_text()),
        "per_source": per_source,
        "scoring_one_core": {"docs": len(web), "mean_chars": round(float(np.mean([len(t) for t in web])), 1),
                             "cpu_seconds": round(best, 3), "docs_per_cpu_second": round(len(web) / best, 1)},
        "stage_cpu_seconds": cpu, "work": str(work),
    }


if __name__ == "__main__":
    load0 = os.getloadavg()
    res = main()
    res["load_average_before_after"] = [round(x, 2) for x in load0 + os.getloadavg()]
    args = sys.argv
    out = Path(args[args.index("--out") + 1]) if "--out" in args else ROOT / "bench/results/quality.json"
    write_json(out, res)
    print(json.dumps({k: res[k] for k in ("model", "scoring_one_core")}, indent=1))
    for s, r in res["per_source"].items():
        print(s, r["filter_kept"], r["score_quantiles_of_kept"], r["kept_with_min_quality_score"])
