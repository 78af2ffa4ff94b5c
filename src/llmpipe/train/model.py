"""Llama-style decoder: RoPE, RMSNorm, SwiGLU, optional GQA and tied embeddings.

Parameter names are exactly Hugging Face `LlamaForCausalLM`'s (`model.layers.{i}.self_attn.q_proj
.weight`, ...), RoPE uses HF's rotate-half layout and RMSNorm is computed in float32 as HF does, so
exporting to HF is a copy of the state dict (`llmpipe.eval.export`). No biases anywhere.

Shapes in comments: B batch, T new tokens, S cached + new tokens, H query heads, Hkv key/value
heads, D head_dim, C d_model, V vocab.

On-disk format (`save_model` / `load_model`): `model.safetensors` (float32 state dict, no
`lm_head.weight` when tied) and `config.json` = {"model": ModelConfig.to_dict(), **extra}.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmpipe.core.atomic import atomic_path
from llmpipe.core.config import as_dict


@dataclass
class ModelConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    """== n_heads -> multi-head attention; a proper divisor -> grouped-query attention."""
    context: int
    """Longest sequence the model is trained on (and the RoPE table length)."""
    ffn_hidden: int
    """SwiGLU hidden width (Llama: about 8/3 d_model, rounded)."""
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        for k in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "context", "ffn_hidden"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise UserError(f"model.{k}: must be a positive integer, got {v!r}")
        if self.d_model % self.n_heads:
            raise UserError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise UserError(f"model.n_kv_heads ({self.n_kv_heads}) must divide model.n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise UserError(f"head_dim = d_model / n_heads must be even for RoPE, got {self.head_dim}")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            raise UserError("model.rope_theta and model.norm_eps must be > 0")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"unknown model config key(s) {unknown}; allowed: {sorted(names)}")
        return cls(**d)


def llama_ffn_hidden(d_model: int, multiple_of: int = 64) -> int:
    """Llama's SwiGLU width: 2/3 of 4*d_model (same FLOPs as a 4x GELU MLP), rounded up."""
    h = int(8 * d_model / 3)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


# Named presets (vocab_size None -> taken from the tokenizer at train time).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=None, d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, context=256,
                 ffn_hidden=llama_ffn_hidden(128)),
    "10m": dict(vocab_size=None, d_model=384, n_layers=6, n_heads=6, n_kv_heads=6, context=512,
                ffn_hidden=llama_ffn_hidden(384)),
    "100m": dict(vocab_size=32000, d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, context=1024,
                 ffn_hidden=2048),
}


