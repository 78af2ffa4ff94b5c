"""Hand-built inputs shared by test_evaluate / test_generate / test_export (not a test module).

A tiny SentencePiece model trained with llmpipe's own `tokenizer.train` on a few KB of
hand-written sentences, token directories written by llmpipe's own `tokenize_source`, and tiny
randomly initialised models. Everything lives under the test's tmp_path.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from llmpipe.train.model import ModelConfig, Transformer, save_model

SUBJECTS = ["The old miller", "A quiet river", "Our small garden", "The red fox", "Every winter night",
            "The young doctor", "A narrow bridge", "The village school"]
VERBS = ["watched the sky", "carried bread to market", "sang beside the door", "waited for the rain",
         "opened the heavy gate", "counted the silver coins", "followed the long road home"]
ENDINGS = ["before dawn.", "without a word.", "in the cold wind.", "while the bells rang.",
           "as the lamps were lit.", "until the end of summer."]
EXTRA = "Café naïve – 123 456. Übermäßig schön!\n  Two  spaces, a tab\there.\n\nNew paragraph."


def sentences(n: int, offset: int = 0) -> list[str]:
    """n distinct deterministic sentences from the grammar above."""
    combos = list(itertools.product(SUBJECTS, VERBS, ENDINGS))
    return [" ".join(combos[(offset + 37 * i) % len(combos)]) for i in range(n)]


def documents(source: str, n_docs: int, sents_per_doc: int = 6, offset: int = 0) -> list[dict]:
    docs = []
    for d in range(n_docs):
        body = " ".join(sentences(sents_per_doc, offset + d * sents_per_doc))
        if d % 3 == 0:
            body += "\n" + EXTRA
        docs.append({"id": f"{source}-{d:03d}", "source": source, "text": body, "url": None, "meta": None})
    return docs


def train_tokenizer(out_dir: Path, vocab_size: int = 400) -> Path:
    """A real llmpipe tokenizer (byte fallback, identity normalisation, "\\n" piece)."""
    from llmpipe.data.tokenizer import train
    texts = [" ".join(sentences(40, k * 40)) + "\n" + EXTRA for k in range(6)]
    train(texts, out_dir, vocab_size=vocab_size, character_coverage=1.0)
    return Path(out_dir) / "spm.model"


def token_dirs(tmp: Path, spm_path: Path, sources: dict[str, int], shards: int = 2) -> dict[str, Path]:
    """One sharded token directory per source ({name: docs}, cut into `shards` clean shards),
    about half the documents in val."""
    from _tokkit import split_evenly, tokenize, write_source_shards
    out = {}
    for k, (src, n_docs) in enumerate(sorted(sources.items())):
        write_source_shards(tmp, src, split_evenly(documents(src, n_docs, offset=100 * k), shards))
        out[src] = tmp / "tokens" / src
        tokenize(tmp, src, spm_path, out[src], val_fraction=0.5, seed=0, jobs=1)
    return out


def tiny_config(vocab_size: int, **kw) -> ModelConfig:
    base = dict(vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, context=64,
                ffn_hidden=64)
    return ModelConfig(**{**base, **kw})


def tiny_model(vocab_size: int, seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_config(vocab_size, **kw)).eval()


def save_tiny_run(run_dir: Path, vocab_size: int, seed: int = 0, **kw) -> Transformer:
    model = tiny_model(vocab_size, seed, **kw)
    save_model(run_dir, model, model.cfg)
    return model


@torch.no_grad()
def constant_logits_model(vocab_size: int, logits: dict[int, float]) -> Transformer:
    """A real Transformer whose next-token logits are `logits` (others 0) at every position.

    Attention and MLP outputs are zeroed (o_proj, down_proj = 0), so the residual stream is the
    embedding; every embedding is all ones, the final RMSNorm maps it to ones, and lm_head row t
    is logits[t] / d_model, so logit_t = logits[t] (up to RMSNorm's eps, ~1e-6 relative).
    """
    model = tiny_model(vocab_size)
    C = model.cfg.d_model
    for name, p in model.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            p.zero_()
    model.model.embed_tokens.weight.fill_(1.0)
    model.lm_head.weight.zero_()
    for t, v in logits.items():
        model.lm_head.weight[t].fill_(v / C)
    return model


def load_stage(name: str):
    """Import `stages.<name>` so a test can call its main(argv)."""
    import importlib
    return importlib.import_module(f"stages.{name}")
