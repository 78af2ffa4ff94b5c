"""Threshold rules over stored signal columns: the whole of the `filter` stage's logic.

A rule is one threshold field of `FilterParams`: `min_X` keeps documents whose signal column X
is >= the value, `max_X` keeps X <= the value, null switches it off. Its drop reason is
`<section>_<field>` (e.g. `global_min_words`, `c4_min_alpha_ratio`): stable, snake_case, and
the params key it comes from. Rule order, fixed and documented: the kind's own section first
(`filter.c4`, ...), then `filter.global` minus the kind's `skip_global`, each in field order. A
document is counted under its FIRST failing rule, so `docs_in == kept + sum(dropped)`.

`apply_rules` is vectorised over a table of signals (one numpy comparison per rule);
`filter_table` streams a clean table through it in batches.

Outputs: a decision, not a copy. Per clean shard NAME, `data/filtered/SRC/NAME.npy` holds one
int16 reason code per clean row (0 kept, i + 1 dropped by rule i; the rule names are the
manifest's `reasons`), so a threshold change rewrites a few bytes per document and never the
text; later stages read the clean shards through it (`kept_mask`). With `filter.keep_rejects`,
`data/rejects/SRC/NAME.parquet` holds the rejected rows (every clean column + `reason`).
"""
from __future__ import annotations

from llmpipe.core.atomic import atomic_path
from llmpipe.core.errors import UserError

import contextlib
from pathlib import Path
import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmpipe.core.log import n
from llmpipe.data.table import TableWriter, read_batches

KEPT = 0  # reason code of a kept document; rule i has code i + 1

# Families of `filter.global` rules, for reports and docs; a kind's own rules form its family.
GLOBAL_FAMILIES = {
    "length": ("chars", "words"),
    "quality": ("mean_word_length", "symbol_ratio", "bullet_line_ratio", "ellipsis_line_ratio",
                "alpha_word_ratio", "alpha_ratio", "repeated_char_ratio", "short_line_ratio",
                "boilerplate_line_ratio"),
    "english": ("stopword_ratio", "gopher_stopwords"),
    "repetition": ("dup_", "top_"),
    "learned": ("quality_score",),
    "contamination": ("eval_ngrams",),
}
SCORE = "quality_score"  # signals `quality@SRC` stores beside the clean shard (NAME.npy, NAME.eval.npy)
EVAL = "eval_ngrams"
EXTERNAL = {SCORE: ".npy", EVAL: ".eval.npy"}


def family(rule: "Rule") -> str:
    """`length`, `quality`, `english`, `repetition` (global rules) or the kind (its own rules)."""
    section = rule.reason.split("_", 1)[0]
    if section != "global":
        return section
    for fam, signals in GLOBAL_FAMILIES.items():
        if rule.signal in signals or rule.signal.startswith(tuple(s for s in signals if s.endswith("_"))):
            return fam
    raise AssertionError(f"rule {rule.reason} has no family")


@dataclass(frozen=True)
class Rule:
    reason: str      # "global_min_words"
    signal: str      # "words"
    op: str          # "min" | "max"
    value: float


def rules_for(filter_params, kind: str) -> list[Rule]:
    """The enabled rules for a source of `kind`, in evaluation order (none when
    `filter.enabled` is false)."""
    if not filter_params.enabled:
        return []
    own = getattr(filter_params, kind)
    skip = set(own.skip_global)
    out = _section_rules(own, kind, set())
    out += _section_rules(filter_params.global_, "global", skip)
    return out


def _section_rules(section, name: str, skip: set[str]) -> list[Rule]:
    rules = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None or f.name in skip or not f.name.startswith(("min_", "max_")):
            continue
        rules.append(Rule(f"{name}_{f.name}", f.name[4:], f.name[:3], float(value)))
    return rules


def signal_columns(rules: list[Rule]) -> list[str]:
    return sorted({r.signal for r in rules})