def config_from_preset(preset: str, vocab_size: Optional[int] = None, **overrides: Any) -> ModelConfig:
    """A preset with overrides applied; `vocab_size` fills in when neither sets it."""
    if preset not in PRESETS:
        raise UserError(f"model.preset: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    d = {**PRESETS[preset], **overrides}
    if d.get("vocab_size") is None:
        d["vocab_size"] = vocab_size
    if d["vocab_size"] is None:
        raise UserError("model.vocab_size: not set by the preset or params, and no tokenizer given")
    if "n_heads" in overrides and "n_kv_heads" not in overrides:
        d["n_kv_heads"] = d["n_heads"]
    if "d_model" in overrides and "ffn_hidden" not in overrides:
        d["ffn_hidden"] = llama_ffn_hidden(d["d_model"])
    return ModelConfig.from_dict(d)


class KVCache:
    """Keys and values of the tokens seen so far, for incremental decoding.

    k, v: (L, B, Hkv, max_len, D). `pos` counts the tokens already cached; `Transformer.forward`
    writes the new tokens at [pos, pos+T) of every layer and advances `pos` after the last layer.
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device: Any = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if max_len > cfg.context:
            raise ValueError(f"KVCache max_len {max_len} exceeds the model context {cfg.context}")
        shape = (cfg.n_layers, batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, Hkv, T, D) at [pos, pos+T); return all cached (B, Hkv, pos+T, D)."""
        end = self.pos + k.shape[2]
        self.k[layer, :, :, self.pos:end] = k.to(self.k.dtype)
        self.v[layer, :, :, self.pos:end] = v.to(self.v.dtype)
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (as HF Llama) and cast back (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.float32:
            # eager CPU (where it was measured): the Function; compiled (inductor fuses the plain
            # form), on GPUs and under autocast: F.rms_norm, one op, bitwise equal to HF's three
            if x.device.type != "cpu" or torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
                return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
            return _RMSNormFp32.apply(x, self.weight, self.eps)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class _RMSNormFp32(torch.autograd.Function):
    """RMSNorm in float32 with a backward of five passes over x, in place of the ~15 small ops
    autograd records for F.rms_norm (torch has no fused RMSNorm kernel on CPU; LayerNorm has one):
    ~6% of an eager CPU step at nanoGPT's baby shape (issue 16, docs/training.md). Public ops only.
    Forward: r = rsqrt(mean(x^2) + eps), y = (x r) w. Backward, with xh = x r and gw = g w:
    dx = r (gw - xh mean(gw xh)), dw = sum over rows of g xh."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        r = torch.rsqrt(torch.linalg.vecdot(x, x).unsqueeze(-1).div_(x.shape[-1]).add_(eps))
        xh = x * r
        ctx.save_for_backward(xh, r, w)
        return xh * w

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        xh, r, w = ctx.saved_tensors
        gw = g * w
        dot = torch.linalg.vecdot(gw, xh).unsqueeze(-1)
        dx = torch.addcmul(gw, xh, dot, value=-1.0 / xh.shape[-1]).mul_(r)
        dw = (g * xh).sum(dim=tuple(range(g.dim() - 1))) if ctx.needs_input_grad[1] else None
        return dx, dw, None


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (length, head_dim) in HF's layout: frequencies repeated for both halves (Su et al. 2021)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)  # (length, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().float(), emb.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D); cos/sin (T, D)."""
    return rope_rotate(x, cos, signed_sin(sin))


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """sin (T, D) with its first half negated. HF's rotate_half(x) is cat(-x2, x1) for the halves
    x1, x2 of x; rotate_half(x) * sin == x.roll(D/2) * signed_sin(sin) exactly (a sign flip is
    exact), with one roll instead of chunk + neg + cat."""
    half = sin.shape[-1] // 2
    return torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D) rotated by RoPE, HF's rotate-half layout; cos, sin_signed (T, D)."""
    cos, sin_signed = cos.to(x.dtype), sin_signed.to(x.dtype)
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)  # a*b + c*d in 3 ops


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.d_model, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * hd, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor, layer: int,
                cache: Optional[KVCache], attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim
        # one matmul for q, k and v (the weights stay HF's three parameters), RoPE on q and k at once:
        # at small widths the per-op cost, not the FLOPs, is what a CPU step spends its time on
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        qkv = F.linear(x, w).view(B, T, H + 2 * Hkv, D)          # (B, T, H + 2 Hkv, D)
        # split, not slicing: a split's backward is one cat, each slice's a zero-filled copy + add
        qk, v = qkv.split([H + Hkv, Hkv], dim=2)
        qk = rope_rotate(qk.transpose(1, 2), cos, sin_signed)     # (B, H + Hkv, T, D)
        q, k = qk.split([H, Hkv], dim=1)                          # (B, H, T, D), (B, Hkv, T, D)
        v = v.transpose(1, 2)                                     # (B, Hkv, T, D)
        mask, causal = None, T > 1
        if attn_mask is not None:  # (B, 1, T, T) bool: causal and within one document
            mask, causal = attn_mask, False
        if cache is not None:
            start = cache.pos
            k, v = cache.update(layer, k, v)                      # (B, Hkv, S, D), S = start + T
            k, v = k.to(q.dtype), v.to(q.dtype)
            causal = False
            if T > 1:  # query i (absolute start+i) sees keys j <= start+i
                S = k.shape[2]
                qpos = torch.arange(start, start + T, device=x.device)[:, None]
                mask = torch.arange(S, device=x.device)[None, :] <= qpos  # (T, S) bool
        if Hkv != H:  # GQA: each kv head serves H/Hkv consecutive query heads (HF repeat_kv order)
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)) (Shazeer 2020)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # two matmuls, not one over the concatenated weights: the concatenation (forward) and the
        # chunk's backward (a cat of both halves' gradients) cost more than a second matmul call
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, layer, cache, attn_mask=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, layer, cache, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """The `model.` prefix of HF names: embeddings, blocks, final norm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)


def doc_segments(idx: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, T) document number of each token of packed windows `idx`: it grows by one after each
    EOS (an EOS belongs to the document it closes)."""
    is_eos = (idx == eos_id).to(torch.int32)
    return torch.cumsum(is_eos, dim=1) - is_eos


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Decoder(cfg)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, cfg.context, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (context, D), float32
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("rope_sin_signed", signed_sin(sin), persistent=False)  # what forward uses
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 0.02) everywhere; residual output projections scaled by 1/sqrt(2 L) (GPT-2)."""
        resid_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                p.normal_(0.0, resid_std)
            else:
                p.normal_(0.0, 0.02)

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None,
                cache: Optional[KVCache] = None, return_logits: bool = True,
                segments: Optional[torch.Tensor] = None,
                reduction: str = "mean") -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """idx (B, T) long -> logits (B, T, V) float32, and the mean (`reduction="sum"`: summed)
        cross-entropy if targets given (targets == -1 are ignored). With a cache, idx sits at
        positions cache.pos.. and is appended. `segments` (B, T): a document number per token
        (`doc_segments`); attention then stays inside each document (train.doc_mask).

        return_logits=False (training) returns (None, loss): the float32 (B, T, V) copy is never
        materialised, which saves ~8% of a 100m step on an H100 (memory traffic)."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.cfg.context:
            raise ValueError(f"sequence of {start + T} tokens exceeds the model context {self.cfg.context}")
        if cache is not None and start + T > cache.max_len:
            raise ValueError(f"KV cache full: {start} + {T} > max_len {cache.max_len}")
        cos, sin = self.rope_cos[start:start + T], self.rope_sin_signed[start:start + T]
        x = self.model.embed_tokens(idx)  # (B, T, C)
        attn_mask = None
        if segments is not None and cache is None:
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            attn_mask = ((segments[:, :, None] == segments[:, None, :]) & causal)[:, None]  # (B, 1, T, T)
        for i, block in enumerate(self.model.layers):
            x = block(x, cos, sin, i, cache, attn_mask)
        x = self.model.norm(x)
        w = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, w)  # (B, T, V), autocast dtype
        if cache is not None:
            cache.pos += T
        loss = None
        if targets is not None:  # in float32 (autocast runs cross_entropy in fp32)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=-1, reduction=reduction)
        return (logits.float() if return_logits else None), loss

    def num_params(self, non_embedding: bool = False) -> int:
        """Unique parameters; non_embedding drops the token embedding and an untied lm_head (Kaplan et al. 2020)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.model.embed_tokens.weight.numel()
            if self.lm_head is not None:
                total -= self.lm_head.weight.numel()
        return total

    def flops_per_token(self) -> int:
        return flops_per_token(self.cfg)


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts from the config alone (matches Transformer.num_params)."""
    C, L, hd = cfg.d_model, cfg.n_layers, cfg.head_dim
    attn = C * cfg.n_heads * hd * 2 + C * cfg.n_kv_heads * hd * 2
    mlp = 3 * C * cfg.ffn_hidden
    non_emb = L * (attn + mlp + 2 * C) + C
    emb = cfg.vocab_size * C * (1 if cfg.tie_embeddings else 2)
    return {"total": non_emb + emb, "non_embedding": non_emb}


