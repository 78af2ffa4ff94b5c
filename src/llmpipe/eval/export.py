"""Export a trained run to a Hugging Face folder: `llmpipe export-hf runs/train OUT/`.

OUT/ loads with `transformers.AutoModelForCausalLM.from_pretrained(OUT)` and
`AutoTokenizer.from_pretrained(OUT)`, with no llmpipe code and no network:

- `config.json`: a `LlamaConfig` (`model_type: llama`). Our parameter names, RoPE layout
  (rotate-half) and float32 RMSNorm already are HF Llama's (see `llmpipe.train.model`), so the
  weights are copied unchanged into `model.safetensors`.
- `tokenizer.json`: the SentencePiece model rewritten as a `tokenizers` pipeline
  (`llmpipe.eval.hf_tokenizer`), loaded verbatim by `PreTrainedTokenizerFast`, so loading needs
  neither `sentencepiece` nor `protobuf`. `tokenizer.model` (the original) travels along.
- `tokenizer_config.json`, `special_tokens_map.json`, `generation_config.json`.

- `llmpipe-export.json`: the manifest, the sha256 of every file above.

Documents in our token files are separated by EOS (there is no BOS), so the tokenizer adds no
special token on encode and the generation config starts a sequence with EOS.

OUT must be new, empty, or an earlier llmpipe export (it holds the manifest). Re-exporting
replaces the files the manifest lists and nothing else: files someone added there stay, and a
listed file that changed since the export (its sha256 differs) is refused, not overwritten. Any
other non-empty folder (a Hugging Face download, an export by an llmpipe without manifests) is
refused with nothing deleted.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from llmpipe.core.atomic import atomic_path, sha256_file
from llmpipe.core.log import get_logger

log = get_logger("export")
MANIFEST = "llmpipe-export.json"


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


def _check_out_dir(run_dir: Path, out_dir: Path) -> Optional[dict[str, list[str]]]:
    """None when OUT is new or empty; else {file: [sha256, ...]} of the earlier llmpipe export
    there. UserError for the run itself (or a folder holding it), a folder without llmpipe's
    manifest, or an exported file changed since: nothing llmpipe did not write is ever removed."""
    out, run = out_dir.resolve(), run_dir.resolve()
    if out == run or out in run.parents:
        raise UserError(f"{out_dir}: is (or holds) the run directory {run_dir}; export to a new folder")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    man = out / MANIFEST
    if not out.is_dir() or not man.is_file():
        raise UserError(f"{out_dir}: exists and is not an earlier llmpipe export (no {MANIFEST}); nothing "
                        "was changed: choose a new or empty folder")
    try:  # values are one sha256, or several while a re-export was under way (see _install)
        files = {k: [v] if isinstance(v, str) else list(v)
                 for k, v in json.loads(man.read_text(encoding="utf-8"))["files"].items()}
        ok = all(Path(k).name == k and k not in ("..", MANIFEST) for k in files)
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise UserError(f"{man}: not a valid llmpipe export manifest; nothing was changed: move the "
                        "folder away or export to a new one")
    for name, shas in sorted(files.items()):
        f = out / name
        if f.is_symlink() or (f.exists() and (not f.is_file() or sha256_file(f) not in shas)):
            raise UserError(f"{out_dir / name}: changed since llmpipe exported it (its sha256 is not the "
                            f"one {MANIFEST} lists); nothing was changed: move it away, then export again")
    return files


def _install(staged: Path, out_dir: Path, old: Optional[dict[str, list[str]]]) -> None:
    """Move the staged export into OUT. New OUT: one rename of the whole folder. Otherwise (empty,
    or an earlier export): a manifest listing old and new files with both hashes first (a kill
    midway leaves a folder the next export still recognises and cleans), then each file renamed
    over its old version, the files only the old export had removed, the final manifest last."""
    new = json.loads((staged / MANIFEST).read_text(encoding="utf-8"))["files"]
    if not out_dir.exists():
        os.replace(staged, out_dir)
        return
    old = old or {}
    both = {k: sorted({*old.get(k, []), *([new[k]] if k in new else [])}) for k in {*old, *new}}
    _write_json(out_dir / f".{MANIFEST}.tmp", {"written_by": "llmpipe export-hf", "files": both})
    os.replace(out_dir / f".{MANIFEST}.tmp", out_dir / MANIFEST)
    for name in sorted(new):
        os.replace(staged / name, out_dir / name)
    for name in sorted(set(old) - set(new)):
        (out_dir / name).unlink(missing_ok=True)
    os.replace(staged / MANIFEST, out_dir / MANIFEST)


def export_hf(run_dir: str | Path, out_dir: str | Path, tokenizer: str | Path) -> Path:
    """Write the HF folder `out_dir`: built in a temp folder, then renamed into place (see the
    module doc for what an existing OUT may hold)."""
    from safetensors.torch import load_file, save_file

    from llmpipe.train.model import check_tokenizer
    from llmpipe.eval.hf_tokenizer import spm_special_ids, write_hf_tokenizer

    run_dir, out_dir, tokenizer = Path(run_dir), Path(out_dir), Path(tokenizer)
    old = _check_out_dir(run_dir, out_dir)
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
    # staged in a temp folder (removed on any failure), inside OUT when it exists (same filesystem)
    staging = out_dir / f".{MANIFEST}.staging" if out_dir.is_dir() else \
        out_dir.with_name(f".{out_dir.name}.{MANIFEST}.staging")
    try:
        with atomic_path(staging) as tmp:
            tmp.mkdir(parents=True)
            _write_json(tmp / "config.json", llama_config(cfg, special))
            _write_json(tmp / "generation_config.json", {
                "bos_token_id": special["eos"], "decoder_start_token_id": special["eos"],
                "eos_token_id": special["eos"], "pad_token_id": special["pad"]})
            save_file({k: v.contiguous() for k, v in sorted(state.items())}, str(tmp / "model.safetensors"),
                      metadata={"format": "pt"})
            shutil.copyfile(tokenizer, tmp / "tokenizer.model")
            write_hf_tokenizer(tokenizer, tmp, model_max_length=cfg["context"])
            _write_json(tmp / MANIFEST, {"written_by": "llmpipe export-hf",
                                         "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}})
        _install(staging, out_dir, old)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging)
    log.info("exported %s -> %s (%d tensors, vocab %d)", run_dir, out_dir, len(state), cfg["vocab_size"])
    return out_dir


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
