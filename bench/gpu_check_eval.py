"""CUDA correctness and speed of evaluation, generation and HF export (not a test; bench/results).

On a randomly initialised `llmpipe.train.model.Transformer` (GQA) and a tiny SentencePiece tokenizer
trained in-process on Python standard-library docstrings (both made by llmpipe's own code):

1. generation with the KV cache vs the full-recompute path: greedy tokens and teacher-forced
   logits, in fp32 and under bf16 autocast (bf16 tokens may diverge: counted, not asserted);
2. `evaluate_sources` loss / bits per byte of the same token files on the device vs on CPU;
3. the `export_hf` folder loaded with transformers on the device: logits and greedy continuation
   vs llmpipe on the same device;
4. throughput of evaluation (tokens scored/s) and cached generation (new tokens/s) at the `10m`
   preset shapes (random weights; vocab from params.yaml's tokenizer default, 8000).

    PYTHONPATH=src python3 bench/gpu_check_eval.py --device cuda --out bench/results/gpu_h100_eval.json

`--device cpu` is a dry run (smaller throughput shapes unless --full). Writes one JSON file.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from llmpipe.train.device import autocast, device_name, synchronize
from llmpipe.data.table import write_docs
from llmpipe.data.encode import tokenize_source
from llmpipe.eval.evaluate import doc_nll, evaluate_sources
from llmpipe.eval.export import export_hf
from llmpipe.train.sampling import generate
from llmpipe.train.model import KVCache, ModelConfig, Transformer, config_from_preset, save_model
from llmpipe.data.tokenizer import load as load_tokenizer, train as train_tokenizer
from llmpipe.data.tokens import open_tokens

STDLIB = ["argparse", "collections", "contextlib", "csv", "dataclasses", "datetime", "email.message",
          "functools", "heapq", "http.client", "inspect", "itertools", "json", "logging", "os",
          "pathlib", "random", "re", "shutil", "statistics", "string", "subprocess", "tarfile",
          "textwrap", "threading", "typing", "unittest", "urllib.parse", "zipfile"]


def docstrings() -> list[tuple[str, str]]:
    """(name, docstring) of each module above and its public members, sorted by name."""
    out = {}
    for m in STDLIB:
        mod = importlib.import_module(m)
        if mod.__doc__:
            out[m] = mod.__doc__
        for k in sorted(dir(mod)):
            obj = getattr(mod, k, None)
            doc = getattr(obj, "__doc__", None)
            if not k.startswith("_") and isinstance(doc, str) and len(doc) > 80 and \
                    getattr(obj, "__module__", None) == mod.__name__:
                out[f"{m}.{k}"] = doc
    return sorted(out.items())


def prefix_match(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@torch.no_grad()
def teacher_forced(model: Transformer, seq: list[int], n_prompt: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of positions n_prompt-1 .. len(seq)-2 from one full pass and from the cached path
    (prefill the prompt, then one token at a time): both (len(seq) - n_prompt, V) float32."""
    x = torch.tensor([seq], device=dev)
    full, _ = model(x)
    full = full[0, n_prompt - 1:len(seq) - 1]
    cache = KVCache(model.cfg, 1, len(seq), dev, next(model.parameters()).dtype)
    logits, _ = model(x[:, :n_prompt], cache=cache)
    steps = [logits[0, -1]]
    for t in range(n_prompt, len(seq) - 1):
        logits, _ = model(x[:, t:t + 1], cache=cache)
        steps.append(logits[0, -1])
    return full, torch.stack(steps)


def check_generation(model, prompt, n_new, dev, eos) -> dict:
    res = {}
    for prec in ("fp32", "bf16"):
        with autocast(dev, prec):
            cached = generate(model, prompt, n_new, use_cache=True)
            full = generate(model, prompt, n_new, use_cache=False)
            f, c = teacher_forced(model, prompt + cached, len(prompt), dev)
            s_kw = dict(temperature=0.8, top_k=50, seed=11)
            s1 = generate(model, prompt, n_new, use_cache=True, **s_kw)
            s2 = generate(model, prompt, n_new, use_cache=True, **s_kw)
            s3 = generate(model, prompt, n_new, use_cache=False, **s_kw)
        top2 = f.topk(2, dim=-1).values
        res[prec] = {"new_tokens": n_new, "greedy_identical": cached == full,
                     "greedy_prefix_match": prefix_match(cached, full),
                     "logits_max_abs_diff": float((f - c).abs().max()),
                     "logits_abs_max": float(f.abs().max()),
                     "min_top1_top2_margin": float((top2[:, 0] - top2[:, 1]).min()),
                     "argmax_agree_teacher_forced": int((f.argmax(-1) == c.argmax(-1)).sum()),
                     "positions_teacher_forced": int(f.shape[0]),
                     "sampled_same_seed_identical": s1 == s2,
                     "sampled_cache_vs_nocache_prefix_match": prefix_match(s1, s3),
                     "sampled_tokens": len(s1)}
        res[prec]["greedy_cached_tokens_head"] = cached[:16]
    with autocast(dev, "fp32"):
        ref = generate(model, prompt, n_new)
    with autocast(dev, "bf16"):
        bf = generate(model, prompt, n_new)
    res["bf16_vs_fp32_greedy_prefix_match"] = prefix_match(ref, bf)
    return res