def flops_per_token(cfg: ModelConfig, context: Optional[int] = None) -> int:
    """Training FLOPs per token (forward + backward) at sequence length `context`.

    6 N for the matmuls, with N = non-embedding params + the lm_head matmul (V*C; the embedding
    lookup costs nothing), plus 12 L C T for attention scores and weighted values, counting the
    full T x T product as PaLM does (Chowdhery et al. 2022, appendix B), not half for causality.
    """
    T = context or cfg.context
    n = param_counts(cfg)["non_embedding"] + cfg.vocab_size * cfg.d_model
    return 6 * n + 12 * cfg.n_layers * cfg.d_model * T


def save_model(run_dir: str | Path, model: Transformer, cfg: ModelConfig,
               extra: Optional[dict[str, Any]] = None) -> None:
    """Write run_dir/model.safetensors (float32, contiguous) and config.json, each atomically."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(run_dir / "config.json") as tmp:
        tmp.write_text(json.dumps({"model": cfg.to_dict(), **(extra or {})}, indent=2, sort_keys=True) + "\n")


def load_model(run_dir: str | Path, device: Any = "cpu") -> tuple[Transformer, ModelConfig]:
    """Inverse of `save_model`; the model comes back in eval mode on `device`."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    for name in ("config.json", "model.safetensors"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name}: not found (did `dvc repro train` run?)")
    cfg = ModelConfig.from_dict(json.loads((run_dir / "config.json").read_text())["model"])
    model = Transformer(cfg)
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")), strict=True)
    return model.to(device).eval(), cfg


def model_config(mp, vocab_size: int) -> ModelConfig:
    """`model.*` over its preset; vocab from the tokenizer unless the preset or params fix one."""
    over = {k: v for k, v in as_dict(mp).items() if k not in ("preset", "vocab_size")}
    cfg = config_from_preset(mp.preset, vocab_size=vocab_size,
                             **({"vocab_size": mp.vocab_size} if mp.vocab_size else {}), **over)
    if cfg.vocab_size < vocab_size:
        raise UserError(f"model.vocab_size {cfg.vocab_size} (preset {mp.preset!r}) is smaller than the "
                         f"tokenizer's {vocab_size}; set model.vocab_size: null or >= {vocab_size}")
    return cfg


def check_tokenizer(run_dir: str | Path, spm_path: str | Path) -> None:
    """Refuse a tokenizer other than the one the run was trained with (train records its
    sha256 as `tokenizer_fingerprint` in config.json; runs without it are not checked)."""
    from llmpipe.core.atomic import sha256_file

    cfg = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    want = cfg.get("tokenizer_fingerprint")
    if want and want != sha256_file(spm_path):
        raise UserError(f"{spm_path}: not the tokenizer {Path(run_dir) / 'config.json'} was trained with "
                         f"(fingerprint {want[:12]}); pass the run's tokenizer or rerun `dvc repro train`")
