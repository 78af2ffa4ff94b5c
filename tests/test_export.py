"""HF export round trip: transformers loads the folder offline, logits, greedy text and tokens match;
OUT safety: a folder llmpipe did not export is refused untouched, a re-export replaces only its own files."""
from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest
import torch

from _evalkit import EXTRA, save_tiny_run, sentences, train_tokenizer
from llmpipe.eval.export import export_hf
from llmpipe.train.sampling import generate

transformers = pytest.importorskip("transformers")  # the dev extra


@pytest.fixture(scope="module")
def spm(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture(scope="module")
def vocab(spm):
    from llmpipe.data.tokenizer import load
    return load(spm).vocab_size


@pytest.mark.parametrize("shape", [dict(), dict(tie_embeddings=True, n_kv_heads=4),
                                   dict(n_kv_heads=1, rope_theta=500.0)], ids=["gqa", "tied", "mqa-theta"])
def test_hf_logits_and_greedy_continuation_match(tmp_path, spm, vocab, shape):
    ours = save_tiny_run(tmp_path / "run", vocab, seed=7, **shape)
    out = export_hf(tmp_path / "run", tmp_path / "hf", tokenizer=spm)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert hf.config.tie_word_embeddings == ours.cfg.tie_embeddings
    x = torch.randint(0, vocab, (2, 50), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, _ = ours(x)
        b = hf(x).logits
    torch.testing.assert_close(b.float(), a, atol=1e-4, rtol=0)
    prompt = [3] + list(x[0, :10].tolist())
    mine = generate(ours, prompt, 20)
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=None,
                         pad_token_id=0, attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    assert theirs[0, len(prompt):].tolist() == mine


def test_hf_tokenizer_encodes_and_decodes_like_sentencepiece(tmp_path, spm, vocab):
    from llmpipe.data.tokenizer import load
    tok = load(spm)
    save_tiny_run(tmp_path / "run", vocab)
    out = export_hf(tmp_path / "run", tmp_path / "hf", tokenizer=spm)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    texts = [" ".join(sentences(5)), EXTRA, "a\nb\n\nc", "\n\nleading newlines", "  leading spaces",
             "trailing  ", "tabs\tand 1234567 digits", "Übermäßig 日本語 emoji 🦊", "x</s>y <s> <unk>", ""]
    for t in texts:
        assert hf_tok.encode(t) == tok.sp.encode(t), t
        assert hf_tok.decode(tok.sp.encode(t)) == tok.sp.decode(tok.sp.encode(t)), t
    assert (hf_tok.eos_token_id, hf_tok.bos_token_id, hf_tok.unk_token_id, hf_tok.pad_token_id) == (3, 2, 1, 0)
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["eos_token_id"], cfg["bos_token_id"], cfg["pad_token_id"]) == (3, 2, 0)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "llmpipe-export.json", "model.safetensors",
        "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"]


def test_export_cli_and_clear_errors(tmp_path, spm, vocab, capsys):
    from llmpipe.cli import main
    save_tiny_run(tmp_path / "run", vocab + 1)  # a model that does not fit this tokenizer
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf"), "--tokenizer", str(spm)]) == 2
    assert "vocab size" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    assert main(["export-hf", str(tmp_path / "nope"), str(tmp_path / "hf"), "--tokenizer", str(spm)]) == 2
    assert "config.json: not found" in capsys.readouterr().err
    from llmpipe.core.atomic import sha256_file
    from llmpipe.train.model import save_model
    model = save_tiny_run(tmp_path / "run", vocab)
    save_model(tmp_path / "run", model, model.cfg, extra={"tokenizer_fingerprint": "0" * 64})
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf"), "--tokenizer", str(spm)]) == 2
    assert "not the tokenizer" in capsys.readouterr().err
    save_model(tmp_path / "run", model, model.cfg, extra={"tokenizer_fingerprint": sha256_file(spm)})
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf"), "--tokenizer", str(spm)]) == 0
    assert (tmp_path / "hf" / "model.safetensors").exists()
    # a second export over its own folder is fine, the run or a stray folder not
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf"), "--tokenizer", str(spm)]) == 0
    for target in (tmp_path / "run", tmp_path):
        assert main(["export-hf", str(tmp_path / "run"), str(target), "--tokenizer", str(spm)]) == 2
        assert "run directory" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "notes"), "--tokenizer", str(spm)]) == 2
    assert "not an earlier llmpipe export" in capsys.readouterr().err
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert (tmp_path / "run" / "model.safetensors").exists()


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _export(run, out, spm) -> int:
    from llmpipe.cli import main
    return main(["export-hf", str(run), str(out), "--tokenizer", str(spm)])


def test_export_refuses_a_foreign_llama_folder_and_deletes_nothing(tmp_path, spm, vocab, capsys):
    save_tiny_run(tmp_path / "run", vocab)
    hub = tmp_path / "Llama-3.2-1B"  # what a Hugging Face download looks like
    (hub / "original").mkdir(parents=True)
    (hub / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (hub / "model.safetensors").write_bytes(b"weights that are not ours")
    (hub / "README.md").write_text("licence")
    (hub / "original" / "consolidated.00.pth").write_bytes(b"more")
    before = _files(hub)
    assert _export(tmp_path / "run", hub, spm) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{hub}: exists and is not an earlier llmpipe export" in err
    assert _files(hub) == before and sorted(p.name for p in tmp_path.iterdir()) == ["Llama-3.2-1B", "run"]


def test_reexport_replaces_only_the_files_its_manifest_lists(tmp_path, spm, vocab, capsys):
    save_tiny_run(tmp_path / "run", vocab, seed=1)
    out = tmp_path / "hf"
    assert _export(tmp_path / "run", out, spm) == 0
    manifest = json.loads((out / "llmpipe-export.json").read_text())["files"]
    first = _files(out)
    assert set(manifest) == set(first) - {"llmpipe-export.json"}
    from llmpipe.core.atomic import sha256_file
    assert all(sha256_file(out / k) == v for k, v in manifest.items())
    (out / "NOTES.md").write_text("my notes")  # the user's, next to the export
    (out / "eval").mkdir()
    (out / "eval" / "scores.json").write_text("{}")
    save_tiny_run(tmp_path / "run", vocab, seed=2)  # a different model
    assert _export(tmp_path / "run", out, spm) == 0
    second = _files(out)
    assert second["NOTES.md"] == b"my notes" and second["eval/scores.json"] == b"{}"
    assert second["model.safetensors"] != first["model.safetensors"]
    assert set(second) == set(first) | {"NOTES.md", "eval/scores.json"}  # no staging left behind
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert hf.config.vocab_size == vocab
    # the manifest a re-export killed midway leaves lists old and new hashes: still recognised
    man = json.loads((out / "llmpipe-export.json").read_text())
    man["files"]["model.safetensors"] = ["0" * 64, man["files"]["model.safetensors"]]
    (out / "llmpipe-export.json").write_text(json.dumps(man))
    assert _export(tmp_path / "run", out, spm) == 0 and _files(out) == second
    # an exported file someone changed is theirs now: refused, nothing touched
    (out / "generation_config.json").write_text('{"do_sample": true}')
    before = _files(out)
    assert _export(tmp_path / "run", out, spm) == 2
    assert f"{out / 'generation_config.json'}: changed since llmpipe exported it" in capsys.readouterr().err
    assert _files(out) == before