def check_eval(model, tok, tok_dir, dev) -> dict:
    cpu_model = copy.deepcopy(model).to("cpu")
    kw = dict(max_tokens=0, seed=0, batch_size=8)
    with torch.no_grad():
        t0 = time.perf_counter()
        on_cpu = evaluate_sources(cpu_model, {"stdlib": tok_dir}, tok, **kw)
        t_cpu = time.perf_counter() - t0
        t0 = time.perf_counter()
        on_dev = evaluate_sources(model, {"stdlib": tok_dir}, tok, **kw)
        synchronize(dev)
        t_dev = time.perf_counter() - t0
        on_dev_b1 = evaluate_sources(model, {"stdlib": tok_dir}, tok, **{**kw, "batch_size": 1})
        with autocast(dev, "bf16"):
            on_dev_bf16 = evaluate_sources(model, {"stdlib": tok_dir}, tok, **kw)
        tf = open_tokens(tok_dir, "val", tokenizer=tok)
        docs = [tf.doc(i) for i in range(len(tf))]
        a = doc_nll(cpu_model, docs, tok.eos_id, 8)
        b = doc_nll(model, docs, tok.eos_id, 8)

    def rel(x, y):
        return abs(x - y) / abs(y)
    return {"docs": on_cpu["docs"], "tokens": on_cpu["tokens"], "bytes": on_cpu["bytes"],
            "cpu": {k: on_cpu[k] for k in ("loss", "bits_per_byte")},
            "device": {k: on_dev[k] for k in ("loss", "bits_per_byte")},
            "bits_per_byte_rel_diff": rel(on_dev["bits_per_byte"], on_cpu["bits_per_byte"]),
            "loss_rel_diff": rel(on_dev["loss"], on_cpu["loss"]),
            "per_doc_nll_max_rel_diff": float((abs(a - b) / abs(a)).max()),
            "device_batch1_vs_batch8_bpb_rel_diff": rel(on_dev_b1["bits_per_byte"], on_dev["bits_per_byte"]),
            "device_bf16_autocast_bpb_rel_diff": rel(on_dev_bf16["bits_per_byte"], on_dev["bits_per_byte"]),
            "seconds_cpu": t_cpu, "seconds_device": t_dev}


def check_export(model, tok, spm_path: Path, work: Path, dev, prompt, n_new) -> dict:
    import transformers

    save_model(work / "run", model, model.cfg)
    out = export_hf(work / "run", work / "hf", tokenizer=spm_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).to(dev).eval()
    x = torch.randint(0, model.cfg.vocab_size, (4, model.cfg.context),
                      generator=torch.Generator().manual_seed(0)).to(dev)
    with torch.no_grad():
        a, _ = model(x)
        b = hf(x).logits.float()
    mine = generate(model, prompt, n_new)
    theirs = hf.generate(torch.tensor([prompt], device=dev), max_new_tokens=n_new, do_sample=False,
                         eos_token_id=None, pad_token_id=0,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=dev))
    theirs = theirs[0, len(prompt):].tolist()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    texts = [d for _, d in docstrings()[:50]]
    return {"hf_class": type(hf).__name__, "attn_implementation": hf.config._attn_implementation,
            "logits_shape": list(a.shape), "logits_max_abs_diff": float((a - b).abs().max()),
            "logits_abs_max": float(a.abs().max()),
            "argmax_agree_frac": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
            "greedy_new_tokens": n_new, "greedy_identical": mine == theirs,
            "greedy_prefix_match": prefix_match(mine, theirs),
            "hf_tokenizer_texts": len(texts),
            "hf_tokenizer_encode_identical": sum(hf_tok.encode(t) == tok.sp.encode(t) for t in texts)}


