"""How the data stages scale with the corpus: per-stage CPU, wall, memory and disk, incremental and no-op cost.

    .venv/bin/python bench/bench_scale.py --scales 1 4 16 [--keep DIR] [--rev REV] [--set KEY=VALUE ...]

For each scale: generate a corpus of ~30 MB x scale with bench/gen_corpus.py (or reuse the one
under --keep DIR), `git clone` this repository (commit --rev, default HEAD; uncommitted changes
are not benchmarked) into a fresh project, symlink its .venv, hardlink the corpus into
data/raw/SRC/ (the README's convention: data/raw is a DVC dependency), point params.yaml's
`sources` at those folders (plain YAML edit, committed in the clone) with small tokenizer/mix
settings (PARAMS below, plus --set), and run the data stages only, up to `mix`:

  1. first run: every stage upstream of `mix`, one at a time in topological order (`dvc dag
     --dot mix`, ties in `dvc stage list` order), each as `dvc repro --single-item STAGE` in a
     subprocess. CPU = ru_utime + ru_stime of os.wait4 on that subprocess (the dvc process plus
     every descendant it waited for: the stage command and its workers, so DVC's own hashing
     and cache copies are in the stage's figure) PLUS the rusage of every orphaned descendant:
     this process is a child subreaper (prctl PR_SET_CHILD_SUBREAPER) and reaps them with
     wait4(-1) after the stage. Without that, tokenize's forkserver workers are missed (the
     stage process never waits for the forkserver: measured 1.9 of 4.7 CPU s on tokenize@c4);
     `cpu_s_direct_wait4_only` keeps the plain figure. peak_rss_mb = the largest ru_maxrss: the
     largest single process (not the sum of workers); tree_pss_peak_mb: the peak of the summed
     Pss (/proc/PID/smaps_rollup, shared pages split between the processes sharing them) of
     all descendants of this process, sampled every 0.2 s (misses spikes shorter than that).
  2. disk after the run: data/ (data/raw apart), artifacts/, reports/, .dvc/cache and .dvc/tmp,
     each counted once per (st_dev, st_ino) (hardlinks once), apparent size and allocated
     blocks, as multiples of the raw input's bytes on disk and of its text bytes; link counts,
     and how many inodes the workspace outputs share with .dvc/cache (0 = DVC copied).
  3. incremental: `gen_corpus.py --add-file fineweb` adds one file of ~2% of the corpus to
     data/raw/fineweb, then the same per-stage loop; each stage is classified from DVC's log
     (ran / skipped: "didn't change" / restored from the run cache); total CPU as a share of the
     first run's (also without the skipped stages' `dvc` calls, which a single `dvc repro mix`
     would not pay 19 times).
  4. no-op: `dvc repro mix` and `dvc status`, twice each (wall, CPU).
With --whole, steps 1 and 3 are one measured `dvc repro mix` each (stage statuses from its log):
for a layout of hundreds of stages, where one `dvc` start per stage (~1-2.5 s each) would swamp
the figures. --target names another last stage.
Every figure carries os.getloadavg() before and after: the machine is shared.

Writes --out (default bench/results/scale.json) and prints a table. `--scales 1` takes a few
minutes on 2 cores. Only the stage names (`dvc dag`) and directories are assumed, not the output
files, so the same command measures a sharded layout (point --rev at it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# params set in every clone (dotted keys) on top of the corpus's `sources`
PARAMS = {
    "mix.train_tokens": 1_000_000,
    "mix.val_tokens": 100_000,
    # sentences are reused across generated documents (gen_corpus.py: one real sentence of 13+
    # words in a val doc and a train doc counts as overlap), so the leakage gate is measured, not enforced
    "mix.max_val_overlap": 1.0,
    # whole documents: a generated book is ~100k tokens, so at small scales gutenberg's share of
    # 1M train tokens misses its target by more than the shipped 5%; measured, not enforced
    "mix.tolerance": 1.0,
    "mix.weights": {"c4": 0.4, "wikipedia": 0.25, "gutenberg": 0.15, "fineweb": 0.2},
    "tokenizer.vocab_size": 8000,
    "tokenizer.sample_chars": 5_000_000,
    "clean.jobs": 0,
    "tokenize.jobs": 0,
}
PAGE = os.sysconf("SC_PAGE_SIZE")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- measuring one command -------------------------------------------------------------------

class TreePss(threading.Thread):
    """Peak of the summed Pss of a process and all its descendants, sampled."""

    def __init__(self, pid: int, every: float = 0.2, exclude: int | None = None):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.peak_procs, self._halt = pid, every, 0, 0, threading.Event()
        self.exclude = exclude

    @staticmethod
    def _children() -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    st = f.read()
            except OSError:
                continue
            ppid = int(st[st.rindex(b")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        return kids

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self._halt.is_set():
            kids, todo, tree = self._children(), [self.pid], []
            while todo:
                p = todo.pop()
                tree.append(p)
                todo += kids.get(p, [])
            tree = [p for p in tree if p != self.exclude]
            total = sum(self._pss(p) for p in tree)
            if total > self.peak:
                self.peak, self.peak_procs = total, len(tree)
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


_SUBREAPER = False


def become_subreaper() -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER): descendants orphaned by their parent (multiprocessing's
    forkserver outlives the stage process, which never waits for it) are re-parented to this
    process instead of init, so wait4 here still collects their CPU time."""
    global _SUBREAPER
    try:
        import ctypes
        _SUBREAPER = ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _SUBREAPER = False
    return _SUBREAPER


