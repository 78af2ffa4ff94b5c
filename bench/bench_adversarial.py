"""Benchmark: adversarial documents through every cleaner and signal of `clean@SRC` (issue #11).

    PYTHONPATH=src .venv/bin/python bench/bench_adversarial.py [--size 1000000] [--rss] \
        [--rss-baseline DIR] [--out bench/results/adversarial.json]

Documents built to hit super-linear paths (each about `--size` characters): menus of `|` items
whose last item is too long, one long separator run, a 1 MB single line, 100k short lines,
pathological Unicode (combining-mark clusters, one huge cluster, RTL text with direction and
zero-width marks, astral characters, lines of Unicode blanks), long runs of blanks and of
`* = [ . ! # - |`, deeply nested and unclosed wiki markup (`{{ }}`, `[[ ]]`, `{| |}`, `<ref>`,
`<!--`, `<tag`, `[//url`, `=` runs) and Gutenberg marker storms. Every document goes through
every kind; the ingest readers get 100k paragraphs (.txt) and a 1 MB JSON line.

For each kind, each function `pipeline.process_batch` runs is timed on each document: the
cleaners on the text as the pipeline hands it over, the signal families of `signals.compute`
and the exact hash + MinHash on the cleaned text and on the raw text (a cleaner may remove what
would hurt a signal; with that cleaner off the raw text reaches it), and the whole
`process_batch`. The worst time per 100 KB of input (inputs under 10 KB count as 10 KB) of each
cleaner and signal is compared with the target, 50 ms per 100 KB (`pass`; `minhash.py` is
dedup's module, so `pass` leaves it out and `pass_including_minhash` does not); the whole
document, the sum of ~20 such parts, is reported beside it (`pass_whole_document`). Each call
runs in a forked child with a timeout (`--timeout`), so a hang is recorded, not waited for.
Then the worst cases are timed at 1x / 4x / 16x size (`--size` / 16, / 4, / 1): linear code
costs ~4x per step, quadratic ~16x.

`--rss`: peak RSS of `python -m stages.clean` (one process, --jobs 1) on a 50 MB single-line
document (kind fineweb: no cleaner removes it), with the shipped params, with
`clean.max_doc_chars: 1000000`, and with no effective limit; `--rss-baseline DIR` adds the same
run from another checkout (the code before the fix: `git archive c8b5542 | tar -x -C DIR`).
`all_linear`: every scaled cleaner and signal costs under 32x at 16x the size (linear: ~16x,
quadratic: ~256x; single 4x steps of sub-millisecond calls are noisy) (MinHash and the whole
document, which includes it, are reported in `all_linear_including_minhash`). Writes the JSON
with the command, Python version and load average (start and end).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from llmpipe.data import kinds, minhash  # noqa: E402
from llmpipe.core.atomic import write_json  # noqa: E402
from llmpipe.data.clean import pipeline, quality, signals  # noqa: E402
from llmpipe.data.kinds.c4 import text as c4  # noqa: E402
from llmpipe.data.kinds.gutenberg import text as gutenberg  # noqa: E402
from llmpipe.data.kinds.wikipedia import text as wikipedia  # noqa: E402
from llmpipe.data.table import write_docs  # noqa: E402
from llmpipe.params import CleanParams  # noqa: E402
from llmpipe.data.sources import readers  # noqa: E402
from llmpipe.data.sources.files import resolve  # noqa: E402

TARGET = 50.0  # ms per 100 KB
KINDS = ("c4", "wikipedia", "gutenberg", "fineweb")
MINHASH = "exact_hash + minhash"  # llmpipe/minhash.py, dedup's module (outside clean/ and sources/)
WHOLE = "pipeline.process_batch (whole document)"  # the sum of all parts: reported, not the target
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if "
         "river harbour keeper lamp storm council museum letter island beam winter sailor").split()
MENU = " | ".join(["Home", "About", "Blog", "Shop", "News", "Sport", "Weather", "Travel", "Jobs",
                   "Events", "Contact", "Help", "Login", "Archive"]) + " | " + "x" * 45


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _prose(size: int, seed: int = 0) -> str:
    rng, out, n = random.Random(seed), [], 0
    while n < size:
        out.append(rng.choice(WORDS))
        n += len(out[-1]) + 1
    return " ".join(out)[:size - 1] + "."


def documents(size: int) -> dict[str, str]:
    """name -> an adversarial text of about `size` characters (deterministic)."""
    q = size // 4
    return {
        "menus_long_last_item": _fill(MENU + "\n", size),
        "separator_run": " | ".join(["ab"] * (size // 5)) + " | " + "x" * 45,
        "single_line_1mb": _prose(size),
        "short_lines_100k": _fill("ab cd\n", size),
        "combining_clusters": _fill("a" + "\u0301\u0316" * 100 + " ", size),
        "combining_one_cluster": _prose(size - size // 25) + " a" + "\u0301\u0316" * (size // 50),
        "rtl_zero_width": _fill("\u05e9\u05dc\u05d5\u05dd\u200f \u0645\u0631\u062d\u0628\u0627\u200e"
                                "\u200b\u200c\u200d\ufeff word. ", size),
        "astral": _fill("\U0001d400\U0001d401\U0001f600\U00020000 \U0001f44d\U0001f3fd. ", size),
        "unicode_blank_lines": _fill("\u3000\u00a0\n", size - 7) + "== x ==",
        "blank_runs": "word" + " " * q + "x" + "\t" * q + "y\n" + "\u2003" * q + "z" + " " * q,
        "punct_runs": "".join(_fill(c, size // 8) for c in "*=[.!#-|"),
        "nested_templates": "{{" * q + "}}" * q,
        "nested_links": "[[" * q + "]]" * q,
        "nested_tables": "{|\n" * (size // 6) + "|}\n" * (size // 6),
        "unclosed_templates": _fill("{{a ", size),
        "unclosed_refs": _fill("<ref>a ", size),
        "unclosed_comments": _fill("<!-- a ", size),
        "unclosed_tags": _fill("<a ", size),
        "ext_links_unclosed": _fill("[//a b ", size),
        "heading_eq_run": "=" * (size - 1) + "x",
        "heading_eq_lines": _fill("=" * 1000 + " x =\n", size),
        "heading_spaces": "== a" + " " * (size - 5) + "b",
        "leading_tabs_line": "x\n" + "\t" * (size - 17) + "References x...",  # whitespace keeps it
        "indented_lines": _fill("\t" * 5000 + "References x\n", size),
        "gutenberg_markers": _fill("*** START OF THE PROJECT GUTENBERG EBOOK X\n*** END OF THE "
                                   "PROJECT GUTENBERG EBOOK X\n" + "*" * 200 + "\n", size),
        "gutenberg_paragraphs": _fill("Produced by a volunteer.\n\n  Verse line\n  two.\n\n", size),
        "wiki_article_markup": _fill("'''B''' [[L|l]] {{c|x}}<ref>r</ref> [//u t] <b>x</b>\n"
                                     "== H ==\n{|\n| c\n|}\n", size),
    }


def cleaners(kind: str, p: CleanParams) -> list:
    """(name, fn(text) -> text), in the order `pipeline.clean_text` runs them (whitespace twice)."""
    own = {
        "c4": [("c4.clean", lambda t: c4.clean(t, p.c4)[0])],
        "wikipedia": [("wikipedia.strip_tables", wikipedia.strip_tables),
                      ("wikipedia.strip_tails", wikipedia.strip_tails),
                      ("wikipedia.strip_markup", wikipedia.strip_markup)],
        "gutenberg": [("gutenberg.footer (body_span)", lambda t: t[:gutenberg.body_span(t)[1]]),
                      ("gutenberg.header (strip_header)", lambda t: gutenberg.strip_header(t)[0]),
                      ("gutenberg.unwrap", gutenberg.unwrap)],
        "fineweb": [],
    }[kind]
    return [("quality.whitespace", quality.whitespace), *own,
            ("quality.whitespace (2nd pass)", quality.whitespace)]


def split(text: str) -> tuple[list, list, list, list]:
    """What `signals.compute` splits once: lines, words, tokens, paragraphs."""
    lines = [ln for ln in (x.strip() for x in text.split("\n")) if ln]
    words = text.split()
    paras = [x for x in (y.strip() for y in signals._PARA_SPLIT.split(text)) if x]
    return lines, words, signals.tokens(words), paras


def signal_fns(kind: str) -> list:
    """(name, fn(raw, text, pieces)) for each part of `signals.compute`, and the hashes."""
    mod = kinds.text(kind)
    return [
        ("signals.split (lines, words, tokens, paragraphs)", lambda raw, t, s: split(t)),
        ("quality.quality_signals", lambda raw, t, s: quality.quality_signals(t, s[1], s[2], s[0])),
        ("signals dup lines", lambda raw, t, s: signals._dup_units(s[0], len(t), "line")),
        ("signals dup paragraphs", lambda raw, t, s: signals._dup_units(s[3], len(t), "para")),
        ("signals.ngram_signals", lambda raw, t, s: signals.ngram_signals(s[2])),
        (f"{kind}.signals", lambda raw, t, s: mod.signals(raw, t, s[1], s[0])),
        (MINHASH, lambda raw, t, s: minhash.hashes_and_signatures([t], 5, 128, 1)),
    ]


def measure(fn, args: tuple, timeout: float, repeats: int, keep: bool = False):
    """(best seconds of `repeats` calls, fn's result if keep) in a forked child; None on timeout."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            best, out = math.inf, None
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = fn(*args)
                best = min(best, time.perf_counter() - t0)
            data = pickle.dumps((best, out if keep else None))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            data = pickle.dumps((None, repr(e)))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    with os.fdopen(r, "rb") as f:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([f], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            chunk = os.read(f.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    best, out = pickle.loads(b"".join(chunks))
    if best is None:
        raise RuntimeError(f"{fn}: {out}")
    return best, out


def per_100kb(seconds: float | None, chars: int) -> float:
    return math.inf if seconds is None else 1000 * seconds / (max(chars, 10_000) / 100_000)


def run_kind(kind: str, docs: dict[str, str], args) -> list[dict]:
    """One row per (document, function, input): ms, ms per 100 KB."""
    p, rows = CleanParams(), []

    def add(doc, name, inp, chars, res):
        rows.append({"doc": doc, "function": name, "input": inp, "chars": chars,
                     "ms": None if res is None else round(1000 * res[0], 3),
                     "ms_per_100kb": round(per_100kb(res and res[0], chars), 3)})

    for doc, raw in docs.items():
        text, stuck = raw, False
        for name, fn in cleaners(kind, p):
            res = None if stuck else measure(fn, (text,), args.timeout, args.repeats, keep=True)
            add(doc, name, "pipeline", len(text), res)
            stuck = stuck or res is None
            text = text if res is None else res[1]
        for inp, t in (("cleaned", text), ("raw", raw)):
            pieces = split(t)
            for name, fn in signal_fns(kind):  # the kind's signals read the raw text too
                chars = max(len(t), len(raw)) if name == f"{kind}.signals" else len(t)
                add(doc, name, inp, chars, measure(fn, (raw, t, pieces), args.timeout, args.repeats))
        add(doc, WHOLE, "raw", len(raw),
            measure(pipeline.process_batch, ([raw], kind, p, 5, 128, 1), args.timeout, args.repeats))
        print(f"  {kind} {doc}: done", file=sys.stderr, flush=True)
    return rows


def reader_rows(size: int, args) -> list[dict]:
    """The ingest readers on 100k .txt paragraphs and on one JSON line of `size` characters."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        txt, jl = Path(d) / "p.txt", Path(d) / "l.jsonl"
        txt.write_text(_fill("ab cd\n\n", size))
        jl.write_text(json.dumps({"text": _prose(size)}) + "\n")
        for name, path, mode in (("readers txt paragraphs (100k)", txt, "paragraphs"),
                                 ("readers jsonl (one 1 MB line)", jl, "file")):
            f = resolve(str(path))[0]
            res = measure(lambda: list(readers.read_file(f, "text", ["text"], mode)), (), args.timeout, args.repeats)
            rows.append({"doc": path.name, "function": name, "input": "file", "chars": size,
                         "ms": None if res is None else round(1000 * res[0], 3),
                         "ms_per_100kb": round(per_100kb(res and res[0], size), 3)})
    return rows


def worst(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for r in rows:
        cur = out.get(r["function"])
        if cur is None or r["ms_per_100kb"] > cur["ms_per_100kb"]:
            out[r["function"]] = {k: r[k] for k in ("ms_per_100kb", "ms", "doc", "input", "chars")}
    for v in out.values():
        v["pass"] = v["ms_per_100kb"] <= TARGET
    return out


def scaling(kind: str, row: dict, size: int, args) -> dict:
    """ms at size/16, size/4, size of one (function, document, input) and the step ratios."""
    p, ms = CleanParams(), []
    sizes = [size // 16, size // 4, size]
    for n in sizes:
        raw = documents(n)[row["doc"]]
        if row["input"] == "pipeline":  # the cleaner's input: the chain of cleaners before it
            text, chain = raw, cleaners(kind, p)
            i = [c for c, _ in chain].index(row["function"])
            for _, fn in chain[:i]:
                text = fn(text)
            res = measure(chain[i][1], (text,), args.timeout, args.repeats)
        elif row["function"] == WHOLE:
            res = measure(pipeline.process_batch, ([raw], kind, p, 5, 128, 1), args.timeout, args.repeats)
        else:
            t = pipeline.clean_text(raw, kind, p)[0] if row["input"] == "cleaned" else raw
            fn = dict(signal_fns(kind))[row["function"]]
            res = measure(fn, (raw, t, split(t)), args.timeout, args.repeats)
        ms.append(None if res is None else round(1000 * res[0], 3))
    ratios = [round(b / a, 2) if a and b else None for a, b in zip(ms, ms[1:])]
    return {"kind": kind, "function": row["function"], "doc": row["doc"], "input": row["input"],
            "sizes": sizes, "ms": ms, "ratios": ratios,
            "ratio_16x": round(ms[2] / ms[0], 2) if ms[0] and ms[2] else None,
            "linear": bool(ms[0] and ms[2] and ms[2] / ms[0] < 32)}


def peak_rss_kb(root: Path, params: Path, doc: Path) -> int | None:
    """Peak RSS (KB) of `python -m stages.clean --jobs 1` run from checkout `root`."""
    code = ("import resource, runpy, sys\n"
            f"sys.argv = ['clean', '--source', 'fineweb', '--in', {str(doc)!r}, '--out', {str(doc) + '.out'!r},"
            f" '--params', {str(params)!r}, '--jobs', '1']\n"
            "try:\n    runpy.run_module('stages.clean', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PEAK")]
    return int(lines[0].split()[1]) if lines else None


def rss(args) -> dict:
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    res: dict = {"document": "one line of 50,000,000 characters (prose words), kind fineweb",
                 "command": "python -m stages.clean --source fineweb --jobs 1 (one process)"}
    with tempfile.TemporaryDirectory() as d:
        # written by a child: on exec, Linux carries the forking process's peak RSS into the new
        # process's ru_maxrss, so this process stays small (it measures before building docs)
        doc = Path(d) / "big.parquet"
        subprocess.run([sys.executable, __file__, "--write-big", str(doc)], check=True)
        for name, limit in (("shipped params (max_doc_chars 10,000,000, cut)", None),
                            ("max_doc_chars 1,000,000", 1_000_000), ("no limit (max_doc_chars 10**9)", 10**9)):
            prm = shipped if limit is None else {**shipped, "clean": {**shipped["clean"], "max_doc_chars": limit}}
            path = Path(d) / f"p{limit}.yaml"
            path.write_text(yaml.safe_dump(prm))
            res[f"peak_rss_mb, {name}"] = round(peak_rss_kb(ROOT, path, doc) / 1024, 1)
        import resource
        res["floor_mb (this process's peak RSS, a lower bound of every figure)"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if args.rss_baseline:
            base = Path(args.rss_baseline).resolve()
            kb = peak_rss_kb(base, base / "params.yaml", doc)
            res[f"peak_rss_mb, baseline {args.rss_baseline_label}"] = kb and round(kb / 1024, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="characters per document")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many calls")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per timed call")
    ap.add_argument("--top", type=int, default=3, help="worst cases per kind to time at 3 sizes")
    ap.add_argument("--rss", action="store_true", help="also peak RSS of the clean stage on 50 MB")
    ap.add_argument("--rss-baseline", help="another checkout (e.g. before the fix) to measure too")
    ap.add_argument("--rss-baseline-label", default="before the fix (c8b5542)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "adversarial.json"))
    ap.add_argument("--write-big", help=argparse.SUPPRESS)  # internal: write the 50 MB document
    args = ap.parse_args()
    if args.write_big:
        write_docs(args.write_big, [{"id": "big", "source": "fineweb", "text": _prose(50_000_000),
                                     "url": None, "meta": None}])
        return
    load0, t0 = os.getloadavg(), time.time()
    peak = rss(args) if args.rss else None  # first, while this process is small
    docs = documents(args.size)
    rows = {k: run_kind(k, docs, args) for k in KINDS}
    rows["readers"] = reader_rows(args.size, args)
    worst_by = {k: worst(r) for k, r in rows.items()}
    picks = []
    for k in KINDS:
        ranked = sorted((r for r in rows[k] if r["ms"] is not None), key=lambda r: -r["ms_per_100kb"])
        picks += [(k, r) for r in ranked[:args.top]]
    for k, fn, doc in (("c4", "c4.signals", "menus_long_last_item"), ("c4", "c4.signals", "separator_run"),
                       ("wikipedia", "wikipedia.strip_markup", "heading_eq_run"),
                       ("wikipedia", "wikipedia.strip_tails", "leading_tabs_line"),
                       ("gutenberg", "gutenberg.footer (body_span)", "leading_tabs_line"),
                       ("fineweb", MINHASH, "combining_one_cluster")):
        picks += [(k, r) for r in rows[k] if (r["function"], r["doc"]) == (fn, doc)][:1]
    scale = [scaling(k, r, args.size, args) for k, r in picks]
    failing = [f"{k}: {fn} ({v['ms_per_100kb']} ms/100 KB on {v['doc']})"
               for k, w in worst_by.items() for fn, v in w.items() if not v["pass"]]
    parts = [f for f in failing if WHOLE not in f]
    result = {
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "python": platform.python_version(), "machine": {"cpu": platform.processor() or platform.machine(),
                                                         "cores": os.cpu_count()},
        "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - t0, 1),
        "size_chars": args.size, "target_ms_per_100kb": TARGET, "timeout_s": args.timeout,
        "documents": {k: len(v) for k, v in docs.items()},
        "worst_ms_per_100kb": worst_by,
        "pass": not [f for f in parts if MINHASH not in f],
        "pass_including_minhash": not parts,
        "pass_whole_document": not [f for f in failing if WHOLE in f],
        "failing": failing,
        "scaling": scale,
        "all_linear": all(s["linear"] for s in scale if s["function"] not in (MINHASH, WHOLE)),
        "all_linear_including_minhash": all(s["linear"] for s in scale),
    }
    if peak:
        result["peak_rss"] = peak
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("pass", "pass_including_minhash", "pass_whole_document", "failing",
                                             "all_linear")}, indent=1))


if __name__ == "__main__":
    main()