def sdpa_backends(which: str):
    """"default": whatever SDPA picks; "no_cudnn": flash, memory-efficient or math only (the
    cuDNN backend may plan a new graph for every new sequence length: see docs/eval.md)."""
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel
    if which in ("default", "default_repeat"):  # repeat: the same lengths a second time
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def bench_speed(dev, vocab: int, full: bool) -> dict:
    torch.manual_seed(0)
    cfg = config_from_preset("10m", vocab_size=vocab)
    if not full:  # CPU dry run: same code, small shapes
        cfg = ModelConfig(**{**cfg.to_dict(), "d_model": 64, "n_layers": 2, "n_heads": 2, "n_kv_heads": 2,
                             "ffn_hidden": 192, "context": 128})
    model = Transformer(cfg).to(dev).eval()
    g = torch.Generator().manual_seed(1)
    n_docs, doc_len = (512, 1500) if full else (16, 200)
    docs = [torch.randint(4, vocab, (doc_len,), generator=g).tolist() for _ in range(n_docs)]
    res = {"config": cfg.to_dict(), "params": model.num_params(), "eval": [], "generate": []}
    for prec in ("fp32", "bf16"):
        for bs in (16, 64):
            with autocast(dev, prec):
                doc_nll(model, docs[:max(2, bs // 2)], 3, bs)  # warm-up (kernels, allocator)
                synchronize(dev)
                t0 = time.perf_counter()
                doc_nll(model, docs, 3, bs)
                synchronize(dev)
                dt = time.perf_counter() - t0
            n = n_docs * doc_len
            res["eval"].append({"precision": prec, "batch_size": bs, "tokens": n, "seconds": dt,
                                "tokens_per_s": n / dt})
        prompt = [3] + docs[0][:15]
        n_new = cfg.context - len(prompt)
        for use_cache, backends in ((True, "default"), (False, "default"), (True, "default_repeat"),
                                  (True, "no_cudnn")):
            if backends != "default" and prec == "fp32":
                continue  # cuDNN attention runs in fp16/bf16 only
            m = n_new if use_cache else min(n_new, 128 if full else 32)
            with autocast(dev, prec), sdpa_backends(backends):
                generate(model, prompt, 8, use_cache=use_cache)  # warm-up
                synchronize(dev)
                t0 = time.perf_counter()
                out = generate(model, prompt, m, use_cache=use_cache)
                synchronize(dev)
                dt = time.perf_counter() - t0
            res["generate"].append({"precision": prec, "use_cache": use_cache, "sdpa": backends, "batch": 1,
                                    "prompt_tokens": len(prompt), "new_tokens": len(out), "seconds": dt,
                                    "tokens_per_s": len(out) / dt})
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--full", action="store_true", help="10m shapes for the speed part on CPU too")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu_check_eval_"))
    texts = docstrings()
    train_tokenizer([d for _, d in texts], work / "tok", vocab_size=1000, character_coverage=1.0)
    spm_path = work / "tok" / "spm.model"
    tok = load_tokenizer(spm_path)
    write_docs(work / "dedup.parquet", [{"id": k, "source": "stdlib", "text": d, "url": None, "meta": None}
                                        for k, d in texts])
    tok_dir = work / "tokens" / "stdlib"
    tokenize_source(work / "dedup.parquet", spm_path, tok_dir, source="stdlib", val_fraction=0.3, seed=0, jobs=1)

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=128, n_layers=3, n_heads=8, n_kv_heads=2,
                      context=256, ffn_hidden=384)
    model = Transformer(cfg)
    with torch.no_grad():  # peakier logits than N(0, 0.02) init (std ~1.4 instead of ~0.1), so
        model.lm_head.weight.mul_(15.0)  # greedy ties do not decide the token comparisons
    model = model.to(dev).eval()
    val = open_tokens(tok_dir, "val", tokenizer=tok)
    prompt = [tok.eos_id] + val.doc(0)[:40].tolist()
    rec = {"command": " ".join(["python3"] + sys.argv), "device": device_name(dev), "torch": torch.__version__,
           "cuda": torch.version.cuda, "python": platform.python_version(),
           "cudnn_sdp_enabled": torch.backends.cuda.cudnn_sdp_enabled(),
           "model": cfg.to_dict(), "tokenizer_vocab": tok.vocab_size, "stdlib_docs": len(texts),
           "note": "lm_head weight x15 after init so logits are peaked like a trained model's"}
    rec["generation"] = check_generation(model, prompt, 150, dev, tok.eos_id)
    rec["evaluate"] = check_eval(model, tok, tok_dir, dev)
    rec["export_hf"] = check_export(model, tok, spm_path, work, dev, prompt, 60)
    rec["speed_10m"] = bench_speed(dev, 8000, a.full or dev.type == "cuda")
    rec["seconds_total"] = time.perf_counter() - t_start
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: rec[k] for k in ("generation", "evaluate", "export_hf")}, indent=1), file=sys.stderr)
    for r in rec["speed_10m"]["eval"] + rec["speed_10m"]["generate"]:
        print(r, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
