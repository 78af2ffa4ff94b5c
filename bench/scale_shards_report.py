"""Merge the sharded-pipeline scale runs into bench/results/scale_shards.json and scale_shards.md.

    .venv/bin/python bench/scale_shards_report.py [--parts bench/results/scale_shards_parts]

Reads what bench_scale.py, bench_incr_whole.py, bench_dedup_mem.py and bench_noop.py wrote under
--parts (file names below), checks the targets, fits per-stage CPU against the corpus's text
bytes and extrapolates to FineWeb 10BT / 350BT on a 16-core, 128 GB box. No measuring here.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNS = {  # key -> file under --parts (bench_scale.py outputs)
    "1": "scale_shards_1.json", "4": "scale_shards_4.json", "16": "scale_shards_16.json",
    "4-ff0.004": "scale_shards_4_ff0.004.json", "16-ff0.001": "scale_shards_16_ff0.001.json",
}
DEFAULT = ["1", "4", "16"]
TARGETS_GB = {"FineWeb 10BT": {"text_gb": 45.0, "docs": 15e6}, "FineWeb 350BT": {"text_gb": 1600.0, "docs": 500e6}}
CORES, RAM_GB = 16, 128
SERIAL = {"tokenizer", "mix"}   # one process (tokenizer.num_threads 1; mix); every other stage uses all cores
SHARD_MB = 256                  # sources.SRC.shard_mb default: millions of characters per shard


def stage_kind(st: str) -> str:
    return st.split("@")[0]


def load(p: Path) -> dict:
    return json.loads(p.read_text())


def per_scale(key: str, doc: dict) -> dict:
    (sc, r), = doc["scales"].items()
    t = r["corpus"]["summary"]["total"]
    first = {s["stage"]: {k: s[k] for k in ("status", "cpu_s", "wall_s", "peak_rss_mb", "tree_pss_peak_mb",
                                            "loadavg_before")} | ({"shard_units": s["shard_units"][0]["line"]}
                                                                  if s.get("shard_units") else {})
             for s in r["first_run"]["stages"]}
    inc = r.get("incremental", {})
    incr = {s["stage"]: {k: s[k] for k in ("status", "cpu_s", "wall_s", "peak_rss_mb", "loadavg_before")}
            | ({"shard_units": s["shard_units"][0]["line"]} if s.get("shard_units") else {})
            for s in inc.get("stages", [])}
    d = r["disk"]
    noop = r.get("noop", {})
    return {
        "command": doc["command"], "rev": doc["rev"], "dvc": doc["dvc"], "cpus": doc["cpus"],
        "started": doc["started"], "finished": doc["finished"],
        "loadavg_start": doc["loadavg_start"], "loadavg_end": doc["loadavg_end"],
        "params_set_in_clone": doc["params_set_in_clone"],
        "corpus": {"text_bytes": t["text_bytes"], "raw_disk_bytes": t["disk_bytes"], "docs": t["docs"],
                   "files": t["files"], "planted": t["planted"], "file_frac": r["corpus"]["generator"]["file_frac"],
                   "generator_command": r["corpus"]["generator"]["command"]},
        "shards": sum(int(v["shard_units"].split()[0]) for s, v in first.items() if s.startswith("ingest@")),
        "first_run": {"stages": first, "totals": r["first_run"]["totals"]},
        "disk": {"raw_input_disk_bytes": d["raw_input"]["corpus_disk_bytes"],
                 "raw_input_text_bytes": d["raw_input"]["corpus_text_bytes"],
                 "workspace_outputs_x_raw_disk": d["workspace_outputs"]["x_raw_disk"],
                 "dvc_cache_x_raw_disk": d["dvc_cache"]["x_raw_disk"],
                 "workspace_and_cache_once_per_inode_bytes": d["workspace_and_cache_unique"]["bytes"],
                 "workspace_and_cache_once_per_inode_x_raw_disk": d["workspace_and_cache_unique"]["x_raw_disk"],
                 "workspace_and_cache_once_per_inode_x_raw_text": d["workspace_and_cache_unique"]["x_raw_text"],
                 "inodes_shared_workspace_cache": d["inodes_shared_workspace_cache"],
                 "after_incremental_x_raw_disk": inc.get("disk_after", {}).get("workspace_and_cache_unique", {}).get("x_raw_disk")},
        "incremental_per_stage_loop": {
            "added_file": {k: inc["added_file"][k] for k in ("path", "text_bytes", "share_of_corpus_text")} if inc else None,
            "stages": incr, "reran": inc.get("reran"), "cpu_s": inc.get("totals", {}).get("cpu_s"),
            "cpu_share_of_first": inc.get("cpu_share_of_first"),
            "cpu_share_of_first_stages_that_ran": inc.get("cpu_share_of_first_stages_that_ran"),
            "method": "one `dvc repro --single-item STAGE` per stage (19 dvc starts)"},
        "noop_in_run": {"dvc_repro_mix_wall_s": [x["wall_s"] for x in noop.get("repro", [])],
                        "dvc_status_wall_s": [x["wall_s"] for x in noop.get("status", [])],
                        "loadavg": [x["loadavg_before"] for x in noop.get("repro", [])]},
        "dedup_report": {k: v for k, v in r["metrics"].get("reports/dedup.json", {}).items()
                         if k in ("docs_in", "docs_kept", "clusters", "candidate_pairs", "verified_pairs", "shards")},
    }


def fit(xs, ys):
    """least squares y = a + b x"""
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def md_tables(doc: dict) -> str:
    """The report's figures as Markdown tables; the prose around them is written by hand."""
    sc, iw, nm = doc["scales"], doc["incremental_one_dvc_repro"], doc["noop_repeats"]["projects"]
    proj = {"1": "project-s1", "4": "project-s4", "16": "project-s16", "4-ff0.004": "project-s4-ff0.004",
            "16-ff0.001": "project-s16-ff0.001"}
    label = {"1": "1x", "4": "4x", "16": "16x", "4-ff0.004": "4x, {f} files", "16-ff0.001": "16x, {f} files"}
    out = ["| corpus | text MB | docs | shards | first run CPU s (wall) | load1 in the first run | disk ws+cache, once "
           "per inode (x raw disk / x text) | +1 file: CPU share of the first run (stage by stage / one `dvc repro mix`) "
           "| no-op `dvc repro mix` / `dvc status` median of 5 (load1) |", "| --- " * 9 + "|"]
    for k, r in sc.items():
        loads = [v["loadavg_before"][0] for v in r["first_run"]["stages"].values()]
        inc = r["incremental_per_stage_loop"]
        one = f" / {_pct(iw[k]['cpu_share_of_first'])}" if k in iw else ""
        share = f"{_pct(inc['cpu_share_of_first'])}{one} ({inc['added_file']['share_of_corpus_text']:.1%} file)"
        n = nm.get(proj[k], {})
        noop = (f"{n['repro']['wall_s_median']:.2f} / {n['status']['wall_s_median']:.2f} s ({n['repro']['load1_median']})"
                if n else "-")
        t = r["first_run"]["totals"]
        other_rev = f" (rev {r['rev'][:7]})" if r["rev"] != doc["rev"] else ""
        out.append(f"| {label[k].format(f=r['corpus']['files'])}{other_rev} | {r['corpus']['text_bytes'] / 1e6:.1f} | "
                   f"{r['corpus']['docs']:,} | {r['shards']} | {t['cpu_s']:.1f} ({t['wall_s']:.1f}) | "
                   f"{min(loads):.1f}-{max(loads):.1f} | {r['disk']['workspace_and_cache_once_per_inode_x_raw_disk']:.2f} / "
                   f"{r['disk']['workspace_and_cache_once_per_inode_x_raw_text']:.2f} | {share} | {noop} |")
    out += ["", "Per stage, first run (CPU s / wall s at 16x; peak RSS MB of the largest process at each corpus) and the "
            "+1 file rerun (16x stage by stage: CPU s and the stage's shard line).", "",
            "| stage | CPU 16x | wall 16x | RSS 4x | RSS 16x | change | RSS 4x-261 | RSS 16x-1027 | change | "
            "CPU s per GB (fit) | +1 file at 16x | +1 file at 16x, 1027 files |", "| --- " * 12 + "|"]
    rd, rf = doc["rss_4x_to_16x"]["default_corpus"], doc["rss_4x_to_16x"]["fixed_file_size"]
    rates = doc["cpu_rates"]["per_stage"]

    def inc_cell(k: str, st: str) -> str:
        v = sc[k]["incremental_per_stage_loop"]["stages"].get(st)
        if not v:
            return "-"
        return f"{v['status']} {v['cpu_s']:.1f} s" + (f": {v['shard_units']}" if v.get("shard_units") else "")
    for st, v in sc["16"]["first_run"]["stages"].items():
        bold = lambda c: f"**{c:+.0%}**" if abs(c) > 0.20 else f"{c:+.0%}"  # noqa: E731
        d4 = (f"{rd[st]['rss_4x_mb']:.0f} | {rd[st]['rss_16x_mb']:.0f} | {bold(rd[st]['change'])}" if st in rd else
              f"- | {v['peak_rss_mb']:.0f} | -")
        out.append(f"| {st} | {v['cpu_s']:.1f} | {v['wall_s']:.1f} | {d4} | {rf[st]['rss_4x_mb']:.0f} | "
                   f"{rf[st]['rss_16x_mb']:.0f} | {bold(rf[st]['change'])} | {rates[st]['cpu_s_per_gb_text']:.0f} | {inc_cell('16', st)} | {inc_cell('16-ff0.001', st)} |")
    out += ["", "One `dvc repro mix` after one more file (bench_incr_whole.py):", "",
            "| corpus | added file (share of the text) | CPU s (wall) | share of the first run's CPU | load1 | stages that ran | shard lines |",
            "| --- " * 7 + "|"]
    for k, v in iw.items():
        lines = "; ".join(f"{s}: {u}" for s, u in v["shard_units"].items() if not u.split(": ")[1].startswith("0 built"))
        out.append(f"| {label[k]} | {v['added_file']['path']} ({v['added_file']['share_of_corpus_text']:.1%}) | "
                   f"{v['cpu_s']:.1f} ({v['wall_s']:.1f}) | {_pct(v['cpu_share_of_first'])} | {v['loadavg_before'][0]} | "
                   f"{len(v['ran'])} | {lines} |")
    out += ["", "Dedup (bench_dedup_mem.py): peak RSS of the largest process, MB, per `dedup.memory_mb`:", "",
            "| corpus | docs | " + " | ".join(f"{m} {mode}" for m in (1024, 64, 16) for mode in ("cold", "warm")) +
            " | same survivors and masks | kept / clusters |", "| --- " * 10 + "|"]
    for k, v in doc["dedup_memory"].items():
        cells = {(r["memory_mb"], r["mode"]): r["peak_rss_mb"] for r in v["runs"]}
        r0 = v["runs"][0]
        out.append(f"| {k} | {v['docs']:,} | " + " | ".join(str(cells.get((m, mode), "-")) for m in (1024, 64, 16)
                                                        for mode in ("cold", "warm")) +
                   f" | {v['same_survivors_and_masks']} | {r0['docs_kept']:,} / {r0['clusters']:,} |")
    out += ["", "No-op (bench_noop.py, median of 5):", "", "| project | shards | files in the DVC outputs | `dvc repro mix` s (min) | "
            "CPU s | `dvc status` s (min) | load1 |", "| --- " * 7 + "|"]
    for k, v in nm.items():
        out.append(f"| {k} | {v['shards']} | {v['files_in_dvc_outputs']:,} | {v['repro']['wall_s_median']:.2f} "
                   f"({v['repro']['wall_s_min']:.2f}) | {v['repro']['cpu_s_median']:.2f} | {v['status']['wall_s_median']:.2f} "
                   f"({v['status']['wall_s_min']:.2f}) | {v['repro']['load1_median']} |")
    ex = {k: v for k, v in doc["extrapolation"].items() if isinstance(v, dict) and "text_gb" in v}
    names = list(ex)
    out += ["", "| | " + " | ".join(names) + " |", "| --- " * (len(names) + 1) + "|"]
    rows = [("shards (256 M chars each)", lambda e: f"~{e['shards_at_shard_mb_256']:,}"),
            ("first run CPU", lambda e: f"{e['first_run_cpu_h']} CPU-h (" + ", ".join(
                f"{k} {v}" for k, v in sorted(e["first_run_cpu_h_by_stage_kind"].items(), key=lambda x: -x[1])[:3]) + ")"),
            ("first run wall, 16 cores", lambda e: f">= {e['first_run_wall_h_16_cores_ideal']} h"),
            ("+2% file", lambda e: f"~{e['incremental_2pct_file_cpu_h']} CPU-h, {e['incremental_share_of_first']:.1%} of the first run"
             if e["incremental_share_of_first"] is not None else "-"),
            ("disk (outputs + cache)", lambda e: f"~{e['disk_outputs_gb']:,} GB + raw"),
            ("dedup RAM (README model)", lambda e: f"{e['dedup_ram_gb_total_at_measured_pair_rate']} GB "
                                                   f"({e['dedup_ram_gb_total_if_10pct_pairs']} GB if 10% of docs have a pair)"),
            ("dedup RAM growth per doc measured 4x -> 16x, default / fixed file size", lambda e: " / ".join(
                f"{v} GB" for v in e["dedup_ram_gb_from_measured_growth"].values())),
            ("mix RAM (16x RSS + growth per doc at fixed file size)",
             lambda e: f"{e['mix_ram_gb_total_fixed_file_size_growth']} GB"),
            ("no-op `dvc repro`", lambda e: f"~{e['noop_dvc_repro_s']} s")]
    for name, f in rows:
        out.append(f"| {name} | " + " | ".join(f(ex[n]) for n in names) + " |")
    out += ["", "Targets:", ""] + [f"- {t['target']}: met {t['met']}" + (f" ({t['note']})" if t.get("note") else "")
                                   for t in doc["targets"]]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=Path, default=HERE / "results" / "scale_shards_parts")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scale_shards.json")
    ap.add_argument("--tables", type=Path, default=None,
                    help="also write the figures as Markdown tables here (to paste into scale_shards.md)")
    a = ap.parse_args()
    P = a.parts
    scales = {k: per_scale(k, load(P / f)) for k, f in RUNS.items() if (P / f).exists()}
    incr_whole = {k: load(P / f"incr_whole_s{k}.json") for k in DEFAULT if (P / f"incr_whole_s{k}.json").exists()}
    dedup_mem = {k: load(P / f"dedup_mem_s{k}.json") for k in ("4", "16", "16_ff0.001")
                 if (P / f"dedup_mem_s{k}.json").exists()}
    noop = load(P / "noop.json")
    by_proc = {f.stem.removeprefix("rss_by_process_"): load(f) for f in sorted(P.glob("rss_by_process_*.json"))}
    order = list(scales["16"]["first_run"]["stages"])

    # --- incremental, one dvc repro mix ------------------------------------------------------
    iw = {}
    for k, r in incr_whole.items():
        iw[k] = {"command": r["command"], "added_file": {x: r["added_file"][x] for x in ("path", "text_bytes", "share_of_corpus_text")},
                 "cpu_s": r["dvc_repro"]["cpu_s"], "wall_s": r["dvc_repro"]["wall_s"],
                 "loadavg_before": r["dvc_repro"]["loadavg_before"], "first_run_cpu_s": r["first_run_cpu_s"],
                 "cpu_share_of_first": r["cpu_share_of_first"], "ran": r["ran"],
                 "shard_units": {s: v["shard_units"][0]["line"] for s, v in r["stages"].items() if v["shard_units"]}}
    gb = {k: scales[k]["corpus"]["text_bytes"] / 1e9 for k in scales}
    # fixed + proportional parts of the one-repro incremental and of the first run (4x, 16x)
    # (a part that is missing, e.g. a run skipped for time, leaves its figures out: None or absent)
    pair = [k for k in ("4", "16") if k in iw] if len([k for k in ("4", "16") if k in iw]) == 2 else \
        [k for k in ("1", "16") if k in iw]
    if len(pair) == 2:
        F_inc, v_inc = fit([gb[k] for k in pair], [iw[k]["cpu_s"] for k in pair])
        F_first, v_first = fit([gb[k] for k in pair], [scales[k]["first_run"]["totals"]["cpu_s"] for k in pair])
        gb_at_5pct = (F_inc - 0.05 * F_first) / (0.05 * v_first - v_inc) if 0.05 * v_first > v_inc else None
    else:
        F_inc = v_inc = F_first = v_first = gb_at_5pct = None

    # --- per stage CPU s per GB of text (fit over 1x/4x/16x) -----------------------------------
    rates = {}
    for st in order:
        ks = [k for k in DEFAULT if k in scales]
        xs = [gb[k] for k in ks]
        ys = [scales[k]["first_run"]["stages"][st]["cpu_s"] for k in ks]
        a0, b0 = fit(xs, ys)
        rates[st] = {"cpu_s": dict(zip(ks, ys)), "fixed_cpu_s": round(a0, 2), "cpu_s_per_gb_text": round(b0, 2),
                     "cpu_s_per_gb_at_16x": round(ys[-1] / xs[-1], 2)}
    by_kind: dict[str, float] = {}
    for st, r in rates.items():
        by_kind[stage_kind(st)] = by_kind.get(stage_kind(st), 0) + r["cpu_s_per_gb_text"]
    total_rate = sum(by_kind.values())

    # --- RSS: 4x -> 16x, same params --------------------------------------------------------
    def rss_cmp(k4, k16):
        out = {}
        for st in order:
            r4 = scales[k4]["first_run"]["stages"][st]["peak_rss_mb"]
            r16 = scales[k16]["first_run"]["stages"][st]["peak_rss_mb"]
            out[st] = {"rss_4x_mb": r4, "rss_16x_mb": r16, "change": round(r16 / r4 - 1, 3),
                       "within_20pct": abs(r16 / r4 - 1) <= 0.20}
        return out
    rss_default = rss_cmp("4", "16") if "4" in scales else {}
    rss_fixed = rss_cmp("4-ff0.004", "16-ff0.001")

    # --- dedup memory -----------------------------------------------------------------------
    dm = {}
    for k, d in dedup_mem.items():
        dm[k] = {"command": d["command"], "docs": d["docs"], "same_survivors_and_masks": d["same_survivors_and_masks"],
                 "runs": [{x: r[x] for x in ("memory_mb", "mode", "cpu_s", "wall_s", "peak_rss_mb", "tree_pss_peak_mb",
                                             "tree_procs_at_peak", "loadavg_before")}
                          | {"docs_kept": r["report"]["docs_kept"], "clusters": r["report"]["clusters"],
                             "verified_pairs": r["report"]["verified_pairs"]} for r in d["runs"]]}

    # --- no-op ------------------------------------------------------------------------------
    nm = {k: {"shards": v["shards"], "files_in_dvc_outputs": v["files_in_dvc_outputs"], **v["summary"]}
          for k, v in noop["projects"].items()}
    f0, per_file = fit([nm[k]["files_in_dvc_outputs"] for k in nm], [nm[k]["repro"]["wall_s_median"] for k in nm])
    files_per_shard = nm["project-s16-ff0.001"]["files_in_dvc_outputs"] / nm["project-s16-ff0.001"]["shards"]

    # --- targets ----------------------------------------------------------------------------
    s16 = scales["16"]
    targets = [
        {"target": "a new ~2% file reruns <= 5% of the first run's CPU",
         "met": iw["16"]["cpu_share_of_first"] <= 0.05 if "16" in iw else None,
         "measured": {f"{k}x one `dvc repro mix`": iw[k]["cpu_share_of_first"] for k in iw}
                     | {f"{k} stage by stage (19 dvc starts)": v["incremental_per_stage_loop"]["cpu_share_of_first"]
                        for k, v in scales.items()},
         "note": (f"one-repro rerun = {F_inc:.1f} s fixed + {v_inc:.1f} CPU s per GB of corpus (fit 4x/16x); first run = "
                  f"{F_first:.1f} s + {v_first:.0f} s/GB: the share falls to {v_inc / v_first:.1%} asymptotically and "
                  f"crosses 5% at ~{gb_at_5pct:.2f} GB of text (~{gb_at_5pct / 0.03:.0f}x)" if gb_at_5pct else
                  "already under 5% at the scales fitted" if F_inc is not None else "")},
        {"target": "peak RSS of every stage within 20% from 4x to 16x at fixed params",
         "met": all(v["within_20pct"] for v in (rss_default | rss_fixed).values()),
         "measured": {"default corpus (files grow with the scale: 2% of the text each)":
                      {s: v["change"] for s, v in rss_default.items()},
                      "fixed file size (~0.49 MB text a file; 261 -> 1027 shards)":
                      {s: v["change"] for s, v in rss_fixed.items()}},
         "failing_fixed_file_size": [s for s, v in rss_fixed.items() if not v["within_20pct"]]},
        {"target": "disk (workspace + cache, once per inode) <= 3x raw input",
         "met": all(v["disk"]["workspace_and_cache_once_per_inode_x_raw_disk"] <= 3 for v in scales.values()),
         "measured": {k: v["disk"]["workspace_and_cache_once_per_inode_x_raw_disk"] for k, v in scales.items()},
         "x_raw_text": {k: v["disk"]["workspace_and_cache_once_per_inode_x_raw_text"] for k, v in scales.items()}},
        {"target": "dedup peak RSS set by dedup.memory_mb, same survivors",
         "met": False,
         "same_survivors": all(v["same_survivors_and_masks"] for v in dm.values()) if dm else None,
         "measured": {k: {f"{r['memory_mb']} {r['mode']}": r["peak_rss_mb"] for r in v["runs"]} for k, v in dm.items()},
         "rss_range_mb": {k: [min(r["peak_rss_mb"] for r in v["runs"]), max(r["peak_rss_mb"] for r in v["runs"])]
                          for k, v in dm.items()},
         "note": "met only if peak RSS follows memory_mb; at these sizes (<=150k docs) the partitioned records are a "
                 "few MB, so the runs show what does not depend on the param (interpreter, pyarrow, per-doc arrays)"},
        {"target": "no-op `dvc repro` < 2 s at 16x and with ~1,000 shards",
         "met": nm["project-s16"]["repro"]["wall_s_median"] < 2 and nm["project-s16-ff0.001"]["repro"]["wall_s_median"] < 2,
         "measured": {k: {"shards": v["shards"], "files": v["files_in_dvc_outputs"],
                          "dvc_repro_mix_median_s": v["repro"]["wall_s_median"],
                          "dvc_status_median_s": v["status"]["wall_s_median"], "load1": v["repro"]["load1_median"]}
                      for k, v in nm.items()},
         "note": f"no-op wall ~ {f0:.2f} s + {per_file * 1e6:.0f} us per file in the DVC outputs ({files_per_shard:.1f} files per shard)"},
    ]

    # --- extrapolation ----------------------------------------------------------------------
    def per_doc_growth(st: str) -> dict:
        """bytes of peak RSS per extra document, 4x -> 16x, on both layouts"""
        out = {}
        for name, (k4, k16) in (("default", ("4", "16")), ("fixed_file_size", ("4-ff0.004", "16-ff0.001"))):
            if k4 not in scales or k16 not in scales:
                continue
            dd = scales[k16]["corpus"]["docs"] - scales[k4]["corpus"]["docs"]
            dr_ = (scales[k16]["first_run"]["stages"][st]["peak_rss_mb"] - scales[k4]["first_run"]["stages"][st]["peak_rss_mb"])
            out[f"{name}_B_per_doc"] = round(max(dr_, 0) * 2**20 / dd, 1)
        return out
    growth = {st: per_doc_growth(st) for st in ("dedup", "mix")}
    ex = {}
    d16 = s16["disk"]
    x_text = d16["workspace_and_cache_once_per_inode_x_raw_text"]
    dr = s16["dedup_report"]
    for name, t in TARGETS_GB.items():
        G, N = t["text_gb"], t["docs"]
        stage_cpu = {st: r["fixed_cpu_s"] + r["cpu_s_per_gb_text"] * G for st, r in rates.items()}
        cpu = sum(stage_cpu.values())
        wall = sum(c / (1 if stage_kind(st) in SERIAL else CORES) for st, c in stage_cpu.items())
        shards = G * 1e9 / (SHARD_MB * 1e6)
        files = shards * files_per_shard
        pairs_per_doc = dr["verified_pairs"] / dr["docs_in"]
        removed_per_doc = 1 - dr["docs_kept"] / dr["docs_in"]
        # README "Memory" model of the current dedup (ranks, hashes, rows memory-mapped per shard)
        dedup_gb = {"memory_mb": 1.0, "status_1B_per_doc": N * 1 / 1e9,
                    "removed_16B_per_removed_doc": N * removed_per_doc * 16 / 1e9,
                    "verified_pairs_80B_each_at_measured_rate": N * pairs_per_doc * 80 / 1e9,
                    "verified_pairs_80B_each_if_10pct_of_docs": N * 0.1 * 80 / 1e9,
                    "interpreters_16_workers": 16 * 0.15}
        # peak RSS at 16x plus the measured growth per document (largest of the two 4x -> 16x pairs)
        dedup_growth = {k: N * v / 1e9 for k, v in growth["dedup"].items()}
        mix_gb = {"rss_16x": s16["first_run"]["stages"]["mix"]["peak_rss_mb"] / 1e3,
                  **{f"growth_{k}": N * v / 1e9 for k, v in growth["mix"].items()}}
        ex[name] = {
            "text_gb": G, "docs": N, "shards_at_shard_mb_256": round(shards),
            "first_run_cpu_h": round(cpu / 3600, 1),
            "first_run_wall_h_16_cores_ideal": round(wall / 3600, 2),
            "first_run_cpu_h_by_stage_kind": {k: round(sum(c for st, c in stage_cpu.items() if stage_kind(st) == k) / 3600, 2)
                                              for k in by_kind},
            "incremental_2pct_file_cpu_h": round((F_inc + v_inc * G) / 3600, 2) if F_inc is not None else None,
            "incremental_share_of_first": round((F_inc + v_inc * G) / cpu, 4) if F_inc is not None else None,
            "disk_outputs_tb": round(x_text * G / 1000, 2), "disk_outputs_gb": round(x_text * G),
            "disk_note": f"{x_text} x the text (16x measured; workspace + cache once per inode, dedup band-key cache "
                         f"included), plus the raw input; dedup's run folder needs ~{392 * N / 1e9:.0f} GB more while it runs "
                         "(~392 B per doc: 24 staged + 32 exact + 14 x 24 band records)",
            "dedup_ram_gb": {k: round(v, 2) for k, v in dedup_gb.items()},
            "dedup_ram_gb_total_at_measured_pair_rate": round(sum(v for k, v in dedup_gb.items() if "10pct" not in k), 1),
            "dedup_ram_gb_total_if_10pct_pairs": round(sum(v for k, v in dedup_gb.items() if "measured_rate" not in k), 1),
            "dedup_ram_gb_from_measured_growth": {k: round(v, 2) for k, v in dedup_growth.items()},
            "mix_ram_gb": {k: round(v, 2) for k, v in mix_gb.items()},
            "mix_ram_gb_total_fixed_file_size_growth": round(mix_gb["rss_16x"] + mix_gb["growth_fixed_file_size_B_per_doc"], 2),
            "mix_ram_note": "16x peak RSS plus the per-document growth measured 4x-261 -> 16x-1027 files (the default "
                            "layout's growth also contains larger files and row groups, so it overstates the per-doc part)",
            "noop_dvc_repro_s": round(f0 + per_file * files, 1),
        }

    baseline = {}
    for k, f in (("1", "scale.json"), ("4", "scale_4.json")):
        p = HERE / "results" / f
        if p.exists():
            b = load(p)["scales"][k]
            baseline[k] = {"first_run_cpu_s": b["first_run"]["totals"]["cpu_s"],
                           "disk_x_raw_disk": b["disk"]["workspace_and_cache_unique"]["x_raw_disk"],
                           "incremental_cpu_share_of_first": b["incremental"]["cpu_share_of_first"],
                           "noop_dvc_repro_mix_s": b["noop"]["repro"][-1]["wall_s"], "rev": load(p)["rev"], "file": f}

    mixed = {k: v["rev"] for k, v in scales.items() if v["rev"] != s16["rev"]}
    doc = {
        "parts_at_another_rev": mixed,
        "what": "the SHARDED data pipeline (ingest..mix) at 1x/4x/16x of the ~30 MB generated corpus, plus a "
                "fixed-file-size pair (4x with 261 files, 16x with 1027 files) for memory and the ~1,000-shard no-op",
        "rev": s16["rev"], "repo": "/work/main", "dvc": s16["dvc"], "cpus": s16["cpus"],
        "machine_note": "2 shared cores: other sessions' jobs ran alongside (load averages are given with every "
                        "figure); CPU seconds are the steadier figure, wall seconds are inflated at load > 2",
        "parts": {k: os.path.relpath(P.resolve() / f, HERE.parent) for k, f in RUNS.items()}
                 | {"incr_whole": [f"incr_whole_s{k}.json" for k in incr_whole], "dedup_mem": [f"dedup_mem_s{k}.json" for k in dedup_mem],
                    "noop": "noop.json",
                    "rss_by_process": [f"rss_by_process_{k}.json" for k in by_proc]},
        "targets": targets,
        "scales": scales,
        "incremental_one_dvc_repro": iw,
        "incremental_fit": {"scales": pair, "fixed_cpu_s": round(F_inc, 1), "cpu_s_per_gb": round(v_inc, 1),
                            "first_run_fixed_cpu_s": round(F_first, 1), "first_run_cpu_s_per_gb": round(v_first, 1),
                            "gb_text_where_share_is_5pct": round(gb_at_5pct, 2) if gb_at_5pct else None}
        if F_inc is not None else None,
        "cpu_rates": {"per_stage": rates, "per_stage_kind_cpu_s_per_gb": {k: round(v, 1) for k, v in by_kind.items()},
                      "total_cpu_s_per_gb": round(total_rate, 1)},
        "rss_4x_to_16x": {"default_corpus": rss_default, "fixed_file_size": rss_fixed},
        "dedup_memory": dm,
        "noop_repeats": {"command": noop["command"], "when": noop["when"], "loadavg_start": noop["loadavg_start"],
                         "projects": nm, "fit_s": round(f0, 2), "fit_s_per_file": per_file},
        "rss_by_process": {k: {"command": v["command"], **{st: {x: r[x] for x in ("cpu_s", "wall_s", "ru_maxrss_mb",
                                                                    "sampled_vmhwm_mb_by_role", "sampled_rss_anon_peak_mb_by_role", "largest_process",
                                                                    "loadavg_before")}
                                                             for st, r in v["stages"].items()}}
                           for k, v in by_proc.items()},
        "rss_growth_per_doc_4x_to_16x": growth,
        "extrapolation": {"box": f"{CORES} cores, {RAM_GB} GB", "assumptions":
                          "CPU s per GB of text per stage from the 1x/4x/16x fit (generated text: 3.4 KB a doc, like "
                          "FineWeb's ~3 KB); every stage but tokenizer and mix uses all cores perfectly (an upper "
                          "bound on speed); shards of sources.SRC.shard_mb 256 M chars; fixed params "
                          "(tokenizer.sample_chars 5M, mix.train_tokens 1M: a real mix is far larger)", **ex},
        "baseline_unsharded": baseline,
    }
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    if a.tables:
        a.tables.write_text(md_tables(doc))
    print(json.dumps({"targets": [{k: t[k] for k in ("target", "met")} for t in targets],
                      "incremental_fit": doc["incremental_fit"], "total_cpu_s_per_gb": round(total_rate, 1),
                      "by_kind": doc["cpu_rates"]["per_stage_kind_cpu_s_per_gb"],
                      "extrapolation": ex, "noop_fit": [f0, per_file]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
