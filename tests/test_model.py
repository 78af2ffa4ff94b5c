"""Model: shapes, causality, RoPE formula, KV cache, parameter/FLOP counts, save/load, HF parity."""
from __future__ import annotations

import json
import math

import pytest
import torch

from llmpipe.train.model import (KVCache, ModelConfig, PRESETS, Transformer, apply_rope, config_from_preset,
                           flops_per_token, load_model, param_counts, save_model)


def small(**kw) -> ModelConfig:
    d = dict(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, context=16, ffn_hidden=64)
    d.update(kw)
    return ModelConfig(**d)


@pytest.mark.parametrize("kv,tied", [(4, False), (2, True), (1, False)])
def test_shapes_and_loss(kv, tied):
    torch.manual_seed(0)
    m = Transformer(small(n_kv_heads=kv, tie_embeddings=tied))
    idx = torch.randint(0, 97, (3, 16))
    logits, loss = m(idx, targets=torch.randint(0, 97, (3, 16)))
    assert logits.shape == (3, 16, 97) and logits.dtype == torch.float32
    # fresh init predicts near-uniformly: loss ~ ln(V)
    assert abs(loss.item() - math.log(97)) < 0.3
    assert m(idx)[1] is None


def test_causal_later_token_never_changes_earlier_logits():
    torch.manual_seed(0)
    m = Transformer(small(n_kv_heads=2)).eval()
    a = torch.randint(0, 97, (2, 16))
    b = a.clone()
    b[:, 10:] = torch.randint(0, 97, (2, 6))
    with torch.no_grad():
        la, lb = m(a)[0], m(b)[0]
    assert torch.equal(la[:, :10], lb[:, :10])
    assert not torch.allclose(la[:, 10:], lb[:, 10:])


def test_rope_matches_direct_complex_rotation():
    """HF rotate-half layout == rotating pairs (x_i, x_{i+D/2}) by angle pos * theta^(-2i/D)."""
    D, T, theta = 8, 5, 10000.0
    m = Transformer(small(d_model=16, n_heads=2, n_kv_heads=2))  # head_dim 8
    x = torch.randn(1, 1, T, D)
    got = apply_rope(x, m.rope_cos[:T], m.rope_sin[:T])
    want = torch.empty_like(x)
    for p in range(T):
        for i in range(D // 2):
            ang = p * theta ** (-2 * i / D)
            a, b = x[0, 0, p, i].item(), x[0, 0, p, i + D // 2].item()
            want[0, 0, p, i] = a * math.cos(ang) - b * math.sin(ang)
            want[0, 0, p, i + D // 2] = b * math.cos(ang) + a * math.sin(ang)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kv", [4, 2])
def test_kv_cache_matches_full_forward(kv):
    torch.manual_seed(0)
    cfg = small(n_kv_heads=kv)
    m = Transformer(cfg).eval()
    idx = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        full = m(idx)[0]
        cache = KVCache(cfg, batch=2, max_len=16)
        parts = [m(idx[:, :5], cache=cache)[0]]           # prefill chunk (explicit mask)
        parts.append(m(idx[:, 5:9], cache=cache)[0])      # second chunk
        for t in range(9, 12):                             # one token at a time
            parts.append(m(idx[:, t:t + 1], cache=cache)[0])
    assert cache.pos == 12
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_context_overflow_is_an_error():
    m = Transformer(small())
    with pytest.raises(ValueError, match="exceeds the model context"):
        m(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("tied", [False, True])
def test_param_counts_computed_match_module(tied):
    cfg = small(n_kv_heads=2, tie_embeddings=tied)
    m = Transformer(cfg)
    pc = param_counts(cfg)
    assert m.num_params() == pc["total"]
    assert m.num_params(non_embedding=True) == pc["non_embedding"]
    assert m.flops_per_token() == 6 * (pc["non_embedding"] + 97 * 32) + 12 * 2 * 32 * 16


def test_presets_and_overrides():
    cfg = config_from_preset("100m")
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.context, cfg.vocab_size) == (768, 12, 12, 1024, 32000)
    assert param_counts(cfg)["non_embedding"] == 12 * (4 * 768 * 768 + 3 * 768 * 2048 + 2 * 768) + 768
    tiny = config_from_preset("tiny", vocab_size=500, n_heads=8)
    assert tiny.vocab_size == 500 and tiny.n_kv_heads == 8 and tiny.d_model == 128
    with pytest.raises(ValueError, match="unknown preset"):
        config_from_preset("huge", vocab_size=10)
    with pytest.raises(ValueError, match="vocab_size"):
        config_from_preset("tiny")
    with pytest.raises(ValueError, match="must divide"):
        small(n_kv_heads=3)
    assert set(PRESETS) >= {"tiny", "100m"}


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    cfg = small(tie_embeddings=True)
    m = Transformer(cfg)
    save_model(tmp_path, m, cfg, extra={"tokens_seen": 123})
    assert json.loads((tmp_path / "config.json").read_text())["tokens_seen"] == 123
    m2, cfg2 = load_model(tmp_path)
    assert cfg2 == cfg
    idx = torch.randint(0, 97, (1, 8))
    assert torch.equal(m.eval()(idx)[0], m2(idx)[0])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_matches_hf_llama_logits():
    """Same weights in HF LlamaForCausalLM give the same logits: the export is a plain copy."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = small(n_kv_heads=2)
    m = Transformer(cfg).eval()
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.context,
        rope_theta=cfg.rope_theta, rms_norm_eps=cfg.norm_eps, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(m.state_dict(), strict=False)
    assert not unexpected and all("rotary" in k for k in missing)
    idx = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, m(idx)[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(3, 5, 64), (7, 48)])
def test_rmsnorm_fp32_function_matches_the_plain_formula_and_its_autograd(shape):
    """The float32 RMSNorm's hand-written backward (five passes, in place of autograd's ~15 ops)
    gives the gradients autograd gives for x * rsqrt(mean(x^2) + eps) * w, computed in float64."""
    from llmpipe.train.model import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(shape[-1], 1e-5)
    with torch.no_grad():
        norm.weight.normal_()
    x = (torch.randn(shape) * 3).requires_grad_()
    g = torch.randn(shape)
    y = norm(x)
    y.backward(g)
    x64 = x.detach().double().requires_grad_()
    w64 = norm.weight.detach().double().requires_grad_()
    y64 = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5) * w64
    y64.backward(g.double())
    torch.testing.assert_close(y.double(), y64, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.weight.grad.double(), w64.grad, atol=1e-4, rtol=1e-5)
    # a frozen weight gets no gradient; x's is unchanged
    norm.weight.grad = None
    norm.weight.requires_grad_(False)
    x2 = x.detach().clone().requires_grad_()
    norm(x2).backward(g)
    assert norm.weight.grad is None and torch.equal(x2.grad, x.grad)
