"""Export a trained run to a Hugging Face folder: `llmpipe export-hf runs/train OUT/`.

OUT/ loads with `transformers.AutoModelForCausalLM.from_pretrained(OUT)` and
`AutoTokenizer.from_pretrained(OUT)`, with no llmpipe code and no network:

- `config.json`: a `LlamaConfig` (`model_type: llama`). Our parameter names, RoPE layout
  (rotate-half) and float32 RMSNorm already are HF Llama's (see `llmpipe.model`), so the
  weights are copied unchanged into `model.safetensors`.
- `tokenizer.json`: the SentencePiece model rewritten as a `tokenizers` pipeline
  (`llmpipe.hf_tokenizer`), loaded verbatim by `PreTrainedTokenizerFast`, so loading needs
  neither `sentencepiece` nor `protobuf`. `tokenizer.model` (the original) travels along.
- `tokenizer_config.json`, `special_tokens_map.json`, `generation_config.json`.

Documents in our token files are separated by EOS (there is no BOS), so the tokenizer adds no
special token on encode and the generation config starts a sequence with EOS.
"""
from __future__ import annotations

from llmpipe.errors import UserError

import json
import shutil
from pathlib import Path
from typing import Any

from llmpipe.atomic import atomic_path
from llmpipe.log import get_logger

log = get_logger("export")


def llama_config(cfg: dict[str, Any], special: dict[str, int | None]) -> dict[str, Any]:
    """HF `LlamaConfig` fields for a llmpipe `ModelConfig.to_dict()`.

    `rope_theta` is written both flat (transformers 4.x) and in `rope_parameters` (5.x).
    """
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["d_model"],
        "intermediate_size": cfg["ffn_hidden"],
        "num_hidden_layers": cfg["n_layers"],
        "num_attention_heads": cfg["n_heads"],
        "num_key_value_heads": cfg["n_kv_heads"],
        "head_dim": cfg["d_model"] // cfg["n_heads"],
        "max_position_embeddings": cfg["context"],
        "rms_norm_eps": cfg["norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg["rope_theta"]},
        "tie_word_embeddings": bool(cfg["tie_embeddings"]),
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": special["bos"],
        "eos_token_id": special["eos"],
        "pad_token_id": special["pad"],
        "torch_dtype": "float32",
    }


def _expected_names(cfg: dict[str, Any]) -> set[str]:
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not cfg["tie_embeddings"]:
        names.add("lm_head.weight")
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        names |= {p + s for s in ("input_layernorm.weight", "post_attention_layernorm.weight")}
        names |= {f"{p}self_attn.{x}_proj.weight" for x in "qkvo"}
        names |= {f"{p}mlp.{x}_proj.weight" for x in ("gate", "up", "down")}
    return names


def _check_out_dir(run_dir: Path, out_dir: Path) -> None:
    """The export replaces OUT whole, so OUT must be new, empty or an earlier export: never the
    run itself, a folder holding it, or some other folder a typo pointed at."""
    out, run = out_dir.resolve(), run_dir.resolve()
    if out == run or out in run.parents:
        raise UserError(f"{out_dir}: is (or holds) the run directory {run_dir}; export to a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        cfg = out / "config.json"
        is_export = cfg.is_file() and '"LlamaForCausalLM"' in cfg.read_text(encoding="utf-8", errors="replace")
        if not is_export:
            raise UserError(f"{out_dir}: exists and is not an earlier llmpipe export; choose a new or "
                             "empty folder (the export replaces OUT whole)")


def export_hf(run_dir: str | Path, out_dir: str | Path, tokenizer: str | Path) -> Path:
    """Write the HF folder `out_dir` (atomically: a temp dir renamed at the end)."""
    from safetensors.torch import load_file, save_file

    from llmpipe.generate import check_tokenizer
    from llmpipe.hf_tokenizer import spm_special_ids, write_hf_tokenizer

    run_dir, out_dir, tokenizer = Path(run_dir), Path(out_dir), Path(tokenizer)
    _check_out_dir(run_dir, out_dir)
    for p in (run_dir / "config.json", run_dir / "model.safetensors", tokenizer):
        if not p.exists():
            raise FileNotFoundError(f"{p}: not found (did `dvc repro train` run? is --tokenizer right?)")
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["model"]
    state = load_file(str(run_dir / "model.safetensors"))
    names, expected = set(state), _expected_names(cfg)
    if names != expected:
        raise UserError(f"{run_dir / 'model.safetensors'}: tensor names differ from HF Llama's: "
                         f"missing {sorted(expected - names)[:5]}, unexpected {sorted(names - expected)[:5]}")
    check_tokenizer(run_dir, tokenizer)
    special = spm_special_ids(tokenizer)
    if special["vocab_size"] != cfg["vocab_size"]:
        raise UserError(f"{tokenizer}: vocab size {special['vocab_size']} != model vocab_size "
                         f"{cfg['vocab_size']} in {run_dir / 'config.json'} (wrong tokenizer?)")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        _write_json(tmp / "config.json", llama_config(cfg, special))
        _write_json(tmp / "generation_config.json", {
            "bos_token_id": special["eos"], "decoder_start_token_id": special["eos"],
            "eos_token_id": special["eos"], "pad_token_id": special["pad"]})
        save_file({k: v.contiguous() for k, v in sorted(state.items())}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        shutil.copyfile(tokenizer, tmp / "tokenizer.model")
        write_hf_tokenizer(tokenizer, tmp, model_max_length=cfg["context"])
    log.info("exported %s -> %s (%d tensors, vocab %d)", run_dir, out_dir, len(state), cfg["vocab_size"])
    return out_dir


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
