"""Shared fixtures: hermetic copies of this repo on which the real `dvc` runs.

`built_repo` (session scope) copies the repo's files into a tmp dir, applies TEST_OVERRIDES
(small sizes, so the whole pipeline runs in CI time), commits it to a fresh git repo and runs
the full `dvc repro` once. Tests that edit params take `repo_copy`, a `cp -a` of that built
repo (DVC cache and outputs included), so only the stages they touch rerun.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
if str(REPO_ROOT) not in sys.path:  # so tests can `import stages.NAME` and call its main(argv)
    sys.path.insert(0, str(REPO_ROOT))

# Small sizes for the end-to-end tests (dotted key -> value). Keep the full pipeline under a
# few minutes on 2 CPU cores.
TEST_OVERRIDES: dict[str, object] = {
    # ingest (sample corpus sizes; generation is ~3 s per source whatever the size)
    "sources.c4.sample_docs": 100,
    "sources.wikipedia.sample_docs": 60,
    "sources.gutenberg.sample_docs": 6,
    "sources.fineweb.sample_docs": 100,
    # clean: one process (spawning workers costs more than these tiny tables take)
    "clean.jobs": 1,
    # bench + train: tiny preset at context 64, 8 steps of 1,024 tokens, short bench windows
    "model.context": 64,
    "train.tokens": 8192,
    "train.batch_tokens": 1024,
    "train.eval_every": 4,
    "train.ckpt_every": 4,
    "train.log_every": 2,
    "train.warmup": 2,
    "train.sample_tokens": 8,
    "bench.warmup_steps": 1,
    "bench.steps": 2,
    "bench.windows": 2,
    "bench.matmul_size": 512,
    # tokenizer + mix: a small vocab; a mix the tiny corpus can fill (2 gutenberg books left
    # after filtering, ~18k tokens each, so a source share can miss its target by half a book)
    "tokenizer.vocab_size": 1000,
    "tokenizer.sample_chars": 400000,
    "mix.train_tokens": 200000,
    "mix.val_tokens": 20000,
    "mix.tolerance": 0.5,
    # eval: a few val documents, two short prompts, a small built-in MC task
    "eval.max_tokens": 20000,
    "eval.prompts": ["The history of the", "Once upon a time"],
    "eval.max_new_tokens": 16,
    "eval.builtin_mc.n": 20,
}


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None,
        timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run a command with the test venv first on PATH and the repo copy's src importable."""
    full_env = dict(os.environ)
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env["PYTHONPATH"] = f"{Path(cwd) / 'src'}{os.pathsep}{cwd}"
    full_env["DVC_NO_ANALYTICS"] = "1"
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.pop("DVC_SITE_CACHE_DIR", None)
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}) in {cwd}\n"
                             f"--- stdout\n{p.stdout[-6000:]}\n--- stderr\n{p.stderr[-6000:]}")
    return p


def dvc(repo: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd=repo, check=check, env=env)


def code_files(script: str) -> set[str]:
    """The files stage `code` lists for `script` (`stages.NAME`): its import closure, which is
    what the stage's one code dep, data/code/stages.NAME.json, holds."""
    from stages.code import record
    return set(record(script)["files"])


def stages_ran(p: subprocess.CompletedProcess) -> set[str]:
    """Names of the stages `dvc repro` / `dvc exp run` actually executed, but `params`: it reruns
    on every params.yaml value edit by design (it only cuts the file into data/params/KEY.json),
    so the sets tests compare name the stages that did work (tests/test_params_stage.py checks
    `params` itself)."""
    out = p.stdout + p.stderr
    return set(re.findall(r"Running stage '([^']+)'", out)) - {"params"}


PARAMS_DIR = "data/params/"


def declared_params(stage: dict) -> list[str]:
    """The params keys a stage of dvc.yaml or dvc.lock depends on: its deps data/params/KEY.json
    (stage `params`), in order."""
    deps = [d if isinstance(d, str) else d["path"] for d in stage.get("deps", [])]
    return [d[len(PARAMS_DIR):-len(".json")] for d in deps if d.startswith(PARAMS_DIR) and d.endswith(".json")]


def set_params(repo: Path, overrides: dict[str, object]) -> None:
    """Edit params.yaml in a repo copy by dotted key (`mix.weights.c4`)."""
    path = repo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def copy_repo_files(dst: Path) -> Path:
    """Copy the files git would see (tracked + untracked, not ignored) into `dst`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO_ROOT / rel
        if not src.is_file():
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)
    return dst


def git_commit(repo: Path, message: str = "test") -> None:
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], cwd=repo)


def make_repo(dst: Path, overrides: dict[str, object] | None = None) -> Path:
    """A fresh git + DVC repo holding this project's files, with TEST_OVERRIDES applied."""
    copy_repo_files(dst)
    run(["git", "init", "-q", "-b", "main"], cwd=dst)
    set_params(dst, {**TEST_OVERRIDES, **(overrides or {})})
    git_commit(dst, "init")
    return dst


def audit_dir(repo: Path) -> Path:
    return repo.parent / "audit"


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory) -> Path:
    """A repo copy on which the full `dvc repro` has run once (shared by the session)."""
    repo = make_repo(tmp_path_factory.mktemp("built") / "repo")
    # Every stage records the params it reads and the modules it imports (params.Section), for
    # tests/test_pipeline_contract.py; the audit lives beside the repo, outside DVC's view.
    dvc(repo, "repro", env={"LLMPIPE_AUDIT_DIR": str(audit_dir(repo))})
    git_commit(repo, "repro")
    return repo


@pytest.fixture
def repo_copy(built_repo: Path, tmp_path: Path) -> Path:
    """A private copy of `built_repo` (outputs and DVC cache included) to edit freely."""
    dst = tmp_path / "repo"
    shutil.copytree(built_repo, dst, symlinks=True)
    return dst


# --------------------------------------------------------------------------- a real local Ray cluster

@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The address of a real 2-node Ray cluster on 127.0.0.1 (`tests/_raykit.py`): a head and a
    second node joined to it, 1 CPU each, stopped (only its own processes) at the end of the
    session. Skips, saying why, without Ray."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'llmpipe[ray]'; `make test` and CI install it)")
    from _raykit import local_cluster
    with local_cluster(tmp_path_factory.mktemp("ray-logs")) as address:
        yield address
