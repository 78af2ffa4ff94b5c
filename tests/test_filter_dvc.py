"""DVC wiring, with the real `dvc` on a tmp copy of the repo: a filter threshold change reruns
`filter@SRC` and `dedup` but never `clean@SRC`; a dedup threshold change reruns only `dedup`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _cleankit import read_kept
from conftest import dvc, git_commit, make_repo, set_params, stages_ran

SOURCES = ("c4", "wikipedia", "gutenberg", "fineweb")


@pytest.mark.slow
def test_threshold_change_reruns_filter_and_dedup_not_clean(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = stages_ran(dvc(repo, "repro", "dedup"))
    assert {f"clean@{s}" for s in SOURCES} <= first and "dedup" in first
    git_commit(repo, "repro")
    before = json.loads((repo / "reports/filter/c4.json").read_text())

    def shard_files(stage: str) -> dict[str, tuple[int, int]]:
        """inode and mtime of every file of every source's folder of `stage`."""
        return {str(p.relative_to(repo)): (p.stat().st_ino, p.stat().st_mtime_ns)
                for s in SOURCES for p in sorted((repo / "data" / stage / s).iterdir())}
    clean_files, masks = shard_files("clean"), shard_files("filtered")
    assert any(f.endswith(".minhash.npy") for f in clean_files)

    # a threshold that drops about half of the kept c4 documents, whatever the sample holds
    words = read_kept(repo / "data/clean/c4", repo / "data/filtered/c4", ["text"]).column("text").to_pylist()
    median = int(np.median([len(t.split()) for t in words]))
    set_params(repo, {"filter.global.min_words": median + 1})
    ran = stages_ran(dvc(repo, "repro", "dedup"))
    assert ran == {*(f"filter@{s}" for s in SOURCES), "dedup"}
    # only the filter masks were rewritten: the clean shards are the same files (inode, mtime)
    assert shard_files("clean") == clean_files
    new_masks = shard_files("filtered")
    assert new_masks.keys() == masks.keys() and all(new_masks[k] != masks[k] for k in masks)
    after = json.loads((repo / "reports/filter/c4.json").read_text())
    assert after["docs_kept"] < before["docs_kept"]
    assert after["docs_in"] == after["docs_kept"] + sum(after["dropped_by_reason"].values())
    git_commit(repo, "min_words")

    set_params(repo, {"dedup.threshold": 0.9})
    assert stages_ran(dvc(repo, "repro", "dedup")) == {"dedup"}
    git_commit(repo, "dedup threshold")

    # a C4-only rule reruns filter@c4 alone (and dedup only if its output changed)
    set_params(repo, {"filter.c4.min_alpha_ratio": 0.95})
    ran = stages_ran(dvc(repo, "repro", "dedup"))
    assert "filter@c4" in ran and ran <= {"filter@c4", "dedup"}


def test_declared_params_and_deps_are_exact():
    """clean@SRC tracks no threshold and only the 3 dedup keys that shape signatures; each stage
    depends on exactly the modules it imports."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    clean, filt = stages["clean"]["do"], stages["filter"]["do"]
    from conftest import declared_params
    assert declared_params(clean) == ["clean", "sources.${key}.kind", "dedup.ngram", "dedup.num_perm", "dedup.seed"]
    assert declared_params(filt) == ["filter.global", "filter.enabled", "filter.keep_rejects", "filter.${item.kind}",
                              "sources.${key}.kind"]
    from conftest import code_files
    assert "data/code/stages.clean.json" in clean["deps"] and "data/code/stages.filter.json" in filt["deps"]
    code = {"clean": code_files("stages.clean"), "filter": code_files("stages.filter")}
    pkg = sorted(p.name for p in (repo / "src/llmpipe/data/clean").glob("*.py"))
    clean_mods = sorted(Path(d).name for d in code["clean"] if d.startswith("src/llmpipe/data/clean/"))
    assert clean_mods == [p for p in pkg if p != "rules.py"]          # rules.py is filter's
    assert sorted(Path(d).name for d in code["filter"] if d.startswith("src/llmpipe/data/clean/")) == \
        ["__init__.py", "rules.py"]
    for files in code.values():
        assert {"src/llmpipe/data/table.py", "src/llmpipe/params.py", "src/llmpipe/core/atomic.py",
                "src/llmpipe/core/log.py"} <= files
    assert "src/llmpipe/data/minhash.py" in code["clean"]