def check_columns(rules: list[Rule], names: list[str], path: str) -> None:
    missing = sorted({r.signal for r in rules} - set(names))
    if missing:
        raise UserError(f"{path}: no signal column(s) {missing} needed by rule(s) "
                         f"{[r.reason for r in rules if r.signal in missing]}; rerun `dvc repro clean`"
                         " (the clean table predates these signals)")


def apply_rules(table: pa.Table | pa.RecordBatch, rules: list[Rule]) -> np.ndarray:
    """(N,) int16 reason codes: 0 = kept, i + 1 = dropped by rules[i] (the first that fails)."""
    code = np.zeros(table.num_rows, dtype=np.int16)
    for i, r in enumerate(rules):
        col = table.column(r.signal).to_numpy(zero_copy_only=False)
        fail = col < r.value if r.op == "min" else col > r.value
        code[fail & (code == KEPT)] = i + 1
    return code


class Tally:
    """Accumulates the filter report over batches."""

    def __init__(self, rules: list[Rule], cleaners: list[str]):
        self.rules = rules
        self.docs_in = self.docs_kept = self.chars_in = self.chars_clean = self.chars_kept = 0
        self.dropped = np.zeros(len(rules) + 1, dtype=np.int64)
        self.dropped_chars = np.zeros(len(rules) + 1, dtype=np.int64)
        self.removed = dict.fromkeys(cleaners, 0)

    def add(self, batch: pa.RecordBatch, code: np.ndarray) -> None:
        chars = batch.column("chars").to_numpy(zero_copy_only=False)
        self.docs_in += batch.num_rows
        self.docs_kept += int((code == KEPT).sum())
        self.chars_in += int(batch.column("chars_raw").to_numpy(zero_copy_only=False).sum())
        self.chars_clean += int(chars.sum())
        self.chars_kept += int(chars[code == KEPT].sum())
        self.dropped += np.bincount(code, minlength=len(self.rules) + 1)
        self.dropped_chars += np.bincount(code, weights=chars, minlength=len(self.rules) + 1).astype(np.int64)
        for c in self.removed:
            self.removed[c] += int(batch.column(f"removed_{c}").to_numpy(zero_copy_only=False).sum())

    def report(self) -> dict:
        dropped = {r.reason: int(self.dropped[i + 1]) for i, r in enumerate(self.rules)}
        assert self.docs_in == self.docs_kept + sum(dropped.values())  # invariant, not user error
        return {
            "docs_in": self.docs_in,
            "docs_kept": self.docs_kept,
            "dropped_by_reason": dropped,
            "chars_in": self.chars_in,
            "chars_after_clean": self.chars_clean,
            "chars_kept": self.chars_kept,
            "chars_removed_by_cleaner": self.removed,
            "chars_dropped_by_reason": {r.reason: int(self.dropped_chars[i + 1])
                                        for i, r in enumerate(self.rules)},
        }


REASONS_KEY = "reasons"


