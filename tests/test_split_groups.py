"""`split.group_by`: val documents never share a group (input file, folder, URL host, meta field)
with train, and the split stays a pure function of (seed, group key) (issue 16, item 3)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _tokkit import tokenize, write_source_shards
from llmpipe.core.config import ParamsError
from llmpipe.data.config import SplitParams
from llmpipe.data.tokens import open_tokens
from test_tokenizer import stdlib_docs, train_tiny

# shard names as ingest makes them: the input file's path with "~" for "/", then .NNNNN
NAMES = ["a~x.txt.00000", "a~x.txt.00001", "a~y.txt.00000", "b~z.txt.00000", "c~w.txt.00000"]


@pytest.fixture(scope="module")
def spm(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("spm"))


def corpus(root: Path) -> dict[str, dict]:
    """8 docs per shard; urls on 3 hosts (some docs without one), a `book` meta field on most."""
    texts = stdlib_docs()
    shards, by_id = [], {}
    for s, name in enumerate(NAMES):
        docs = []
        for k in range(8):
            i = s * 8 + k
            d = {"id": f"{name}#{k}", "text": texts[i % len(texts)],
                 "url": None if i % 5 == 0 else f"https://h{i % 3}.example.org/p/{i}",
                 "meta": None if i % 7 == 0 else json.dumps({"book": f"b{i % 4}"})}
            docs.append(d)
            by_id[d["id"]] = {**d, "shard": name}
        shards.append(docs)
    write_source_shards(root, "s", shards, names=NAMES)
    return by_id


def val_ids(out: Path) -> set[str]:
    return set(open_tokens(out, "val").doc_table().column("id").to_pylist())


def group_of(d: dict, group_by: str) -> str:
    if group_by == "file":
        return d["shard"].rsplit(".", 1)[0]
    if group_by == "path:1":
        return d["shard"].split("~")[0]
    if group_by == "url_host":
        return d["url"].split("/")[2] if d["url"] else d["id"]
    meta = json.loads(d["meta"]) if d["meta"] else {}
    return meta.get("book", d["id"])


@pytest.mark.parametrize("group_by", ["file", "path:1", "url_host", "meta:book"])
def test_val_never_shares_a_group_with_train(spm, tmp_path, group_by):
    docs = corpus(tmp_path)
    meta = tokenize(tmp_path, "s", spm, tmp_path / "tok", val_fraction=0.4, seed=5, group_by=group_by,
                    min_val_docs=1)
    val = val_ids(tmp_path / "tok")
    assert 0 < len(val) < len(docs) and meta["split"]["group_by"] == group_by
    groups = {}
    for i, d in docs.items():
        groups.setdefault(group_of(d, group_by), set()).add(i in val)
    assert all(len(v) == 1 for v in groups.values()), groups  # each group wholly val or wholly train
    assert 0 < sum(v == {True} for v in groups.values()) < len(groups)


def test_a_shards_split_does_not_depend_on_other_shards(spm, tmp_path):
    """Pure function of (seed, group key): the first shard alone gets the same split."""
    docs = corpus(tmp_path / "all")
    first = [{k: v for k, v in d.items() if k != "shard"} for d in docs.values() if d["shard"] == NAMES[0]]
    write_source_shards(tmp_path / "part", "s", [first], names=NAMES[:1])
    for group_by in ("path:1", "url_host"):
        kw = dict(val_fraction=0.5, seed=1, group_by=group_by, min_val_docs=0)
        tokenize(tmp_path / "all", "s", spm, tmp_path / f"t-all-{group_by}", **kw)
        tokenize(tmp_path / "part", "s", spm, tmp_path / f"t-part-{group_by}", **kw)
        assert val_ids(tmp_path / f"t-part-{group_by}") == val_ids(tmp_path / f"t-all-{group_by}") & {d["id"] for d in first}


def test_few_groups_keep_one_for_val_and_one_for_train(spm, tmp_path):
    """min_val_docs counts groups: with 5 files and a tiny val_fraction, one whole file is val."""
    docs = corpus(tmp_path)
    tokenize(tmp_path, "s", spm, tmp_path / "tok", val_fraction=1e-9, seed=0, group_by="file",
             min_val_docs=1)
    val = val_ids(tmp_path / "tok")
    files = {group_of(docs[i], "file") for i in val}
    assert len(files) == 1 and val == {i for i, d in docs.items() if group_of(d, "file") in files}
    tokenize(tmp_path, "s", spm, tmp_path / "tok9", val_fraction=1e-9, seed=0, group_by="file",
             min_val_docs=9)  # more than there are groups: all but one
    assert len({group_of(docs[i], "file") for i in val_ids(tmp_path / "tok9")}) == 3


@pytest.mark.parametrize("bad", ["dir", "path:0", "path:x", "meta:", "url"])
def test_bad_group_by_names_the_rule(bad):
    with pytest.raises(ParamsError, match=r"group_by: must be null, file, path:N \(N >= 1\), url_host or meta:FIELD"):
        SplitParams(group_by=bad)