def reap_orphans(ru, linger: float) -> tuple[float, float, int, int, int]:
    """After wait4 gave `ru` for the command: reap the orphans re-parented to this subreaper
    (forkserver workers) for up to `linger` s and add their usage. Returns (user s, sys s,
    largest maxrss KB, orphans reaped, 1 if some were still running at the deadline)."""
    user, sys_, maxrss, orphans = ru.ru_utime, ru.ru_stime, ru.ru_maxrss, 0
    deadline = time.perf_counter() + linger
    while True:
        try:
            cpid, _st, ru2 = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return user, sys_, maxrss, orphans, 0
        if cpid == 0:
            if time.perf_counter() > deadline:
                return user, sys_, maxrss, orphans, 1
            time.sleep(0.02)
            continue
        user, sys_, maxrss, orphans = user + ru2.ru_utime, sys_ + ru2.ru_stime, max(maxrss, ru2.ru_maxrss), orphans + 1


def measured(cmd: list[str], cwd: Path, env: dict, log: Path, timeout: float | None = None,
             linger: float = 30.0) -> dict:
    la0, t0 = load(), time.perf_counter()
    with open(log, "wb") as out:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreePss(os.getpid() if _SUBREAPER else p.pid, exclude=os.getpid())
        sampler.start()
        timer = threading.Timer(timeout, p.kill) if timeout else None
        if timer:
            timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        if timer:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)   # wait4 reaped it; tell Popen
        wall = time.perf_counter() - t0
        user, sys_, maxrss, orphans, left = reap_orphans(ru, linger) if _SUBREAPER else \
            (ru.ru_utime, ru.ru_stime, ru.ru_maxrss, 0, 0)
    sampler.stop()
    return {"rc": p.returncode, "cpu_s": round(user + sys_, 2), "user_s": round(user, 2),
            "sys_s": round(sys_, 2), "wall_s": round(wall, 2), "peak_rss_mb": round(maxrss / 1024, 1),
            "tree_pss_peak_mb": round(sampler.peak / 2**20, 1), "tree_procs_at_peak": sampler.peak_procs,
            "orphans_reaped": orphans, "orphans_still_running": left,
            "cpu_s_direct_wait4_only": round(ru.ru_utime + ru.ru_stime, 2),
            "loadavg_before": la0, "loadavg_after": load()}


# --- project ---------------------------------------------------------------------------------

