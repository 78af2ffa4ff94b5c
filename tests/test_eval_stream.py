"""Held-out text scored as one stream (`llmpipe.eval.stream`, `eval.texts`, `llmpipe eval --text`)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from _evalkit import (EXTRA, constant_logits_model, save_tiny_run, sentences, tiny_model, train_tokenizer)
from llmpipe.cli import main as cli
from llmpipe.core.errors import UserError
from llmpipe.data.tokenizer import load as load_tokenizer
from llmpipe.eval.stream import encode_stream, read_text, score_text, stream_nll, windows


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    spm = train_tokenizer(tmp / "tok")
    tok = load_tokenizer(spm)
    text = "\n\n".join(" ".join(sentences(5, 50 + 5 * k)) for k in range(12)) + "\n" + EXTRA + "\n"
    (tmp / "held.txt").write_text(text, encoding="utf-8")
    return tmp, spm, tok, tmp / "held.txt"


def test_windows_count_every_target_once_with_at_least_context_minus_stride_before():
    for n, ctx, stride in [(10, 4, 2), (64, 64, 16), (150, 64, 16), (150, 64, 64), (3, 64, 16), (65, 64, 1)]:
        w = windows(n, ctx, stride)
        scored = [t for b, e, s in w for t in range(e - s, e)]  # target index = input position
        assert scored == list(range(n))
        assert all(e - b <= ctx for b, e, _ in w)
        assert all(e - s - b >= ctx - stride for b, e, s in w[1:])  # context before each scored target


@torch.no_grad()
def _direct(model, ids, start_id):
    """NLL of every token from all tokens before it (a context as long as the stream)."""
    seq = torch.tensor([start_id, *ids])[None]
    lp = torch.log_softmax(model(seq[:, :-1])[0][0].double(), -1)
    return -float(lp[torch.arange(len(ids)), seq[0, 1:]].sum())


def test_stream_nll_equals_full_context_when_the_stream_fits_and_the_uniform_model_costs_log_v():
    g = torch.Generator().manual_seed(0)
    model = tiny_model(50, seed=1, context=64)
    ids = torch.randint(4, 50, (60,), generator=g).numpy()
    for stride, bs in ((16, 1), (64, 3), (1, 16)):
        nll, _ = stream_nll(model, ids, 3, stride=stride, batch_size=bs)
        assert nll == pytest.approx(_direct(model, ids.tolist(), 3), rel=1e-5)
    long = torch.randint(4, 50, (300,), generator=g).numpy()
    uniform = constant_logits_model(50, {})
    nll, n_windows = stream_nll(uniform, long, 3, stride=16, batch_size=4)
    assert nll == pytest.approx(300 * math.log(50), rel=1e-5) and n_windows == 1 + math.ceil((300 - 64) / 16)
    # a shorter stride gives each token more context: a trained-like model's NLL changes, the count not
    a, _ = stream_nll(model, long, 3, stride=64, batch_size=4)
    b, _ = stream_nll(model, long, 3, stride=8, batch_size=4)
    assert a != pytest.approx(b, rel=1e-9)


def test_score_text_is_bits_per_byte_of_the_whole_text(kit):
    tmp, spm, tok, held = kit
    model = tiny_model(tok.vocab_size, seed=2)
    m = score_text(model, tok, held, stride=16, batch_size=8)
    text = held.read_text(encoding="utf-8")
    ids = encode_stream(tok, text)
    assert tok.decode(ids.tolist()) == text and m["tokens"] == len(ids) and m["bytes"] == len(text.encode())
    nll, _ = stream_nll(model, ids, tok.eos_id, stride=16, batch_size=8)
    assert m["bits_per_byte"] == pytest.approx(nll / math.log(2) / m["bytes"], rel=1e-9)
    assert (m["context"], m["stride"]) == (64, 16)
    assert score_text(model, tok, held, stride=0, batch_size=8)["stride"] == 16  # 0 -> context / 4


def test_encode_stream_in_pieces_equals_a_whole_encode(kit, monkeypatch):
    _, _, tok, held = kit
    text = held.read_text(encoding="utf-8") * 3
    whole = encode_stream(tok, text)
    import llmpipe.eval.stream as stream
    monkeypatch.setattr(stream, "ENCODE_CHARS", 100)
    assert encode_stream(tok, text).tolist() == whole.tolist() == tok.encode(text)


@pytest.mark.parametrize("content, message", [
    (None, r"no such file"),
    (b"ok\n\xff\xfe\n", r":2: invalid UTF-8 at byte 3; convert the file to UTF-8"),
    (b" \n\n", r"no text to score"),
])
def test_bad_text_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_text(path)


def test_read_text_drops_the_bom_and_crlf_like_the_txt_reader(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbfa\r\nb\n")
    assert read_text(tmp_path / "t.txt") == "a\nb\n"


def test_cli_eval_prints_the_stream_score_beside_the_per_source_figures(kit, tmp_path, capsys):
    _, spm, tok, held = kit
    save_tiny_run(tmp_path / "run", tok.vocab_size, seed=3)
    metrics = tmp_path / "eval.json"
    metrics.write_text(json.dumps({"bits_per_byte": 1.5, "per_source": {"c4": {"bits_per_byte": 1.5, "docs": 7}}}))
    args = ["eval", "--text", str(held), "--model", str(tmp_path / "run"), "--tokenizer", str(spm),
            "--stride", "32", "--device", "cpu", "--metrics", str(metrics)]
    assert cli(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{held}: ") and "bits/byte as a stream" in out[0] and "stride 32" in out[0]
    assert out[1] == f"  val c4 ({metrics}): 1.5000 bits/byte (7 documents, each from its start)"
    assert cli(args + ["--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["texts"][str(held)]["stride"] == 32 and got["per_source"]["c4"]["docs"] == 7
    assert cli(["eval", "--text", str(tmp_path / "nope.txt"), "--model", str(tmp_path / "run"),
                "--tokenizer", str(spm), "--device", "cpu"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli(args[:-2] + ["--stride", "65"]) == 2
    assert "eval.stride: 65 must be in [1, 64]" in capsys.readouterr().err


def test_eval_stage_reports_texts_beside_the_per_source_figures(kit, tmp_path):
    from _evalkit import load_stage, token_dirs
    from test_evaluate import _write_params
    tmp, spm, tok, held = kit
    dirs = token_dirs(tmp_path, spm, {"alpha": 6})
    save_tiny_run(tmp_path / "run", tok.vocab_size, seed=4)
    params = tmp_path / "params.yaml"
    _write_params(params, dirs, texts=[str(held)], stride=32, builtin_mc={"n": 0}, prompts=[])
    args = ["--params", str(params), "--model", str(tmp_path / "run"), "--tokenizer", str(spm),
            "--tokens", str(tmp_path / "tokens"), "--metrics", str(tmp_path / "eval.json"),
            "--samples", str(tmp_path / "s.md"), "--plot", str(tmp_path / "ps.json")]
    assert load_stage("eval").main(args) == 0
    m = json.loads((tmp_path / "eval.json").read_text())
    assert set(m["per_source"]) == {"alpha"} and set(m["texts"]) == {str(held)}
    t = m["texts"][str(held)]
    assert t["stride"] == 32 and t["bytes"] == len(held.read_bytes()) and 0 < t["bits_per_byte"] < 20
    assert len(t["sha256"]) == 64
