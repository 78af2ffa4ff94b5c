"""Repo-side helpers for the warm-storage tests: what DVC tracks, its bytes, and a clean slate.

A round trip is: fingerprint every output (sha256 of each file), `dvc push`, delete the local
cache and every cached output, `dvc pull`, fingerprint again and compare, then ask `dvc status`
(workspace) and `dvc status -c` (remote) whether anything is left to do.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

from conftest import dvc, git_commit, run

BLOB_DIR = "data/blobs"


def outputs(repo: Path) -> dict[str, bool]:
    """Every output DVC knows in `repo` (dvc.yaml stages and .dvc files): path -> uses the cache.

    Asked of DVC itself (its Python API, read-only) so the list follows dvc.yaml as stages are
    added; outputs with `cache: false` (metrics) live in git, not in the remote.
    """
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return {os.path.relpath(o.fs_path, repo): bool(o.use_cache) for o in r.index.outs}


def cached_outputs(repo: Path) -> list[str]:
    return sorted(p for p, cached in outputs(repo).items() if cached)


def fingerprint(repo: Path, paths: list[str] | None = None) -> dict[str, str]:
    """sha256 of every file under each output (file or directory): relative path -> hex."""
    digests: dict[str, str] = {}
    for rel in paths if paths is not None else sorted(outputs(repo)):
        root = repo / rel
        assert root.exists(), f"output {rel} is missing in {repo}"
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digests[str(f.relative_to(repo))] = h.hexdigest()
    return digests


def cache_objects(repo: Path) -> set[str]:
    """Content hashes stored in the local DVC cache (files/md5/XX/YYYY... -> XXYYYY...)."""
    root = repo / ".dvc" / "cache" / "files" / "md5"
    if not root.is_dir():
        return set()
    return {p.parent.name + p.name for p in root.glob("*/*") if p.is_file()}


def remote_objects(keys: list[str]) -> set[str]:
    """Content hashes in a remote listing (`<prefix>/files/md5/XX/YYYY...`)."""
    return {k.split("/")[-2] + k.split("/")[-1] for k in keys if "/files/md5/" in f"/{k}"}


def drop_local(repo: Path) -> list[str]:
    """Delete the local DVC cache and every cached output: the state of a machine that has only git."""
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    gone = cached_outputs(repo)
    for rel in gone:
        p = repo / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    return gone


def add_blobs(repo: Path, count: int = 48, size: int = 256 * 1024, seed: int = 0) -> list[str]:
    """`dvc add` a directory of incompressible files (count x size bytes) and commit the .dvc file.

    Gives a push enough objects to be interrupted half-way; seeded, so reruns are identical.
    """
    rng = random.Random(seed)
    d = repo / BLOB_DIR
    d.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (d / f"blob-{i:03d}.bin").write_bytes(rng.randbytes(size))
    dvc(repo, "add", BLOB_DIR)
    git_commit(repo, "add blobs")
    return [f"{BLOB_DIR}/blob-{i:03d}.bin" for i in range(count)]


def assert_workspace_clean(repo: Path, env: dict | None = None) -> None:
    """`dvc status` has nothing to report: every stage and .dvc file matches its lock."""
    p = dvc(repo, "status", "--json", env=env)
    assert json.loads(p.stdout or "{}") == {}, f"dvc status not clean:\n{p.stdout}"


def assert_remote_in_sync(repo: Path, env: dict | None = None) -> None:
    """`dvc status -c`: nothing is missing from (or only in) the default remote."""
    p = dvc(repo, "status", "--cloud", "--json", env=env)
    assert json.loads(p.stdout or "{}") == {}, f"dvc status -c not clean:\n{p.stdout}"


def git_clone(src: Path, dst: Path) -> Path:
    run(["git", "clone", "-q", str(src), str(dst)], cwd=src.parent)
    return dst


def committed_text(repo: Path, path: str) -> str:
    """The content of `path` at HEAD, as a clone would see it."""
    return run(["git", "show", f"HEAD:{path}"], cwd=repo).stdout


def tracked_by_git(repo: Path) -> list[str]:
    return run(["git", "ls-files"], cwd=repo).stdout.split()