def filter_table(src, dst, rejects, kind: str, filter_params, batch_size: int = 65536, scores=None) -> dict:
    """Apply the rules for `kind` to clean table `src`; write the reason codes to `dst` (.npy,
    int16, one per row) and, with `filter_params.keep_rejects` and a `rejects` path, the rejected
    rows with their reason. `scores`: the shard's `quality@SRC` file, read as the signal
    `quality_score` when a rule needs it. Returns the report (`Tally.report`)."""
    rules = rules_for(filter_params, kind)
    schema = pq.read_schema(src)
    external = {}
    for sig in sorted(set(EXTERNAL) & set(signal_columns(rules))):
        if scores is None:
            raise UserError(f"{src}: the {sig} rule needs the quality@SRC outputs; run filter with "
                            "--quality data/quality/SRC")
        external[sig] = scores_of(Path(scores).with_suffix(EXTERNAL[sig]), pq.ParquetFile(src).metadata.num_rows)
        schema = schema.append(pa.field(sig, pa.from_numpy_dtype(external[sig].dtype)))
    check_columns(rules, schema.names, str(src))
    cleaners = [c[len("removed_"):] for c in schema.names if c.startswith("removed_")]
    need = sorted({*signal_columns(rules), "chars", "chars_raw", *(f"removed_{c}" for c in cleaners)})
    keep_rejects = bool(rejects) and filter_params.keep_rejects
    rej_schema = schema.append(pa.field("reason", pa.string()))
    reasons = np.array(["", *[r.reason for r in rules]], dtype=object)
    tally = Tally(rules, cleaners)
    codes = []
    rej_writer = TableWriter(rejects, rej_schema) if keep_rejects else contextlib.nullcontext()
    with rej_writer as rej:
        row = 0
        for batch in read_batches(src, columns=None if keep_rejects else [c for c in need if c not in external],
                                  batch_size=batch_size):
            if external:
                batch = pa.RecordBatch.from_arrays(
                    [*batch.columns, *(pa.array(a[row:row + batch.num_rows]) for a in external.values())],
                    names=[*batch.schema.names, *external])
                row += batch.num_rows
            code = apply_rules(batch, rules)
            tally.add(batch, code)
            codes.append(code)
            if rej is not None:
                dropped = pc.filter(batch, pa.array(code != KEPT))
                why = pa.array(reasons[code[code != KEPT]].tolist(), pa.string())
                rej.write(pa.RecordBatch.from_arrays([*dropped.columns, why], schema=rej_schema))
    # under a temp name, renamed when whole: a task killed mid-write (and retried) leaves no half mask
    with atomic_path(dst) as tmp, open(tmp, "wb") as f:
        np.save(f, np.concatenate(codes) if codes else np.zeros(0, np.int16), allow_pickle=False)
    return tally.report()


def filter_source(clean_dir, out_dir, rejects_dir, *, source: str, kind: str, filter_params,
                  jobs: int = 0, quality_dir=None, executor=None) -> tuple[dict, str]:
    """filter@SRC: a reason-code mask per clean shard in `out_dir` (sharded; unchanged shards
    reused) and, when `rejects_dir` is given, the rejected rows there (rows only with
    keep_rejects). `quality_dir`: the `quality@SRC` scores, read when a rule needs
    `quality_score` (their files then join each shard's fingerprint). Shards are filtered on
    `executor` (`core.executor`; default: `jobs` local processes). Returns (report summed
    over shards, reuse summary)."""
    from pathlib import Path

    from llmpipe.core import code
    from llmpipe.core.shards import ShardedDir, add_up, digest, map_units, read_manifest, shards
    clean_dir = Path(clean_dir)
    manifest = read_manifest(clean_dir, f"clean@{source}")
    rules = rules_for(filter_params, kind)
    base = digest("filter", code.fingerprint("stages.filter"), kind, [dataclasses.astuple(r) for r in rules],
                  bool(rejects_dir) and filter_params.keep_rejects)
    needed = set(EXTERNAL) & set(signal_columns(rules))
    score_sha = _score_files(quality_dir, source, SCORE in needed, sorted(needed)) if needed else None
    rej_dir = ShardedDir(rejects_dir, stage="filter-rejects", source=source) if rejects_dir else None
    with ShardedDir(out_dir, stage="filter", source=source) as d, \
            (rej_dir if rej_dir is not None else contextlib.nullcontext()) as r:
        plan = []
        for sh in shards(manifest):
            name = sh["name"]
            fp = digest(base, sh["files"][f"{name}.parquet"]["sha256"])
            if score_sha is not None:
                if name not in score_sha:
                    raise UserError(f"{quality_dir}: no scores for shard {name}; rerun `dvc repro quality@{source}`")
                fp = digest(fp, score_sha[name])
            plan.append((name, fp, d.has(name, fp) and (r is None or r.has(name, fp))))
        todo = [(clean_dir / f"{name}.parquet", d.tmp / f"{name}.npy",
                 (r.tmp / f"{name}.parquet") if r is not None else None, kind, filter_params, 65536,
                 (Path(quality_dir) / f"{name}.npy") if score_sha is not None else None)
                for name, fp, ok in plan if not ok]
        built = iter(map_units(filter_table, todo, jobs, desc=f"filter {source}", executor=executor))
        for name, fp, ok in plan:
            if ok:
                d.reuse(name, fp)
                if r is not None:
                    r.reuse(name, fp)
                continue
            rep = next(built)
            d.add(name, fp, [f"{name}.npy"], shards=[{"name": name, "docs": rep["docs_in"]}], stats=rep)
            if r is not None:
                files = [f"{name}.parquet"] if (r.tmp / f"{name}.parquet").exists() else []
                r.add(name, fp, files, shards=[{"name": name, "docs": rep["docs_in"] - rep["docs_kept"]}])
        report = add_up([u["stats"] for u in d.units])
        if not d.units:
            report = Tally(rules, []).report()
        for key in ("dropped_by_reason", "chars_dropped_by_reason"):  # every rule listed, in rule order
            report[key] = {rule.reason: int(report.get(key, {}).get(rule.reason, 0)) for rule in rules}
        reasons = ["", *[rule.reason for rule in rules]]
        d.finish(kind=kind, **{REASONS_KEY: reasons})
        if r is not None:
            r.finish(kind=kind, **{REASONS_KEY: reasons})
    return report, d.summary()


