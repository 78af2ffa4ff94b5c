"""Each stage's dvc.yaml declaration matches what it really does (docs/ARCHITECTURE.md, "Exact dependencies").

The session's full `dvc repro` (conftest `built_repo`) ran with LLMPIPE_AUDIT_DIR set, so every
stage process recorded the params keys it read and the llmpipe modules it imported. A key read
but not declared means an edit would not rerun the stage (stale results); a key declared but
never read means needless reruns. Code deps are generated (scripts/code_deps.py, `make deps`);
tests/test_code_deps.py checks dvc.yaml holds exactly the generated lists.
Reading only the set of source names (`sources[]`) needs no params declaration: a stage that
reads every source depends on the folder their outputs lie in (`data/filtered`, `data/tokens`),
which changes when a source is added or removed.
`llmpipe/__init__.py` holds only the version string, so no stage declares it.
The `exec` section (where tasks run: `llmpipe.core.executor`) is read but never declared, by
design: it changes no byte of any output (tests/test_ray_dvc.py), so switching backend or
cluster address must rerun nothing.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import audit_dir, declared_params

pytestmark = pytest.mark.slow


def _covered(key: str, declared: set[str]) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.fixture(scope="module")
def audited(built_repo: Path) -> dict[str, dict]:
    """stage name -> {"params": set, "modules": set (src-relative), "declared_params", "deps"}."""
    lock = yaml.safe_load((built_repo / "dvc.lock").read_text())["stages"]
    records = [json.loads(p.read_text()) for p in audit_dir(built_repo).glob("*.json")]
    by_cmd = {}
    for rec in records:
        argv = rec["argv"]
        module = "stages." + Path(argv[0]).stem
        by_cmd[(module, tuple(argv[1:]))] = rec
    out = {}
    for name, st in lock.items():
        if name in ("code", "params"):  # code reads no params (its deps: the folders src/llmpipe and
            continue                     # stages); params reads them all (it tracks the whole file)
        words = shlex.split(st["cmd"])
        assert words[:2] == ["python", "-m"], f"{name}: cmd should be `python -m stages.NAME ...`"
        rec = by_cmd.get((words[2], tuple(words[3:])))
        assert rec is not None, f"{name}: no audit record for {st['cmd']!r}"
        src = built_repo / "src"
        out[name] = {
            "params": set(rec["params"]),
            "modules": {str(Path(m).resolve().relative_to(src.resolve())) for m in rec["modules"]},
            "declared_params": set(declared_params(st)),
            "deps": {d["path"] for d in st.get("deps", [])},
            "code": {f[len("src/"):] for d in st.get("deps", []) if d["path"].startswith("data/code/")
                     for f in json.loads((built_repo / d["path"]).read_text())["files"] if f.startswith("src/")},
        }
    return out


def test_every_stage_ran_audited(audited):
    stages = {n.split("@")[0] for n in audited}
    assert {"ingest", "clean", "filter", "dedup", "tokenizer", "tokenize", "mix", "bench", "train",
            "eval"} <= stages


def test_params_read_are_declared(audited):
    problems = [f"{n}: reads {k} but dvc.yaml does not declare it"
                for n, a in sorted(audited.items())
                for k in sorted(a["params"])
                if not k.endswith("[]") and not k.startswith("exec.") and not _covered(k, a["declared_params"])]
    assert not problems, "\n".join(problems)


def test_params_declared_are_read(audited):
    problems = [f"{n}: declares {d} but never reads it (needless reruns)"
                for n, a in sorted(audited.items())
                for d in sorted(a["declared_params"])
                if not any(k.removesuffix("[]") == d or k.startswith(d + ".") or d.startswith(k + ".")
                           for k in a["params"])]
    assert not problems, "\n".join(problems)


def test_modules_a_real_run_imported_are_declared(audited):
    """What the audited run imported is a subset of the code the stage depends on: the closure
    listed in its data/code/stages.NAME.json (which also holds the lazy imports a given run may
    not reach), plus any src/ path it names directly."""
    problems = []
    for n, a in sorted(audited.items()):
        declared = a["code"] | {d[len("src/"):] for d in a["deps"] if d.startswith("src/")}
        if not any(d.startswith("data/code/") for d in a["deps"]):
            problems.append(f"{n}: no data/code/stages.NAME.json dependency")
        for m in sorted(a["modules"] - {"llmpipe/__init__.py"}):
            if not any(m == d or m.startswith(d.rstrip("/") + "/") for d in declared):
                problems.append(f"{n}: imports src/{m} but does not depend on it")
    assert not problems, "\n".join(problems)