def sh(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode:
        raise SystemExit(f"{' '.join(cmd)} (in {cwd}) failed with {r.returncode}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r.stdout


def make_project(dest: Path, repo: Path, rev: str, venv: Path, corpus: Path, extra: dict, cache_type: str | None) -> dict:
    import yaml
    if dest.exists():
        shutil.rmtree(dest)
    sh(["git", "clone", "-q", "--no-checkout", str(repo), str(dest)], cwd=repo.parent)
    sh(["git", "checkout", "-q", "--detach", rev], cwd=dest)
    (dest / ".venv").symlink_to(venv)
    meta = json.loads((corpus / "corpus.json").read_text())
    linked = copied = 0
    for root, _, files in os.walk(corpus):
        rel = Path(root).relative_to(corpus)
        (dest / "data" / "raw" / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            src, dst = Path(root) / name, dest / "data" / "raw" / rel / name
            try:
                os.link(src, dst)
                linked += 1
            except OSError:
                shutil.copy2(src, dst)
                copied += 1
    params_path = dest / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    sources = {}
    for name, sp in meta["sources"].items():
        base = dict(params.get("sources", {}).get(name, {}))
        base.pop("sample_docs", None)
        base.pop("sample_seed", None)
        sources[name] = {**base, **sp, "uri": f"data/raw/{name}"}   # where the corpus is linked
    params["sources"] = sources
    applied = {"sources": sources}
    for key, value in {**PARAMS, **extra}.items():
        node = params
        *parents, last = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
        applied[key] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    if cache_type:
        sh(["dvc", "config", "--local", "cache.type", cache_type], cwd=dest, env=ENV(dest))
    sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qam",
        "bench: generated corpus params"], cwd=dest)
    return {"params_set": applied, "raw_files_hardlinked": linked, "raw_files_copied": copied}


def ENV(project: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{project / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(project / "src")   # the clone's llmpipe, not the editable install's
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def stage_order(project: Path, env: dict, target: str) -> list[str]:
    dot = sh(["dvc", "dag", "--dot", target], cwd=project, env=env)
    nodes, edges = [], []
    for line in dot.splitlines():
        m = re.match(r'\s*"([^"]+)"\s*->\s*"([^"]+)"', line)
        if m:
            edges.append(m.groups())
            continue
        m = re.match(r'\s*"([^"]+)";', line)
        if m:
            nodes.append(m.group(1))
    listed = sh(["dvc", "stage", "list", "--name-only"], cwd=project, env=env).split()
    rank = {s: i for i, s in enumerate(listed)}
    indeg, out = {n: 0 for n in nodes}, {n: [] for n in nodes}
    for a, b in edges:
        indeg[b] += 1
        out[a].append(b)
    order, ready = [], sorted((n for n in nodes if not indeg[n]), key=lambda n: rank.get(n, 1 << 30))
    while ready:
        n = ready.pop(0)
        order.append(n)
        for b in out[n]:
            indeg[b] -= 1
            if not indeg[b]:
                ready.append(b)
        ready.sort(key=lambda n: rank.get(n, 1 << 30))
    if len(order) != len(nodes):
        raise SystemExit(f"dvc dag has a cycle? {nodes} {edges}")
    return order


def classify(log: str, stage: str) -> str:
    q = re.escape(stage)
    if re.search(rf"Stage '{q}' is cached - skipping run", log):
        return "run_cache"
    if re.search(rf"Running stage '{q}'", log):
        return "ran"
    if re.search(rf"Stage '{q}' didn't change, skipping", log):
        return "skipped"
    return "unknown"


_UNITS = re.compile(r"(\d+) shard units?: (\d+) built, (\d+) reused(?: \(([^)]*)\))?")


def shard_units(log: str) -> list[dict]:
    """Every `N shard units: B built, R reused (WHERE)` line a sharded stage logged."""
    return [{"units": int(n), "built": int(b), "reused": int(r), "from": w or None, "line": m.group(0)}
            for m in _UNITS.finditer(log) for n, b, r, w in [m.groups()]]


def run_stages(project: Path, env: dict, stages: list[str], logs: Path, tag: str, timeout: float | None) -> list[dict]:
    rows = []
    for st in stages:
        log = logs / f"{tag}-{st.replace('@', '_')}.log"
        r = measured(["dvc", "repro", "--single-item", st], project, env, log, timeout)
        text = log.read_text(errors="replace")
        r = {"stage": st, "status": classify(text, st), **r}
        units = shard_units(text)
        if units:
            r["shard_units"] = units
        rows.append(r)
        print(f"  {tag:<5} {st:<22} {r['status']:<9} cpu {r['cpu_s']:>7.1f} s  wall {r['wall_s']:>7.1f} s  "
              f"rss {r['peak_rss_mb']:>6.0f} MB  pss {r['tree_pss_peak_mb']:>6.0f} MB  load {r['loadavg_before'][0]}"
              + "".join(f"  [{u['line']}]" for u in units), file=sys.stderr, flush=True)
        if r["rc"]:
            r["log_tail"] = text[-3000:]
            print(text[-3000:], file=sys.stderr)
            break
    return rows


def run_whole(project: Path, env: dict, stages: list[str], logs: Path, tag: str, timeout: float | None,
              target: str) -> list[dict]:
    """--whole: ONE `dvc repro TARGET`, measured as a whole (one dvc start instead of one per
    stage: for layouts with hundreds of stages); which stages ran is read from its log."""
    log = logs / f"{tag}-whole.log"
    r = measured(["dvc", "repro", target], project, env, log, timeout)
    text = log.read_text(errors="replace")
    status = {st: classify(text, st) for st in stages}
    row = {"stage": f"dvc repro {target}", "status": "ran", "stage_status": status, **r}
    print(f"  {tag:<5} dvc repro {target}: cpu {r['cpu_s']:.1f} s  wall {r['wall_s']:.1f} s  rss "
          f"{r['peak_rss_mb']:.0f} MB  pss {r['tree_pss_peak_mb']:.0f} MB; ran "
          f"{sum(v in ('ran', 'run_cache') for v in status.values())} of {len(stages)} stages", file=sys.stderr)
    if r["rc"]:
        row["log_tail"] = text[-3000:]
        print(text[-3000:], file=sys.stderr)
    return [row]


def totals(rows: list[dict]) -> dict:
    ran = [r for r in rows if r["status"] in ("ran", "run_cache")]
    if rows and "stage_status" in rows[0]:   # --whole
        names = [st for st, v in rows[0]["stage_status"].items() if v in ("ran", "run_cache")]
        return {"cpu_s": rows[0]["cpu_s"], "wall_s": rows[0]["wall_s"], "cpu_s_stages_that_ran": rows[0]["cpu_s"],
                "wall_s_stages_that_ran": rows[0]["wall_s"], "peak_rss_mb": rows[0]["peak_rss_mb"],
                "tree_pss_peak_mb": rows[0]["tree_pss_peak_mb"], "stages": len(rows[0]["stage_status"]),
                "ran": names, "failed": [rows[0]["stage"]] if rows[0]["rc"] else []}
    return {"cpu_s": round(sum(r["cpu_s"] for r in rows), 1), "wall_s": round(sum(r["wall_s"] for r in rows), 1),
            "cpu_s_stages_that_ran": round(sum(r["cpu_s"] for r in ran), 1),
            "wall_s_stages_that_ran": round(sum(r["wall_s"] for r in ran), 1),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in rows), default=0),
            "tree_pss_peak_mb": max((r["tree_pss_peak_mb"] for r in rows), default=0),
            "stages": len(rows), "ran": [r["stage"] for r in ran], "failed": [r["stage"] for r in rows if r["rc"]]}


# --- disk --------------------------------------------------------------------------------------

def inodes(path: Path, skip: tuple[Path, ...] = ()) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(st_dev, st_ino) -> (size, allocated bytes, link count) of every regular file under path."""
    found = {}
    if not path.exists():
        return found
    for root, dirs, files in os.walk(path):
        if any(Path(root) == s or s in Path(root).parents for s in skip):
            dirs[:] = []
            continue
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.stat.S_ISREG(st.st_mode):
                continue
            found[(st.st_dev, st.st_ino)] = (st.st_size, st.st_blocks * 512, st.st_nlink)
    return found


def disk_report(project: Path, raw_text_bytes: int, raw_disk: int) -> dict:
    """raw_disk / raw_text_bytes: the generated input files' bytes on disk / their text (corpus.json)."""
    raw = inodes(project / "data" / "raw")
    parts = {
        "data_outputs": inodes(project / "data", skip=(project / "data" / "raw",)),
        "artifacts": inodes(project / "artifacts"),
        "reports": inodes(project / "reports"),
        "dvc_cache": inodes(project / ".dvc" / "cache"),
        "dvc_tmp": inodes(project / ".dvc" / "tmp"),
    }
    workspace = {**parts["data_outputs"], **parts["artifacts"], **parts["reports"]}

    def summ(d: dict) -> dict:
        size = sum(v[0] for v in d.values())
        return {"files": len(d), "bytes": size, "alloc_bytes": sum(v[1] for v in d.values()),
                "x_raw_disk": round(size / raw_disk, 3) if raw_disk else None,
                "x_raw_text": round(size / raw_text_bytes, 3) if raw_text_bytes else None,
                "files_with_nlink_gt_1": sum(1 for v in d.values() if v[2] > 1),
                "max_nlink": max((v[2] for v in d.values()), default=0)}

    shared = set(workspace) & set(parts["dvc_cache"])
    union = {**workspace, **parts["dvc_cache"]}
    return {"raw_input": {**summ(raw), "corpus_disk_bytes": raw_disk, "corpus_text_bytes": raw_text_bytes,
                          "note": "data/raw as DVC hashes it (generated files + the repo's README.md files + "
                                  "corpus.json); the x_ multiples divide by corpus_disk_bytes / corpus_text_bytes"},
            **{k: summ(v) for k, v in parts.items()},
            "workspace_outputs": summ(workspace),
            "workspace_and_cache_unique": summ(union),
            "inodes_shared_workspace_cache": len(shared),
            "bytes_shared_workspace_cache": sum(workspace[k][0] for k in shared)}


# --- metrics (layout-free: whatever `dvc metrics show` finds) --------------------------------------

def metrics_summary(project: Path, env: dict) -> dict:
    r = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    try:
        data = json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"error": r.stderr[-500:]}
    out = {}
    for _rev, body in data.items():
        for path, content in body.get("data", {}).items():
            d = content.get("data", {})
            keep = {k: v for k, v in d.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
            for k in ("dropped_by_reason", "skipped_by_reason", "per_source", "shares"):
                if isinstance(d.get(k), dict) and ("dedup" in path or "mix" in path or k == "skipped_by_reason"):
                    keep[k] = d[k]
            out[path] = keep
    return out


def dedup_vs_planted(metrics: dict, meta: dict) -> dict:
    """Documents dedup dropped (every metrics file under a path holding "dedup" with a
    dropped_by_reason, summed: one report or one per shard) next to what gen_corpus planted."""
    dropped: dict[str, int] = {}
    for path, m in metrics.items():
        if "dedup" in path and isinstance(m.get("dropped_by_reason"), dict):
            for k, v in m["dropped_by_reason"].items():
                dropped[k] = dropped.get(k, 0) + v
    planted = {}
    for s in meta["summary"]["per_source"].values():
        for k, v in s["planted"].items():
            planted[k] = planted.get(k, 0) + v
    return {"dedup_dropped": dropped, "planted": planted,
            "note": "a planted copy that a filter rule drops (or whose original it drops) never reaches dedup"}


# --- one scale ---------------------------------------------------------------------------------

def corpus_for(scale: float, seed: int, base: Path, corpus_src: str, logs: Path,
               file_frac: float | None = None) -> tuple[Path, dict]:
    cdir = base / (f"corpus-s{scale:g}-seed{seed}" + (f"-ff{file_frac:g}" if file_frac else ""))
    meta_path = cdir / "corpus.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        g = meta["generator"]
        if (g["scale"] == scale and g["seed"] == seed and not meta.get("added_files")
                and g.get("file_frac") == (file_frac or 0.02)):
            print(f"scale {scale:g}: reusing corpus {cdir}", file=sys.stderr)
            return cdir, {"reused": True, "seconds": g["seconds"]}
    if cdir.exists():
        shutil.rmtree(cdir)
    cmd = [sys.executable, str(HERE / "gen_corpus.py"), "--scale", f"{scale:g}", "--out", str(cdir),
           "--seed", str(seed), "--corpus", corpus_src] + (["--file-frac", f"{file_frac:g}"] if file_frac else [])
    r = measured(cmd, base, dict(os.environ), logs / f"gen-s{scale:g}.log")
    if r["rc"]:
        raise SystemExit((logs / f"gen-s{scale:g}.log").read_text())
    print((logs / f"gen-s{scale:g}.log").read_text(), file=sys.stderr, end="")
    return cdir, {"reused": False, **r}


def bench_scale(scale: float, a, base: Path, rev: str, venv: Path, extra: dict) -> dict:
    tag = f"s{scale:g}" + (f"-ff{a.file_frac:g}" if a.file_frac else "")
    logs = base / f"logs-{tag}"
    logs.mkdir(parents=True, exist_ok=True)
    corpus, gen = corpus_for(scale, a.seed, base, a.corpus, logs, a.file_frac)
    meta = json.loads((corpus / "corpus.json").read_text())
    project = base / f"project-{tag}"
    setup = make_project(project, REPO if a.repo is None else Path(a.repo), rev, venv, corpus, extra, a.cache_type)
    env = ENV(project)
    order = stage_order(project, env, a.target)
    print(f"scale {scale:g}: {meta['summary']['total']['text_bytes'] / 1e6:.1f} MB text in "
          f"{meta['summary']['total']['files']} files -> {project}; stages: {' '.join(order)}", file=sys.stderr)
    res = {"corpus": {"dir": str(corpus), "generator": meta["generator"], "summary": meta["summary"],
                      "unplanted_exact_collisions": meta.get("unplanted_exact_collisions"),
                      "generation": gen},
           "project": str(project), **setup, "stage_order": order}
    run = ((lambda tag: run_whole(project, env, order, logs, tag, a.stage_timeout, a.target)) if a.whole else
           (lambda tag: run_stages(project, env, order, logs, tag, a.stage_timeout)))
    first = run("first")
    res["first_run"] = {"stages": first, "totals": totals(first)}
    res["disk"] = disk_report(project, meta["summary"]["total"]["text_bytes"], meta["summary"]["total"]["disk_bytes"])
    res["metrics"] = metrics_summary(project, env)
    res["dedup_vs_planted"] = dedup_vs_planted(res["metrics"], meta)
    if res["first_run"]["totals"]["failed"]:
        return res

    # incremental: one more fineweb file of ~2% of the corpus
    add = measured([sys.executable, str(HERE / "gen_corpus.py"), "--add-file", a.add_source, "--out",
                    str(project / "data" / "raw")], project, dict(os.environ), logs / "add-file.log")
    added = json.loads((project / "data" / "raw" / "corpus.json").read_text())["added_files"][-1]
    inc = run("incr")
    t_first, t_inc = res["first_run"]["totals"], totals(inc)
    res["incremental"] = {
        "added_file": {**added, "share_of_corpus_text": round(added["text_bytes"] / meta["summary"]["total"]["text_bytes"], 4),
                       "generation": add},
        "stages": inc, "totals": t_inc, "reran": t_inc["ran"],
        "skipped": [st for st in order if st not in t_inc["ran"]],
        "cpu_share_of_first": round(t_inc["cpu_s"] / t_first["cpu_s"], 3) if t_first["cpu_s"] else None,
        "cpu_share_of_first_stages_that_ran": round(t_inc["cpu_s_stages_that_ran"] / t_first["cpu_s"], 3)
        if t_first["cpu_s"] else None,
        "wall_share_of_first": round(t_inc["wall_s"] / t_first["wall_s"], 3) if t_first["wall_s"] else None,
        "disk_after": disk_report(project, meta["summary"]["total"]["text_bytes"] + added["text_bytes"],
                                  meta["summary"]["total"]["disk_bytes"] + added["disk_bytes"]),
    }
    # no-op
    noop = {"repro": [], "status": []}
    for i in range(2):
        r = measured(["dvc", "repro", a.target], project, env, logs / f"noop-repro-{i}.log")
        r["up_to_date"] = "up to date" in (logs / f"noop-repro-{i}.log").read_text()
        noop["repro"].append(r)
        noop["status"].append(measured(["dvc", "status"], project, env, logs / f"noop-status-{i}.log"))
    res["noop"] = noop
    print(f"  no-op dvc repro {a.target}: {noop['repro'][-1]['wall_s']} s wall; dvc status {noop['status'][-1]['wall_s']} s",
          file=sys.stderr)
    return res


# --- report ------------------------------------------------------------------------------------

def table(results: dict) -> str:
    lines = []
    for scale, r in results.items():
        t = r["corpus"]["summary"]["total"]
        lines.append(f"\nscale {scale}: {t['text_bytes'] / 1e6:.1f} MB text, {t['disk_bytes'] / 1e6:.1f} MB raw on disk, "
                     f"{t['files']} files, {t['docs']:,} docs ({t['planted']} planted)")
        inc = {s["stage"]: s for s in r.get("incremental", {}).get("stages", [])}
        lines.append(f"  {'stage':<22} {'cpu s':>8} {'wall s':>8} {'rss MB':>7} {'pss MB':>7} {'load1':>6} | "
                     f"{'incr':<9} {'cpu s':>7}")
        for s in r["first_run"]["stages"]:
            i = inc.get(s["stage"], {})
            lines.append(f"  {s['stage']:<22} {s['cpu_s']:>8.1f} {s['wall_s']:>8.1f} {s['peak_rss_mb']:>7.0f} "
                         f"{s['tree_pss_peak_mb']:>7.0f} {s['loadavg_before'][0]:>6.2f} | {i.get('status', ''):<9} "
                         f"{i.get('cpu_s', float('nan')):>7.1f}")
        ft = r["first_run"]["totals"]
        lines.append(f"  {'total':<22} {ft['cpu_s']:>8.1f} {ft['wall_s']:>8.1f} {ft['peak_rss_mb']:>7.0f} "
                     f"{ft['tree_pss_peak_mb']:>7.0f} {'':>6} | {'':<9} {r.get('incremental', {}).get('totals', {}).get('cpu_s', float('nan')):>7.1f}")
        dv = r.get("dedup_vs_planted", {})
        lines.append(f"  dedup dropped {dv.get('dedup_dropped')}; planted {dv.get('planted')}")
        d = r["disk"]
        lines.append(f"  disk (x raw on disk / x raw text): workspace outputs {d['workspace_outputs']['x_raw_disk']} / "
                     f"{d['workspace_outputs']['x_raw_text']}, .dvc/cache {d['dvc_cache']['x_raw_disk']} / "
                     f"{d['dvc_cache']['x_raw_text']}, both counted once {d['workspace_and_cache_unique']['x_raw_disk']} / "
                     f"{d['workspace_and_cache_unique']['x_raw_text']}; inodes shared workspace-cache "
                     f"{d['inodes_shared_workspace_cache']}")
        if "incremental" in r:
            i = r["incremental"]
            lines.append(f"  incremental (+{i['added_file']['path']}, {i['added_file']['share_of_corpus_text']:.1%} of the text): "
                         f"reran {', '.join(i['reran'])}; CPU {i['cpu_share_of_first']:.1%} of the first run "
                         f"({i['cpu_share_of_first_stages_that_ran']:.1%} in the stages that ran)")
            n = r["noop"]
            lines.append(f"  no-op: dvc repro {n['repro'][-1]['wall_s']} s wall ({n['repro'][-1]['cpu_s']} s CPU), "
                         f"dvc status {n['status'][-1]['wall_s']} s wall")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0])
    ap.add_argument("--keep", metavar="DIR", help="keep corpora, projects and logs here (corpora are reused)")
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus"), help="real samples (gen_corpus --corpus)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repo", default=None, help="git repository to clone (default: this one)")
    ap.add_argument("--rev", default="HEAD", help="commit to benchmark (default: HEAD of --repo)")
    ap.add_argument("--venv", default=None, help="venv to symlink as .venv (default: this repo's .venv, resolved)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra params.yaml override, dotted key, YAML value (repeatable)")
    ap.add_argument("--cache-type", default=None, help="dvc config cache.type in the clones (default: DVC's, reflink,copy)")
    ap.add_argument("--file-frac", type=float, default=None,
                    help="gen_corpus --file-frac: share of the corpus text per input file (default 0.02; "
                         "0.0009 gives ~1,000 files at any scale)")
    ap.add_argument("--add-source", default="fineweb", help="source that gets the incremental file")
    ap.add_argument("--target", default="mix", help="last stage to run (the data stages end at mix)")
    ap.add_argument("--whole", action="store_true",
                    help="measure one `dvc repro TARGET` per run instead of one `dvc repro --single-item` per "
                         "stage (no per-stage figures; for layouts with many stages)")
    ap.add_argument("--stage-timeout", type=float, default=None, help="kill a stage's dvc after this many seconds")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scale.json"))
    a = ap.parse_args()
    import yaml
    extra = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        extra[k] = yaml.safe_load(v)
    repo = Path(a.repo).resolve() if a.repo else REPO
    a.repo = str(repo)
    rev = sh(["git", "rev-parse", a.rev], cwd=repo).strip()
    venv = Path(a.venv).resolve() if a.venv else (REPO / ".venv").resolve()
    dvc_version = sh([str(venv / "bin" / "dvc"), "--version"], cwd=repo).strip()
    base = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="llmpipe-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    if not become_subreaper():
        print("warning: not a child subreaper; CPU of orphaned workers (tokenize's forkserver) is missed",
              file=sys.stderr)
    started, la0 = datetime.datetime.now().isoformat(timespec="seconds"), load()
    results = {}
    try:
        for scale in a.scales:
            results[f"{scale:g}"] = bench_scale(scale, a, base, rev, venv, extra)
    finally:
        doc = {"command": "python bench/bench_scale.py " + " ".join(sys.argv[1:]),
               "started": started, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
               "rev": rev, "dvc": dvc_version, "python": platform.python_version(), "cpus": os.cpu_count(),
               "loadavg_start": la0, "loadavg_end": load(),
               "method": ("per stage: `dvc repro --single-item STAGE` in topological order (`dvc dag --dot mix`), "
                          "rusage of os.wait4 on the dvc process (CPU = user+sys of dvc and every descendant it "
                          "waited for, incl. DVC hashing and cache copies) plus the rusage of orphaned descendants "
                          "(this process is a child subreaper and reaps them: tokenize's forkserver workers); "
                          "peak_rss_mb = the largest single process; tree_pss_peak_mb = peak of summed Pss over "
                          "all descendants, sampled every 0.2 s; disk counted once per (st_dev, st_ino)"),
               "subreaper": _SUBREAPER,
               "params_set_in_clone": {**PARAMS, **extra}, "keep": str(base) if a.keep else None,
               "scales": results}
        if results:
            out = Path(a.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
            os.replace(tmp, out)
            print(table(results))
            print(f"\nwrote {out}", file=sys.stderr)
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
