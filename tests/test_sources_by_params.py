"""A source is one params entry: adding or removing `sources.X` in params.yaml is all it takes
(dvc.yaml names no source), with the real `dvc repro` on a copy of the built repo."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO_ROOT, dvc, stages_ran



def edit(repo, fn) -> None:
    p = repo / "params.yaml"
    data = yaml.safe_load(p.read_text())
    fn(data)
    p.write_text(yaml.safe_dump(data, sort_keys=False))


def test_dvc_yaml_names_no_source():
    """Neither a source nor a kind: `git grep -n "c4\\|wikipedia\\|gutenberg\\|fineweb" dvc.yaml`."""
    text = (REPO_ROOT / "dvc.yaml").read_text().lower()
    assert [w for w in ("c4", "wikipedia", "gutenberg", "fineweb") if w in text] == []


@pytest.mark.slow
def test_add_and_remove_a_source_by_params_alone(repo_copy):
    repo = repo_copy

    def add(d):
        d["sources"]["web2"] = {"kind": "c4", "uri": "sample://c4", "sample_docs": 40, "sample_seed": 7}
        d["mix"]["weights"]["web2"] = 0.1
        d["mix"]["max_val_overlap"] = 1.0  # web2 is a c4 sample with another seed: same prose slice

    edit(repo, add)
    ran = stages_ran(dvc(repo, "repro", "mix"))
    old = {"c4", "wikipedia", "gutenberg", "fineweb"}
    # the new source runs end to end; old ingests and cleans are untouched. web2 is of a web kind,
    # but quality.negatives names the sources that give the model's negatives: quality_sample
    # rereads the pinned shards, its passages come out the same, so the model stays cached and no
    # old source is rescored or re-filtered
    assert {"ingest@web2", "clean@web2", "quality@web2", "filter@web2", "dedup", "tokenize@web2", "mix"} <= ran
    assert not any(f"{st}@{s}" in ran for st in ("ingest", "clean", "quality", "filter") for s in old), ran
    assert "quality_sample" in ran and "quality_model" not in ran
    assert "quality_model" not in dvc(repo, "status", "quality_model").stdout
    meta = json.loads((repo / "data/mix/data_meta.json").read_text())
    assert set(meta["sources"]) == old | {"web2"}
    # dedup writes one folder of masks per source (data/dedup/SRC/NAME.npy per clean shard)
    assert sorted(p.name for p in (repo / "data/dedup").iterdir()) == sorted(old | {"web2"})
    assert all((repo / "data/dedup" / s).is_dir() for s in old | {"web2"})

    def remove(d):
        del d["sources"]["gutenberg"]
        del d["mix"]["weights"]["gutenberg"]
        d["dedup"]["priority"] = [s for s in d["dedup"]["priority"] if s != "gutenberg"]

    edit(repo, remove)
    ran = stages_ran(dvc(repo, "repro", "mix"))
    assert "dedup" in ran and "mix" in ran and not any(s.endswith("@gutenberg") for s in ran)
    meta = json.loads((repo / "data/mix/data_meta.json").read_text())
    assert set(meta["sources"]) == (old | {"web2"}) - {"gutenberg"}
    assert not (repo / "data/dedup/gutenberg").exists()
    assert "mix" not in stages_ran(dvc(repo, "repro", "mix"))  # up to date
