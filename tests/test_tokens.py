"""Token files: tokenize@SRC output, dtype choice, split, reader, verify and stats."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from llmpipe.cli import main as cli_main
from llmpipe.core.seeds import unit_hash
from llmpipe.data.tokenizer import load
from llmpipe.data.tokens import (SplitWriter, TokenizerMismatch, VerifyError, open_tokens, token_dtype,
                            verify_dir)
from _tokkit import shard_names, texts, tokenize, write_source_shards
from test_tokenizer import SHARDS, train_tiny

VAL = 0.3


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """root/tok/spm.model, root/{clean,filtered,dedup}/{a,b} (SHARDS shards each), root/tokens/a (2 workers)."""
    root = tmp_path_factory.mktemp("tokens")
    train_tiny(root)
    tokenize(root, "a", root / "tok/spm.model", val_fraction=VAL, jobs=2)
    return root


def texts_of(root: Path, src: str) -> dict[str, str]:
    return texts(root / "clean" / src)


def bins(d: Path, split: str) -> list[Path]:
    """The .bin of every shard of SPLIT in a token directory, in shard order."""
    return [d / sh["splits"][split]["files"]["bin"]["name"] for sh in json.loads((d / "meta.json").read_text())["shards"]]


def test_dtype_boundary():
    assert token_dtype(400) == np.uint16
    assert token_dtype(65536) == np.uint16   # ids 0..65535 fit
    assert token_dtype(65537) == np.uint32
    assert token_dtype(100_000) == np.uint32


def test_uint32_files_round_trip(tmp_path):
    w = SplitWriter(tmp_path, "train", token_dtype(70_000))
    toks = np.array([65535, 65536, 69_999, 3, 7, 3], dtype=np.uint32)
    w.add(toks, np.array([4, 2]), np.array([10, 2]), ["x", "y"], ["s", "s"])
    info = w.close()
    assert (tmp_path / "train.bin").stat().st_size == 6 * 4 == info["files"]["bin"]["bytes"]
    back = np.fromfile(tmp_path / "train.bin", dtype=np.uint32)
    assert back.tolist() == toks.tolist()
    assert np.fromfile(tmp_path / "train.idx", dtype=np.uint64).tolist() == [0, 4, 6]


def test_split_is_disjoint_complete_and_by_id_hash(built):
    texts = texts_of(built, "a")
    tr = open_tokens(built / "tokens/a", "train").doc_table().column("id").to_pylist()
    va = open_tokens(built / "tokens/a", "val").doc_table().column("id").to_pylist()
    assert not set(tr) & set(va)
    assert sorted(tr + va) == sorted(texts)
    assert all(unit_hash(0, i) < VAL for i in va) and all(unit_hash(0, i) >= VAL for i in tr)
    assert 0.15 < len(va) / len(texts) < 0.45


def test_min_val_docs_forces_the_lowest_hashes_into_val(built, tmp_path):
    for n_docs, expect_val in ((4, 2), (2, 1), (1, 0)):
        ids = [f"book-{k}" for k in range(n_docs)]
        write_source_shards(tmp_path / f"{n_docs}", "g", [[{"id": i, "text": f"text of {i}"} for i in ids]])
        meta = tokenize(tmp_path / f"{n_docs}", "g", built / "tok/spm.model", tmp_path / f"t{n_docs}",
                        val_fraction=1e-9, min_val_docs=2)
        val = open_tokens(tmp_path / f"t{n_docs}", "val").doc_table().column("id").to_pylist()
        lowest = sorted(ids, key=lambda i: unit_hash(0, i))[:expect_val]
        assert sorted(lowest) == meta["split"]["forced_val_ids"]
        if n_docs == 1:  # a lone document keeps its text's tail for val instead (test_lone_document.py)
            assert val == ["book-0#tail"] and meta["splits"]["train"]["docs"] == 1
            continue
        assert sorted(val) == sorted(lowest)
        assert meta["splits"]["train"]["docs"] == n_docs - expect_val


def test_documents_decode_back_and_meta_counts(built):
    texts, tok = texts_of(built, "a"), load(built / "tok/spm.model")
    meta = json.loads((built / "tokens/a/meta.json").read_text())
    for split in ("train", "val"):
        tf = open_tokens(built / "tokens/a", split, tokenizer=tok)
        ids = tf.doc_table().column("id").to_pylist()
        for i, doc_id in enumerate(ids):
            toks = tf.doc(i)
            assert toks[-1] == tok.eos_id and tok.eos_id not in toks[:-1].tolist()
            assert tok.decode(toks) == texts[doc_id]
        assert tf.doc_bytes().tolist() == [len(texts[i].encode()) for i in ids]
        assert meta["splits"][split]["utf8_bytes"] == tf.utf8_bytes == int(tf.doc_bytes().sum())
        assert meta["splits"][split]["docs"] == len(tf) == len(ids)
        assert meta["splits"][split]["tokens"] == len(tf.tokens) == int(tf.offsets[-1])
    assert meta["dtype"] == "uint16" and meta["tokenizer_fingerprint"] == tok.fingerprint
    assert meta["rerun"] == "dvc repro tokenize@a"


def test_output_does_not_depend_on_worker_count(built, tmp_path):
    for name in shard_names(SHARDS):  # so 2 workers did share each shard
        assert pq.ParquetFile(built / f"clean/a/{name}.parquet").num_row_groups > 2
    tokenize(built, "a", built / "tok/spm.model", tmp_path / "a1", val_fraction=VAL, jobs=1)
    names = sorted(p.name for p in (built / "tokens/a").iterdir())
    assert len(names) == 6 * SHARDS + 2 and sorted(p.name for p in (tmp_path / "a1").iterdir()) == names
    for name in names:  # every shard's .bin/.idx/.docs.parquet, meta.json and manifest.json
        assert (tmp_path / "a1" / name).read_bytes() == (built / "tokens/a" / name).read_bytes(), name


def test_output_does_not_depend_on_task_size(built, tmp_path, monkeypatch):
    import llmpipe.data.encode as enc
    monkeypatch.setattr(enc, "TASK_BYTES_MIN", 1)
    monkeypatch.setattr(enc, "TASK_BYTES_MAX", 1500)  # a few docs per task, tasks cross write blocks
    monkeypatch.setattr(enc, "IN_FLIGHT", 1)
    tokenize(built, "a", built / "tok/spm.model", tmp_path / "small", val_fraction=VAL, jobs=2)
    names = sorted(p.name for p in (built / "tokens/a").iterdir())
    assert len(names) == 6 * SHARDS + 2 and sorted(p.name for p in (tmp_path / "small").iterdir()) == names
    for name in names:  # the .docs.parquet tables too: their sha256 is in meta.json
        assert (tmp_path / "small" / name).read_bytes() == (built / "tokens/a" / name).read_bytes(), name


def test_output_does_not_depend_on_encode_call_size(built, tmp_path, monkeypatch):
    import llmpipe.data.encode as enc
    monkeypatch.setattr(enc, "ENCODE_CHARS", 1)  # one SentencePiece call per document (jobs=1: in this process)
    tokenize(built, "a", built / "tok/spm.model", tmp_path / "one", val_fraction=VAL, jobs=1)
    for name in sorted(p.name for p in (built / "tokens/a").iterdir()):
        assert (tmp_path / "one" / name).read_bytes() == (built / "tokens/a" / name).read_bytes(), name


def test_worker_count():
    from llmpipe.data.encode import WORKER_BYTES_MIN, worker_count
    assert worker_count(0, 0.5e6, 100, cores=16) == 1          # the sample: in-process, no pool start
    assert worker_count(0, 3 * WORKER_BYTES_MIN, 10_000, cores=16) == 3
    assert worker_count(0, 1e12, 10_000, cores=16) == 16       # big corpus: every core
    assert worker_count(2, 100, 10, cores=16) == 2             # an explicit count is kept ...
    assert worker_count(8, 1e9, 3, cores=16) == 3              # ... up to one worker per document


@pytest.mark.parametrize("shards", [[[]], [], [[], []]], ids=["one-empty-shard", "no-shard", "two-empty-shards"])
def test_empty_source_gives_valid_empty_files(built, tmp_path, shards):
    write_source_shards(tmp_path, "e", shards)
    meta = tokenize(tmp_path, "e", built / "tok/spm.model", tmp_path / "e", val_fraction=VAL, min_val_docs=1,
                    jobs=2)
    assert {s: (v["docs"], v["tokens"]) for s, v in meta["splits"].items()} == {"train": (0, 0), "val": (0, 0)}
    verify_dir(tmp_path / "e", built / "tok/spm.model")
    tf = open_tokens(tmp_path / "e", "val")
    assert len(tf) == 0 and len(tf.tokens) == 0 and tf.offsets.tolist() == [0]
    assert tf.doc_table().num_rows == 0 and tf.doc_bytes().tolist() == []


def test_missing_input_names_the_stage(built, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dvc repro clean@x"):
        tokenize(tmp_path, "x", built / "tok/spm.model", tmp_path / "x", val_fraction=VAL)
    write_source_shards(tmp_path, "x", [[{"id": "x-1", "text": "some text"}]])
    (tmp_path / "dedup/x/part-00.00000.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"part-00.00000.npy: not found; did you run `dvc repro dedup`"):
        tokenize(tmp_path, "x", built / "tok/spm.model", tmp_path / "x", val_fraction=VAL)
    shutil.rmtree(tmp_path / "dedup/x")
    with pytest.raises(FileNotFoundError, match=r"dvc repro dedup"):
        tokenize(tmp_path, "x", built / "tok/spm.model", tmp_path / "x", val_fraction=VAL)
    assert not (tmp_path / "x").exists()


def copy_dir(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built / "tokens/a", tmp_path / "a"))


def test_verify_ok(built, capsys):
    assert cli_main(["verify", str(built / "tokens/a"), "--tokenizer", str(built / "tok/spm.model")]) == 0
    assert capsys.readouterr().out.startswith(f"OK {built / 'tokens/a'}: uint16, vocab 400")


def test_verify_catches_a_flipped_byte(built, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no artifacts/tokenizer here: the default checks no fingerprint
    d = copy_dir(built, tmp_path)
    b = bins(d, "train")[1]  # a shard in the middle
    data = bytearray(b.read_bytes())
    data[101] ^= 0x01
    b.write_bytes(bytes(data))
    assert cli_main(["verify", str(d)]) == 1
    assert f"{b}: sha256 differs" in capsys.readouterr().err


def test_verify_catches_a_truncated_file(built, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = copy_dir(built, tmp_path)
    b = bins(d, "val")[-1]
    data = b.read_bytes()
    b.write_bytes(data[:-2])
    assert cli_main(["verify", str(bins(d, "val")[0])]) == 1  # one .bin: its split, every shard of it
    assert f"{b}: {len(data) - 2} bytes, meta says {len(data)}" in capsys.readouterr().err


def test_verify_catches_a_missing_eos(built, tmp_path):
    """A consistent-looking file (sha256 updated) whose last document lost its EOS."""
    d = copy_dir(built, tmp_path)
    b = bins(d, "train")[0]
    toks = np.fromfile(b, dtype=np.uint16)
    toks[-1] = 5
    toks.tofile(b)
    meta = json.loads((d / "meta.json").read_text())
    from llmpipe.core.atomic import sha256_file
    meta["shards"][0]["splits"]["train"]["files"]["bin"]["sha256"] = sha256_file(b)
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(VerifyError, match="does not end with EOS"):
        verify_dir(d)


def test_foreign_tokenizer_is_refused(built, tmp_path, capsys):
    other = train_tiny(tmp_path / "other", vocab_size=420)
    assert cli_main(["verify", str(built / "tokens/a"), "--tokenizer", str(other)]) == 1
    assert "rerun `dvc repro tokenize@a`" in capsys.readouterr().err
    with pytest.raises(TokenizerMismatch, match=r"dvc repro tokenize@a"):
        open_tokens(built / "tokens/a", "train", tokenizer=other)
    open_tokens(built / "tokens/a", "train", tokenizer=built / "tok")  # the right one: fine


def test_verify_checks_the_projects_tokenizer_by_default(built, tmp_path, capsys, monkeypatch):
    """A swapped tokenizer of the same vocab size at artifacts/tokenizer/spm.model (the repo
    root is the current directory) fails verify without --tokenizer; `--tokenizer none` skips it."""
    swapped = train_tiny(tmp_path / "other", vocab_size=400, sample_chars=60_000)
    assert load(swapped).vocab_size == load(built / "tok/spm.model").vocab_size == 400
    assert swapped.read_bytes() != (built / "tok/spm.model").read_bytes()
    monkeypatch.chdir(tmp_path)
    d = str(built / "tokens/a")
    (tmp_path / "artifacts/tokenizer").mkdir(parents=True)
    shutil.copy(swapped, tmp_path / "artifacts/tokenizer/spm.model")
    assert cli_main(["verify", d]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"FAIL {d}: made with tokenizer ") and \
        "but the tokenizer given (artifacts/tokenizer/spm.model)" in err and "dvc repro tokenize@a" in err
    assert cli_main(["verify", d, "--tokenizer", "none"]) == 0
    assert "not checked: --tokenizer none; only meta.json's own sha256s were checked" in capsys.readouterr().out
    shutil.copy(built / "tok/spm.model", tmp_path / "artifacts/tokenizer/spm.model")
    assert cli_main(["verify", d]) == 0
    assert "(= artifacts/tokenizer/spm.model)" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "artifacts")
    assert cli_main(["verify", d]) == 0  # no project tokenizer here: says what was not checked
    assert "not checked: no artifacts/tokenizer/spm.model in the current directory" in capsys.readouterr().out


def test_stats_json(built, capsys):
    assert cli_main(["stats", str(built / "tokens/a"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    meta = json.loads((built / "tokens/a/meta.json").read_text())
    for split in ("train", "val"):
        assert s["splits"][split]["tokens"] == meta["splits"][split]["tokens"]
        assert s["splits"][split]["sources"] == {"a": {"tokens": meta["splits"][split]["tokens"], "share": 1.0}}
    assert cli_main(["stats", str(built / "tokens/a")]) == 0
    assert "train  (all)" in capsys.readouterr().out


def test_not_a_token_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["verify", str(tmp_path)]) == 2
    assert "no meta.json" in capsys.readouterr().err


def test_many_one_document_shards_are_encoded_a_shard_per_worker_with_the_same_bytes(built, tmp_path):
    """A book per shard (Gutenberg) cannot be split over workers: with several such shards to
    build, each worker encodes whole shards (`core.executor.shard_tasks`); the bytes are those of
    one process, and one new shard alone is split over the workers as before."""
    words = texts_of(built, "a")
    body = " ".join(words.values())
    docs = [[{"id": f"g{k}", "text": f"Book {k}.\n\n" + body[k * 50:k * 50 + 4000]}] for k in range(6)]
    write_source_shards(tmp_path, "g", docs)
    one = tokenize(tmp_path, "g", built / "tok/spm.model", tmp_path / "one", val_fraction=VAL, jobs=1)
    two = tokenize(tmp_path, "g", built / "tok/spm.model", tmp_path / "two", val_fraction=VAL, jobs=2)
    assert (one["jobs"], one["jobs_over"]) == (1, "documents")
    assert (two["jobs"], two["jobs_over"], two["shards_built"]) == (2, "shards", 6)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) == 6 * 6 + 2 and sorted(p.name for p in (tmp_path / "two").iterdir()) == names
    for name in names:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    write_source_shards(tmp_path, "g", docs + [[{"id": "g6", "text": "Book 6.\n\n" + body[:4000]}]])
    again = tokenize(tmp_path, "g", built / "tok/spm.model", tmp_path / "two", val_fraction=VAL, jobs=2)
    assert (again["jobs_over"], again["shards_built"], again["shards_reused"]) == ("documents", 1, 6)