def scores_of(path, rows: int) -> np.ndarray:
    """(rows,) `quality@SRC` values of one clean shard (scores or eval n-gram counts), checked
    against its row count."""
    if not path.exists():
        raise UserError(f"{path}: no quality scores for this shard; run `dvc repro quality@SRC`")
    s = np.load(path, allow_pickle=False)
    if s.shape != (rows,):
        raise UserError(f"{path}: {s.shape[0]} scores, the clean shard has {rows} rows; rerun quality@SRC")
    return s


def _score_files(quality_dir, source: str, need_trained: bool, signals: list[str]) -> dict[str, str]:
    """{shard: digest of its quality@SRC files the rules read}, from that manifest; the score
    must come from a trained model when a rule reads it."""
    from llmpipe.core.shards import digest, read_manifest, shards
    if quality_dir is None:
        raise UserError(f"filter@{source}: a rule on {signals} is set but no --quality folder was given "
                        "(dvc.yaml passes data/quality/SRC)")
    m = read_manifest(quality_dir, f"quality@{source}")
    if need_trained and not m.get("trained", True):
        raise UserError(f"{quality_dir}: the quality model is untrained (no passages from the positive or the negative "
                        "sources: quality.positives / negatives, or by kind; reports/quality_model.json says why); set "
                        "filter.global.min_quality_score: null or add such sources")
    return {sh["name"]: digest(*(sh["files"][sh["name"] + EXTERNAL[s]]["sha256"] for s in signals)) for sh in shards(m)}


def kept_mask(filtered_dir, name: str) -> np.ndarray:
    """(rows,) bool: the clean rows of shard `name` that filter kept."""
    from pathlib import Path
    return np.load(Path(filtered_dir) / f"{name}.npy", allow_pickle=False) == KEPT


def summary_line(source: str, kind: str, report: dict, seconds: float) -> str:
    """The filter stage's one-line summary."""
    top = sorted(report["dropped_by_reason"].items(), key=lambda kv: -kv[1])[:3]
    return (f"filter@{source} ({kind}): kept {n(report['docs_kept'])} of {n(report['docs_in'])} docs, "
            f"{n(report['chars_kept'])} of {n(report['chars_in'])} chars in {seconds:.2f}s; top drops "
            + (", ".join(f"{k}={n(v)}" for k, v in top if v) or "none"))
