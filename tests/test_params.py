"""The strict params loader: the shipped file loads; every user error names the key path."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmpipe.params import Params, ParamsError, SourceParams, SplitParams, as_dict, from_dict, load_params

REPO = Path(__file__).resolve().parents[1]
BASE = {"sources": {"c4": {"kind": "c4", "uri": "sample://c4"}}}


def load(tmp_path, data) -> object:
    p = tmp_path / "params.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return load_params(p)


def with_source(**kw) -> dict:
    return {"sources": {"c4": {"kind": "c4", "uri": "sample://c4", **kw}}}


def test_shipped_params_load():
    params = load_params(REPO / "params.yaml")
    assert set(params.sources) == {"c4", "wikipedia", "gutenberg", "fineweb"}
    for name, sp in params.sources.items():
        assert sp.kind == name and sp.uri == f"sample://{name}" and sp.on_bad_record == "fail"
    assert isinstance(params.split, SplitParams)


def test_defaults(tmp_path):
    sp = load(tmp_path, BASE).sources["c4"]
    assert as_dict(sp) == {"kind": "c4", "uri": "sample://c4", "format": "auto", "text_field": "text",
                           "messages_field": "messages",
                           "id_field": None, "url_field": None, "meta_fields": [], "txt_mode": "file", "txt_chunk_bytes": 65536,
                           "max_docs": None, "on_bad_record": "fail", "on_bad_file": "fail",
                           "shard_mb": 256, "sample_docs": 0, "sample_seed": 0}


def test_code_defaults_equal_the_shipped_params_yaml():
    """Deleting a key from params.yaml must not change behaviour: the loader's default for every
    key is the shipped value, except the ones that name sources (no sensible default for them)."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    full = as_dict(load_params(REPO / "params.yaml"))
    with_defaults = as_dict(from_dict(Params, {"sources": shipped["sources"]}, ""))
    source_named = {"dedup": ["priority"], "mix": ["weights"], "quality": ["positives", "negatives"]}
    for section, keys in source_named.items():
        for k in keys:
            full[section].pop(k), with_defaults[section].pop(k)
    assert with_defaults == full


