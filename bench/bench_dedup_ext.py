"""Bounded-memory dedup (dedup_ext.deduplicate) vs in-memory find_duplicates; writes
bench/results/dedup_ext.json.

    PYTHONPATH=src .venv/bin/python bench/bench_dedup_ext.py [--sizes 200000 800000]
        [--memory-mb 64] [--jobs 0] [--dir DIR]

The parent process stays small (a child generates the data): Linux carries a process's peak RSS
across exec, so a child's figure starts at its parent's RSS.

Synthetic signatures (num_perm 128, random uint32) in 8 units per size, prefs interleaved over
the units; planted: 5% near copies (0-12 of 128 slots changed, all above the 0.8 threshold),
1% exact copies, 1% far copies (40 changed: LSH candidates at most). Each measurement runs in a
fresh child process that reports its own peak RSS (getrusage RUSAGE_SELF, which includes the
interpreter with numpy and pyarrow imported: `rss_after_imports_mb` is that baseline) and wall
time:
  - ref: np.load every unit into one (N, 128) matrix, hashes as 32-char hex (as the stage holds
    them), then `find_duplicates` (14 x 9 bands);
  - ext: `deduplicate` with memory_bytes = --memory-mb, pref/exact memory-mapped, with 1 and
    with --jobs workers (0: every core), each with its own cache;
    `cold` computes band keys, `warm` reruns on the same cache (band keys reused). Its workers'
    peak RSS is reported by the workers themselves (`stats.peak_rss_tasks`).
`peak_anon_mb` is the peak anonymous RSS (RssAnon, sampled every 2 ms): ru_maxrss also counts the
file-backed pages of the memory-mapped inputs that were read, which grow with N but are page
cache the kernel can drop, so the bound `--memory-mb` sets shows in the anonymous figure.
Both sides hash their decisions (status, cluster, candidates, verified pairs): `identical`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K, BANDS, ROWS, THRESHOLD, UNITS = 128, 14, 9, 0.8, 8
RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def generate(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sig = rng.integers(0, 1 << 32, size=(n, K), dtype=np.uint64).astype(np.uint32)
    exact = rng.integers(0, 1 << 63, size=(n, 2), dtype=np.uint64)
    docs = rng.permutation(n)
    n_near, n_exact, n_far = n // 20, n // 100, n // 100
    cut = np.cumsum([0, n_near, n_near, n_exact, n_exact, n_far, n_far])
    src, dst = docs[cut[0]:cut[1]], docs[cut[1]:cut[2]]
    sig[dst] = sig[src]
    flips = rng.integers(0, 13, size=len(dst))
    for j, f in zip(dst.tolist(), flips.tolist()):
        slots = rng.choice(K, f, replace=False)
        sig[j, slots] ^= rng.integers(1, 1 << 32, size=f, dtype=np.uint64).astype(np.uint32)
    src, dst = docs[cut[2]:cut[3]], docs[cut[3]:cut[4]]
    sig[dst], exact[dst] = sig[src], exact[src]
    src, dst = docs[cut[4]:cut[5]], docs[cut[5]:cut[6]]
    sig[dst] = sig[src]
    for j in dst.tolist():
        slots = rng.choice(K, 40, replace=False)
        sig[j, slots] ^= rng.integers(1, 1 << 32, size=40, dtype=np.uint64).astype(np.uint32)
    pref = (rng.permutation(n).astype(np.uint64) << np.uint64(20)) | rng.integers(
        0, 1 << 20, size=n, dtype=np.uint64)
    bounds = np.linspace(0, n, UNITS + 1).astype(int)
    for k in range(UNITS):
        lo, hi = bounds[k], bounds[k + 1]
        np.save(root / f"sig-{k}.npy", sig[lo:hi])
        np.save(root / f"pref-{k}.npy", pref[lo:hi])
        np.save(root / f"exact-{k}.npy", exact[lo:hi])


def digest(status: list[np.ndarray], cluster: list[np.ndarray], pairs, candidates: int) -> str:
    h = hashlib.sha256()
    for a in status + cluster + [np.asarray(p, np.uint64) for p in pairs]:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(str(candidates).encode())
    return h.hexdigest()[:16]


def child_ref(root: Path) -> dict:
    import pyarrow as pa
    from llmpipe.data.dedup import Index, find_duplicates
    base = rss_mb()
    t0 = time.perf_counter()
    sigs = [np.load(root / f"sig-{k}.npy") for k in range(UNITS)]
    sig = np.concatenate(sigs)
    del sigs
    pref = np.concatenate([np.load(root / f"pref-{k}.npy") for k in range(UNITS)])
    ex = np.concatenate([np.load(root / f"exact-{k}.npy") for k in range(UNITS)])
    hashes = np.char.add(np.char.zfill(np.char.mod("%x", ex[:, 0]), 16),
                         np.char.zfill(np.char.mod("%x", ex[:, 1]), 16)).astype(np.bytes_)
    del ex
    rank = np.empty(len(pref), np.int64)
    rank[np.argsort(pref)] = np.arange(len(pref))
    sizes = [len(np.load(root / f"pref-{k}.npy", mmap_mode="r")) for k in range(UNITS)]
    offsets = np.cumsum([0] + sizes, dtype=np.int64)
    index = Index([f"u{k}" for k in range(UNITS)], offsets, pa.chunked_array([], pa.string()),
                  hashes, sig, rank)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = find_duplicates(index, THRESHOLD, BANDS, ROWS)
    dedup_s = time.perf_counter() - t0
    u, v, m = dec.pairs
    cl = pref[dec.cluster]
    return {"rss_after_imports_mb": base, "peak_rss_mb": rss_mb(), "load_s": round(load_s, 2),
            "find_duplicates_s": round(dedup_s, 2), "candidates": dec.candidates,
            "verified_pairs": len(u), "removed": int((dec.status != 0).sum()),
            "digest": digest([dec.status[offsets[k]:offsets[k + 1]] for k in range(UNITS)],
                             [cl[offsets[k]:offsets[k + 1]] for k in range(UNITS)],
                             (pref[u], pref[v], m), dec.candidates)}


class AnonPeak:
    """Peak RssAnon of this process, sampled every 2 ms: ru_maxrss also counts the file-backed
    pages of memory-mapped inputs that were read (page cache the kernel reclaims at will), which
    grow with the input; anonymous memory is what a memory param has to bound."""

    def __init__(self):
        import threading
        self.peak, self._stop = 0, False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def now_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self.now_kb())
            time.sleep(0.002)

    def stop(self) -> float:
        self._stop = True
        self._t.join()
        return round(max(self.peak, self.now_kb()) / 1024, 1)


def child_ext(root: Path, memory_mb: int, jobs: int, cache: Path, work: Path) -> dict:
    from llmpipe.data.dedup_ext import Unit, deduplicate
    base = rss_mb()
    units = [Unit(f"bench/u{k}", np.load(root / f"pref-{k}.npy", mmap_mode="r"),
                  np.load(root / f"exact-{k}.npy", mmap_mode="r"), root / f"sig-{k}.npy", f"v{k}")
             for k in range(UNITS)]
    out = {"rss_after_imports_mb": base}
    out["anon_after_imports_mb"] = round(AnonPeak.now_kb() / 1024, 1)
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        anon = AnonPeak()
        dec = deduplicate(units, num_perm=K, threshold=THRESHOLD, bands=BANDS, rows=ROWS,
                          work_dir=work, cache_dir=cache, memory_bytes=memory_mb << 20, jobs=jobs)
        out[run] = {"wall_s": round(time.perf_counter() - t0, 2), "peak_rss_mb": rss_mb(),
                    "peak_anon_mb": anon.stop(),
                    "workers_peak_rss_mb": round(dec.stats["peak_rss_tasks"] / 2**20, 1),
                    "band_keys_computed": len(dec.stats["band_keys_computed"]),
                    **{k: dec.stats[k] for k in ("jobs", "partitions_exact", "partitions_band",
                                                 "partitions_pairs")}}
    st = [dec.status[u.name] for u in units]
    out.update(candidates=dec.candidates, verified_pairs=len(dec.pairs[0]),
               removed=int(sum((s != 0).sum() for s in st)),
               digest=digest(st, [dec.cluster(u.name) for u in units], dec.pairs, dec.candidates))
    return out


def in_child(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, __file__, *args], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 800_000])
    ap.add_argument("--memory-mb", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "dedup_ext.json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, root = args.child[0], Path(args.child[1])
        if kind == "gen":
            t0 = time.perf_counter()
            generate(root, int(args.child[2]))
            out = {"generate_s": round(time.perf_counter() - t0, 2)}
        elif kind == "ref":
            out = child_ref(root)
        else:
            out = child_ext(root, int(args.child[2]), int(args.child[3]), Path(args.child[4]),
                            Path(args.child[5]))
        print(json.dumps(out))
        return
    from llmpipe.core.atomic import write_json
    from llmpipe.core.workers import resolve
    jobs = resolve(args.jobs)
    started = time.perf_counter()
    result = {"command": " ".join(["PYTHONPATH=src .venv/bin/python bench/bench_dedup_ext.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "numpy": np.__version__},
              "loadavg_before": os.getloadavg(), "parent_rss_mb": rss_mb(), "memory_mb": args.memory_mb, "jobs": jobs,
              "num_perm": K, "bands": BANDS, "rows": ROWS, "threshold": THRESHOLD, "sizes": {}}
    base = Path(tempfile.mkdtemp(prefix="bench-dedup-ext-", dir=args.dir))
    try:
        for n in args.sizes:
            root = base / f"n{n}"
            root.mkdir()
            gen_s = in_child(["--child", "gen", str(root), str(n)])["generate_s"]
            ref = in_child(["--child", "ref", str(root)])
            ext = {}
            for j in sorted({1, jobs}):
                ext[f"jobs_{j}"] = in_child(["--child", "ext", str(root), str(args.memory_mb),
                                             str(j), str(root / f"cache-{j}"), str(root / "work")])
            result["sizes"][str(n)] = {
                "generate_s": round(gen_s, 2), "signature_bytes_mb": round(n * K * 4 / 2**20, 1),
                "ref": ref, "ext": ext,
                "identical": all(ref["digest"] == e["digest"] for e in ext.values()),
                "loadavg_after": os.getloadavg()}
            print(json.dumps({n: result["sizes"][str(n)]}, indent=1), flush=True)
            shutil.rmtree(root)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
