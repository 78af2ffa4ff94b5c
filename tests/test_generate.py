"""Generation: sampling rules, seeds, the KV-cache path against the full recompute, the CLI."""
from __future__ import annotations

import io

import pytest
import torch

from _evalkit import constant_logits_model, save_tiny_run, tiny_model, train_tokenizer
from llmpipe.eval.generate import TextStreamer
from llmpipe.train.sampling import generate, sample_next
from llmpipe.train.model import KVCache


def test_sample_next_rules():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, 0.0, 0, None).tolist() == [1, 0]  # greedy
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, 1.0, 1, g).tolist() == [1, 0]  # top-1 is greedy
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 2.0, 2, g) for _ in range(300)])
    assert set(draws[:, 0].tolist()) == {1, 3}  # only the two largest, both reached
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = [sample_next(logits, 1.0, 0, g1).tolist() for _ in range(20)]
    assert a == [sample_next(logits, 1.0, 0, g2).tolist() for _ in range(20)]


@torch.no_grad()
def test_kv_cache_logits_equal_full_forward():
    model = tiny_model(97, seed=3)
    x = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(1))
    full, _ = model(x)  # (2, 40, V)
    cache = KVCache(model.cfg, 2, 40)
    parts = [model(x[:, :17], cache=cache)[0]]  # prefill 17, then one token at a time
    parts += [model(x[:, t:t + 1], cache=cache)[0] for t in range(17, 40)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.pos == 40


@pytest.mark.parametrize("temperature,top_k", [(0.0, 0), (1.0, 0), (0.8, 10)])
def test_cache_and_no_cache_generate_the_same_tokens(temperature, top_k):
    model = tiny_model(97, seed=5)
    prompt = [3, 10, 20, 30, 40]
    kw = dict(temperature=temperature, top_k=top_k, seed=11)
    with_cache = generate(model, prompt, 40, use_cache=True, **kw)
    without = generate(model, prompt, 40, use_cache=False, **kw)
    assert with_cache == without and len(with_cache) == 40


def test_generation_deterministic_for_a_seed():
    model = tiny_model(97, seed=5)
    a = generate(model, [3, 7], 30, temperature=1.0, seed=1)
    assert a == generate(model, [3, 7], 30, temperature=1.0, seed=1)
    assert a != generate(model, [3, 7], 30, temperature=1.0, seed=2)


def test_stops_at_eos_and_crops_long_prompts():
    model = constant_logits_model(50, {3: 20.0})  # EOS (3) is by far the likeliest token
    seen = []
    assert generate(model, [5, 6], 10, stop_id=3, on_token=seen.append) == [3] == seen
    model = constant_logits_model(50, {9: 20.0})
    out = generate(model, list(range(10, 50)) * 3, 30)  # 120-token prompt, context 64
    assert out == [9] * 30
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [1], 64)


def test_text_streamer_prints_what_decode_gives(tmp_path):
    from llmpipe.data.tokenizer import load
    tok = load(train_tokenizer(tmp_path / "tok"))
    prompt = tok.encode("The red fox")
    cont = tok.encode("The red fox sang: Übermäßig 日本!\n  ok")[len(prompt):]
    assert any(tok.sp.is_byte(t) for t in cont)  # multi-byte characters via byte fallback
    out = io.StringIO()
    s = TextStreamer(tok.sp, prompt, stream=out)
    for t in cont:
        s(t)
    assert out.getvalue() == " sang: Übermäßig 日本!\n  ok"
    assert "\ufffd" not in out.getvalue()


def test_cli_generate_streams_a_deterministic_continuation(tmp_path, capsys):
    from llmpipe.cli import main
    spm = train_tokenizer(tmp_path / "tok")
    from llmpipe.data.tokenizer import load
    save_tiny_run(tmp_path / "run", load(spm).vocab_size, seed=1)
    args = ["generate", "--model", str(tmp_path / "run"), "--tokenizer", str(spm), "--prompt", "The red fox",
            "--max-new-tokens", "20", "--temperature", "0.9", "--seed", "4", "--device", "cpu"]
    outs = []
    for _ in range(2):
        assert main(args) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0].startswith("The red fox") and len(outs[0]) > len("The red fox\n")
    assert main(args[:-2] + ["--device", "cpu", "--tokenizer", str(tmp_path / "nope.model")]) == 2
    assert "nope.model: not found" in capsys.readouterr().err