@pytest.mark.parametrize("data, message", [
    (with_source(colour="red"), "sources.c4.colour: unknown key; allowed keys here: format, id_field, kind"),
    ({**BASE, "splt": {}}, "splt: unknown key; allowed keys here:"),
    (with_source(max_docs="ten"), "sources.c4.max_docs: expected an integer, got 'ten'"),
    (with_source(max_docs=True), "sources.c4.max_docs: expected an integer, got True"),
    (with_source(meta_fields="title"), "sources.c4.meta_fields: expected a list, got 'title'"),
    (with_source(text_field=3), "sources.c4.text_field: expected a string, got 3"),
    (with_source(on_bad_record="ignore"), "sources.c4.on_bad_record: must be one of 'fail', 'skip', got 'ignore'"),
    (with_source(on_bad_file="keep"), "sources.c4.on_bad_file: must be one of 'fail', 'skip', got 'keep'"),
    (with_source(format="csv"), "sources.c4.format: must be one of 'auto', 'parquet', 'jsonl', 'txt', got 'csv'"),
    ({"sources": {"c4": {"kind": "news", "uri": "x"}}}, "sources.c4.kind: must be one of 'c4', 'chat', 'fineweb', 'gutenberg', 'text', 'wikipedia', got 'news'"),
    (with_source(max_docs=0), "sources.c4.max_docs: must be > 0, got 0"),
    (with_source(shard_mb=0), "sources.c4.shard_mb: must be > 0, got 0"),
    (with_source(sample_docs=-1), "sources.c4.sample_docs: must be >= 0, got -1"),
    (with_source(sample_seed=-2), "sources.c4.sample_seed: must be >= 0, got -2"),
    (with_source(uri="sample://news"), "sources.c4.uri: sample corpora are sample://c4|wikipedia|gutenberg|fineweb|chat"),
    (with_source(uri=""), "sources.c4.uri: must be a non-empty string"),
    ({"sources": {"c4": {"kind": "c4"}}}, "sources.c4: missing required key(s): uri"),
    ({"sources": {}}, "sources: must name at least one source"),
    ({**BASE, "split": {"val_fraction": 1.5}}, "split.val_fraction: must be in (0, 1), got 1.5"),
    ({**BASE, "split": {"seed": "zero"}}, "split.seed: expected an integer, got 'zero'"),
    ({**BASE, "mix": {"weights": {"c4": -0.1}}}, "mix.weights.c4: must be >= 0, got -0.1"),
    ({**BASE, "tokenizer": {"sample_weights": {"c4": -1}}}, "tokenizer.sample_weights.c4: must be >= 0, got -1"),
    ({**BASE, "mix": {"weights": {"news": 1.0}}}, "mix.weights.news: is not a source; sources are ['c4']"),
    ({"sources": ["c4"]}, "sources: expected a mapping, got ['c4']"),
    ({"sources": {"c4": {"kind": "c4", "uri": "sample://c4"}, "wiki": {"kind": "wikipedia", "uri": "sample://wikipedia"}},
      "mix": {"weights": {"c4": 1.0}}},
     "mix.weights: names c4 but not wiki: give every source a weight (0 leaves a source out), or {} for equal"),
    ({**BASE, "train": {"tokens": 100, "batch_tokens": 4096}},
     "train.tokens: 100 is less than one batch (train.batch_tokens 4096): raise train.tokens"),
    ({"sources": {"ne/ws": {"kind": "c4", "uri": "sample://c4"}}},
     "sources.ne/ws: a source name is letters, digits, '_' and '-'"),
    ({**BASE, "tokenizer": {"vocab_size": 10**23}}, "tokenizer.vocab_size: must be in [300, 1048576]"),
])
def test_errors_name_key_and_allowed_values(tmp_path, data, message):
    with pytest.raises(ParamsError) as e:
        load(tmp_path, data)
    assert message in str(e.value)
    assert str(e.value).startswith(str(tmp_path / "params.yaml") + ": ")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match=r"nothere\.yaml: not found \(run from the repo root, or pass --params\)"):
        load_params(tmp_path / "nothere.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load(tmp_path, "sources: [unclosed\n")


def test_source_params_direct_construction_checks():
    with pytest.raises(ValueError, match="max_docs: must be > 0"):
        SourceParams(kind="c4", uri="x", max_docs=-5)


@pytest.mark.parametrize("text, key, value", [
    ("lr: 6e-4", "lr", 6e-4),          # PyYAML (YAML 1.1) reads these two as strings
    ("eps: 1e-05", "eps", 1e-05),      # what `dvc exp run -S train.eps=0.00001` writes
    ("tokens: 1E6", "tokens", 10**6),  # an integral float is accepted for an integer key
    ("spike_sigma: 1.5e1", "spike_sigma", 15.0),
])
def test_params_parse_as_yaml_1_2_numbers(tmp_path, text, key, value):
    tp = load(tmp_path, "sources: {c4: {kind: c4, uri: 'sample://c4'}}\ntrain:\n  " + text + "\n").train
    assert getattr(tp, key) == value and type(getattr(tp, key)) is type(value)


def test_non_finite_and_fractional_numbers_are_refused(tmp_path):
    head = "sources: {c4: {kind: c4, uri: 'sample://c4'}}\n"
    with pytest.raises(ParamsError, match=r"mix.weights.c4: must be a finite number, got inf"):
        load(tmp_path, head + "mix: {weights: {c4: .inf}}\n")
    with pytest.raises(ParamsError, match=r"train.lr: must be a finite number, got nan"):
        load(tmp_path, head + "train: {lr: .nan}\n")
    with pytest.raises(ParamsError, match=r"train.tokens: expected an integer, got 1000.5"):
        load(tmp_path, head + "train: {tokens: 1000.5}\n")


def test_duplicate_key_is_refused_with_its_line(tmp_path):
    text = "sources: {c4: {kind: c4, uri: 'sample://c4'}}\ntrain:\n  lr: 6e-4\n  warmup: 3\n  lr: 3e-3\n"
    with pytest.raises(ParamsError, match=r"params\.yaml:5: key 'lr' is given twice in one mapping; keep one"):
        load(tmp_path, text)
