"""One convention for user errors in every stage and the CLI: one line on stderr, exit status 2,
no traceback. Bugs keep their traceback."""
from __future__ import annotations

import errno
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from llmpipe.core.errors import UserError, entry

REPO = Path(__file__).resolve().parents[1]
STAGES = ["inputs", "ingest", "clean", "filter", "dedup", "tokenizer", "tokenize", "mix", "bench", "train", "eval"]
# The least each stage's argparse needs before it reads params.
ARGS = {"inputs": ["--out", "o"],
        "ingest": ["--source", "c4", "--out", "o"],
        "clean": ["--source", "c4", "--in", "i", "--out", "o"],
        "filter": ["--source", "c4", "--in", "i", "--out", "o", "--report", "r.json"],
        "tokenize": ["--source", "c4", "--clean", "c", "--dedup", "d", "--out", "t"]}


def _one_line_error(err: str, prog: str, message: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ") and message in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_reports_a_params_error_in_one_line(name, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("sources: {c4: {kind: c4, uri: 'sample://c4'}}\ntrain: {lr: -1}\n")
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(f"stages.{name}")
    assert mod.main([*ARGS.get(name, []), "--params", str(bad)]) == 2
    prog = f"{name}@c4" if "--source" in ARGS.get(name, []) else name
    _one_line_error(capsys.readouterr().err, prog, "params.yaml: train.lr: must be > 0, got -1.0")


def test_stage_as_dvc_runs_it_exits_2_in_one_line(tmp_path):
    """The real entry point (`python -m stages.clean`) on a missing input."""
    p = subprocess.run([sys.executable, "-m", "stages.clean", "--source", "c4", "--in", str(tmp_path / "no"),
                        "--out", str(tmp_path / "o"), "--params", str(REPO / "params.yaml")],
                       cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}"})
    assert p.returncode == 2
    _one_line_error(p.stderr, "clean@c4", "no/manifest.json: not found; did you run `dvc repro ingest@c4`?")
    assert not (tmp_path / "o").exists()


def test_disk_full_is_a_user_error_and_a_bug_keeps_its_traceback(capsys):
    @entry("demo")
    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.parquet")

    assert full([]) == 2
    _one_line_error(capsys.readouterr().err, "demo", "/data/out.parquet: No space left on device: free disk space")

    @entry("demo")
    def bug(argv):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        bug([])

    @entry("demo")
    def multi(argv):
        raise UserError("first part\nsecond part")

    assert multi([]) == 2
    _one_line_error(capsys.readouterr().err, "demo", "first part second part")


def test_cli_user_error_is_one_line(tmp_path, capsys):
    from llmpipe.cli import main
    assert main(["stats", str(tmp_path / "nothing")]) == 2
    _one_line_error(capsys.readouterr().err, "llmpipe stats", "nothing")


def test_inputs_that_are_not_parquet_and_bad_token_meta_are_one_line(tmp_path, capsys):
    import importlib as il
    from _cleankit import fake_manifest
    from llmpipe.cli import main as cli
    ing = fake_manifest(tmp_path / "ingested", ["x"])  # a shard directory whose shard x.parquet ...
    bad = ing / "x.parquet"
    bad.write_text("not parquet\n")  # ... is not Parquet
    clean = il.import_module("stages.clean")
    args = ["--source", "c4", "--out", str(tmp_path / "o"), "--params", str(REPO / "params.yaml")]
    assert clean.main(["--in", str(ing), *args]) == 2
    _one_line_error(capsys.readouterr().err, "clean@c4", "x.parquet: not a readable Parquet file")
    bad.unlink()
    bad.mkdir()  # a folder where a file is expected
    assert clean.main(["--in", str(ing), *args]) == 2
    _one_line_error(capsys.readouterr().err, "clean@c4", "x.parquet: is a folder; this input is one Parquet file")
    for text, what in (("{", "not valid JSON"), ("[1, 2]", "not a llmpipe.shards/1 manifest")):
        (ing / "manifest.json").write_text(text)  # a broken manifest: what to rerun
        assert clean.main(["--in", str(ing), *args]) == 2
        err = capsys.readouterr().err
        _one_line_error(err, "clean@c4", what)
        assert "rerun `dvc repro ingest@c4`" in err, err
    assert not (tmp_path / "o").exists()
    for text, what in (("{", "not valid JSON"), ("[1, 2]", "not a token-directory meta"),
                       ('{"format": "llmpipe.tokens/1"}', "missing dtype, splits")):
        (tmp_path / "meta.json").write_text(text)
        assert cli(["stats", str(tmp_path)]) == 2
        _one_line_error(capsys.readouterr().err, "llmpipe stats", what)
