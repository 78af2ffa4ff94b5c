"""llmpipe's trainer against nanoGPT's at nanoGPT's CPU "baby" shape, back to back (issue 16).

The baseline is written here (`Gpt2Baseline`; nothing of nanoGPT is copied or vendored): its
architecture (GPT-2 blocks, LayerNorm without bias, GELU MLP 4x, learned positions, tied head)
and its `train.py` step at the README's CPU command (`--device=cpu --compile=False
--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --dropout=0.0`, shakespeare_char config: lr 1e-3, warmup 100, cosine, AdamW (0.9,
0.99), weight decay 0.1 on 2-D tensors, clip 1.0, eval every 250 steps): per step a fresh
`torch.randint` batch stacked row by row from a memmap of character ids, one forward/backward,
clip, AdamW, `loss.item()` (log_interval 1). `--nanogpt PATH` (your own checkout of
https://github.com/karpathy/nanoGPT) adds its `model.py` as one more row, `nanogpt-checkout`,
with the same loop: a check that the built-in baseline runs as fast as the original.

llmpipe runs its real `Trainer` (what `python -m stages.train` runs: overfit check, DVCLive,
checkpoints every 25 steps, val loss and greedy samples every 25) on tinyshakespeare's first 90%
(nanoGPT's prepare.py cut) encoded with a SentencePiece vocabulary of `--vocab` (324, the
smallest SentencePiece accepts here) in 64 KiB `chunks` documents, at the same shape: d_model
128, 4 layers, 4 heads, context 64, 12 sequences per step. Variants:
  tiny-ffn384  the `tiny` preset's SwiGLU width (384): ~12% more FLOPs per token than nanoGPT
  eq-flops     SwiGLU width 320, so FLOPs per token equal nanoGPT's (within 0.1%, printed)
  eq-flops-compiled  the same with `train.compile: true` (torch.compile, inductor's CPU kernels;
               its compile time is part of setup, never of the loop). nanoGPT's baby CPU command
               runs eager (`--compile=False`), so this row is llmpipe compiled vs the baseline eager.
Each is timed as the loop only (setup, i.e. init, cost gate and the overfit check, reported
apart), with its evals, samples, DVCLive writes and checkpoints (`with_overhead`) and without
them (`steps_only`, the same run less the measured overhead). The baseline likewise, with its
evals (eval_iters 20 on train and val every 250 steps) and its checkpoint (when val improves).

Every round runs each trainer once in its own process, in a rotating order (the machine is
shared: compare ratios within a round; the JSON keeps every round, the load average around
each run and the median ratio over rounds).

    PYTHONPATH=src .venv/bin/python bench/bench_vs_nanogpt.py --rounds 3 --steps 150 --threads 1 \
        --out bench/results/vs_nanogpt.json

`bench/bench_text_recipe.py --runs shakespeare:recipe shakespeare:baseline` uses the baseline
here for the same-wall-clock comparison of held-out bits per byte.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHAPE = {"d_model": 128, "n_layers": 4, "n_heads": 4, "context": 64, "batch": 12}
# name: (SwiGLU width, train.compile)
VARIANTS = {"llmpipe-tiny-ffn384": (384, False), "llmpipe-eq-flops": (320, False),
            "llmpipe-eq-flops-compiled": (320, True)}


class Gpt2Baseline:
    """nanoGPT's architecture, written for this benchmark (nothing copied): GPT-2 blocks, pre-norm
    LayerNorm without bias, causal attention through one c_attn matmul and SDPA, a 4x GELU MLP,
    learned positions, the head tied to the token embedding, N(0, 0.02) init with the residual
    projections at 0.02 / sqrt(2 L), no dropout (the baby config's 0.0). AdamW with weight decay
    on the 2-D tensors only, torch's default implementation on CPU (nanoGPT asks for `fused`
    only on CUDA)."""

    @staticmethod
    def build(vocab: int, T: int, L: int, H: int, C: int):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
                self.c_attn, self.attn_proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
                self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)

            def forward(self, x):
                B, T_, _ = x.shape
                q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
                q, k, v = (t.view(B, T_, H, C // H).transpose(1, 2) for t in (q, k, v))
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T_, C))
                return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

        class GPT(nn.Module):
            def __init__(self):
                super().__init__()
                self.wte, self.wpe = nn.Embedding(vocab, C), nn.Embedding(T, C)
                self.blocks = nn.ModuleList(Block() for _ in range(L))
                self.ln_f = nn.LayerNorm(C, bias=False)
                for name, p in self.named_parameters():
                    if p.dim() == 2:
                        std = 0.02 / math.sqrt(2 * L) if name.endswith("_proj.weight") else 0.02
                        torch.nn.init.normal_(p, 0.0, std)

            def forward(self, idx, targets):
                pos = torch.arange(idx.shape[1], device=idx.device)
                x = self.wte(idx) + self.wpe(pos)
                for b in self.blocks:
                    x = b(x)
                logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
                return logits, F.cross_entropy(logits.view(-1, vocab), targets.view(-1), ignore_index=-1)

            def num_params(self) -> int:  # nanoGPT's count: all but the position table
                return sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()

        return GPT()

    @staticmethod
    def optimizer(model, weight_decay: float, lr: float, betas: tuple):
        import torch
        ps = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in ps if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def nanogpt_child(work: Path, nanogpt: Path | None, steps: int, eval_on: bool,
                  budget_s: float = 0.0) -> dict:
    """The baseline (or, with `nanogpt`, that checkout's model.py) and nanoGPT's train.py step
    at the baby config; timings of the loop. `budget_s` > 0: train for that many seconds of loop
    instead of `steps`, then score the val text as a stream (bits per byte)."""
    import torch
    t0 = time.perf_counter()
    meta = json.loads((work / "nanogpt" / "meta.json").read_text())
    B, T = SHAPE["batch"], SHAPE["context"]
    torch.manual_seed(1337)
    if nanogpt is not None:
        sys.path.insert(0, str(nanogpt))
        from model import GPT, GPTConfig  # the user's nanoGPT checkout
        model = GPT(GPTConfig(block_size=T, vocab_size=meta["vocab_size"], n_layer=SHAPE["n_layers"],
                              n_head=SHAPE["n_heads"], n_embd=SHAPE["d_model"], dropout=0.0, bias=False))
        opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
        n_params = model.get_num_params()
    else:
        model = Gpt2Baseline.build(meta["vocab_size"], T, SHAPE["n_layers"], SHAPE["n_heads"], SHAPE["d_model"])
        opt = Gpt2Baseline.optimizer(model, 0.1, 1e-3, (0.9, 0.99))
        n_params = model.num_params()
    model.train()

    def batch(split: str):  # as train.py: a new memmap per batch, rows stacked one by one
        data = np.memmap(work / "nanogpt" / f"{split}.bin", dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy(data[i:i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + T].astype(np.int64)) for i in ix])
        return x, y

    # the baby config's schedule: warmup 100, cosine to 1e-4 at max_iters (2000), or at the step
    # count the wall-clock budget allows (estimated from the first 20 steps)
    decay = 2000 if budget_s else steps

    def lr_at(it: int, lr=1e-3, warmup=100, min_lr=1e-4) -> float:
        if it < warmup:
            return lr * it / warmup
        ratio = (it - warmup) / max(1, decay - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(ratio, 1.0))) * (lr - min_lr)

    @torch.no_grad()
    def estimate_loss() -> float:
        model.eval()
        out = {}
        for split in ("train", "val"):
            losses = torch.zeros(20)
            for k in range(20):
                _, loss = model(*batch(split))
                losses[k] = loss.item()
            out[split] = losses.mean()
        model.train()
        return float(out["val"])

    setup = time.perf_counter() - t0
    best, overhead = 1e9, 0.0
    X, Y = batch("train")
    t_loop = time.perf_counter()
    it = 0
    while (it < steps) if not budget_s else (time.perf_counter() - t_loop < budget_s):
        if budget_s and it == 20:  # steps the budget allows at this pace: the cosine ends there
            decay = max(200, int(budget_s / ((time.perf_counter() - t_loop) / 20)))
        for g in opt.param_groups:
            g["lr"] = lr_at(it)
        if eval_on and it % 250 == 0:
            t = time.perf_counter()
            val = estimate_loss()
            if val < best:
                best = val
                if it > 0:
                    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iter_num": it},
                               work / "nanogpt" / "ckpt.pt")
            overhead += time.perf_counter() - t
        _, loss = model(X, Y)
        X, Y = batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # log_interval 1
        it += 1
    loop = time.perf_counter() - t_loop
    out = {"setup_seconds": setup, "loop_seconds": loop, "overhead_seconds": overhead, "tokens": it * B * T,
           "steps": it, "final_loss": float(loss.item()), "flops_per_token": nanogpt_flops(n_params),
           "baseline": "nanoGPT checkout" if nanogpt is not None else "Gpt2Baseline (this file)"}
    if budget_s:
        out["val_bits_per_byte_stream"] = stream_bits_per_byte(model, work, T)
    return out


def stream_bits_per_byte(model, work: Path, T: int, stride: int = 16) -> float:
    """The val characters scored as one stream: windows of T sliding by `stride`; each target is
    scored once, in the first window that reaches it, so every one past the first window has at
    least T - stride characters of context. tinyshakespeare is ASCII: a character is a byte."""
    import torch
    import torch.nn.functional as F
    model.eval()
    ids = torch.from_numpy(np.fromfile(work / "nanogpt" / "val.bin", dtype=np.uint16).astype(np.int64))
    last = len(ids) - 1 - T  # the last window ends at the last target
    starts = list(range(0, last, stride)) + [last]
    nats, done = 0.0, 0  # targets 1..done are scored
    with torch.no_grad():
        for k in range(0, len(starts), 64):
            rows = starts[k:k + 64]
            x = torch.stack([ids[s:s + T] for s in rows])
            y = torch.stack([ids[s + 1:s + 1 + T] for s in rows])
            logits, _ = model(x, y)
            lp = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                 reduction="none").view(len(rows), T)
            for r, s in enumerate(rows):  # row r's position j predicts target s + 1 + j
                first = max(0, done - s)
                nats += float(lp[r, first:].sum())
                done = s + T
    assert done == len(ids) - 1
    return nats / done / math.log(2)


def nanogpt_flops(n_params: int) -> int:
    """nanoGPT's own estimate_mfu count: 6 N + 12 L C T (N: params less the position table)."""
    return 6 * n_params + 12 * SHAPE["n_layers"] * SHAPE["d_model"] * SHAPE["context"]


def llmpipe_child(work: Path, variant: str) -> dict:
    """The real Trainer (stages.train's code path) on the prepared workspace."""
    sys.path.insert(0, str(REPO / "src"))
    from llmpipe.params import load_params
    from llmpipe.train.model import flops_per_token, model_config
    from llmpipe.train.trainer import Paths, Trainer
    ws = work / variant
    p = load_params(ws / "params.yaml")
    paths = Paths(ws / "data/mix", ws / "artifacts/tokenizer", ws / "runs/throughput.json", ws / "runs/train")
    t = Trainer(paths, p.model, p.train, p.cost)
    t.setup()
    res = t.run()
    timing = json.loads((ws / "runs/train/timing.json").read_text())
    cfg = model_config(p.model, t.cfg.vocab_size)
    from llmpipe.core.atomic import sha256_file
    return {"setup_seconds": timing["setup_seconds"], "loop_seconds": timing["loop_seconds"],
            "overhead_seconds": timing["overhead_seconds"], "tokens": timing["loop_tokens"],
            "steps": res["steps"], "flops_per_token": flops_per_token(cfg), "compile": p.train.compile,
            # the same params every round: equal hashes say the run is deterministic
            "model_sha256": sha256_file(ws / "runs/train/model.safetensors")}


def prepare_chars(work: Path, text: str, cut: int) -> list[str]:
    """work/nanogpt/{train,val}.bin + meta.json as nanoGPT's shakespeare_char/prepare.py makes
    them: one uint16 id per character of the sorted character set, train = text[:cut]."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    (work / "nanogpt").mkdir(parents=True, exist_ok=True)
    for split, part in (("train", text[:cut]), ("val", text[cut:])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(work / "nanogpt" / f"{split}.bin")
    (work / "nanogpt" / "meta.json").write_text(json.dumps({"vocab_size": len(chars)}))
    return chars


def prepare(work: Path, corpus: Path, vocab: int, steps: int) -> dict:
    """nanoGPT's char-level files (its prepare.py's split) and one llmpipe workspace per variant."""
    import yaml
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_text_recipe import workspace
    text = corpus.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    chars = prepare_chars(work, text, cut)
    B, T = SHAPE["batch"], SHAPE["context"]
    train = {"tokens": steps * B * T, "batch_tokens": B * T, "micro_batch": B, "lr": 3e-3, "warmup": 20}
    for variant, (ffn, compiled) in VARIANTS.items():
        ws = work / variant
        workspace(ws, text[:cut], text[cut:], vocab, train)
        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["model"] = {"preset": "tiny", "context": T, "ffn_hidden": ffn}
        if compiled:
            params["train"]["compile"] = True
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return {"train_chars": cut, "nanogpt_vocab": len(chars), "llmpipe_vocab": vocab}


def child(role: str, work: Path, nanogpt: Path | None, steps: int, eval_on: bool, threads: int,
          budget_s: float = 0.0) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    cmd = [sys.executable, __file__, "--child", "baseline" if role == "nanogpt-checkout" else role,
           "--work", str(work), "--steps", str(steps), "--threads", str(threads), "--budget", str(budget_s)]
    if role == "nanogpt-checkout":
        cmd += ["--nanogpt", str(nanogpt)]
    if not eval_on:
        cmd += ["--no-eval"]
    load0 = os.getloadavg()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    if p.returncode:
        raise SystemExit(f"{role} failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    steps_s = r["loop_seconds"] - r["overhead_seconds"]
    r.update(loadavg_before=load0, loadavg_after=os.getloadavg(),
             tokens_per_s_with_overhead=r["tokens"] / r["loop_seconds"],
             tokens_per_s_steps_only=r["tokens"] / steps_s)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanogpt", type=Path, help="optional: a checkout of karpathy/nanoGPT; its model.py "
                    "runs as one more row (`nanogpt-checkout`), a check on the built-in baseline")
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/corpus/shakespeare/tinyshakespeare.txt"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per run (768 tokens each)")
    ap.add_argument("--vocab", type=int, default=324)
    ap.add_argument("--out", type=Path, required=False)
    ap.add_argument("--work", type=Path, help="workspace (kept; prepared again only when empty)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in every run (0: torch's default)")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS),
                    help="the llmpipe rows to run (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--no-eval", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        import torch
        if a.threads:
            torch.set_num_threads(a.threads)
        r = (nanogpt_child(a.work, a.nanogpt, a.steps, not a.no_eval, a.budget) if a.child == "baseline"
             else llmpipe_child(a.work, a.child))
        r["threads"] = torch.get_num_threads()
        print(json.dumps(r))
        return
    if a.nanogpt is not None and not (a.nanogpt / "model.py").exists():
        ap.error(f"--nanogpt {a.nanogpt}: no model.py there (a checkout of https://github.com/karpathy/nanoGPT)")
    if a.out is None:
        ap.error("--out FILE is needed")
    import shutil
    import torch
    work = a.work or Path(tempfile.mkdtemp(prefix="vs-nanogpt-"))
    info_path = work / "prepared.json"
    want = (a.steps, a.vocab, sorted(VARIANTS))
    old = json.loads(info_path.read_text()) if info_path.exists() else {}
    if (old.get("steps"), old.get("llmpipe_vocab"), old.get("variants")) == want:
        info = old
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        info = {**prepare(work, a.corpus, a.vocab, a.steps), "steps": a.steps, "variants": sorted(VARIANTS)}
        info_path.write_text(json.dumps(info))
    roles = ["baseline", *(["nanogpt-checkout"] if a.nanogpt else []), *[v for v in VARIANTS if v in a.variants]]
    compared = [r for r in roles if r != "baseline"]
    rounds = []
    for r in range(a.rounds):
        order = roles[r % len(roles):] + roles[:r % len(roles)]
        runs = {}
        for role in order:
            if role in VARIANTS:  # a fresh run each round (no resume)
                shutil.rmtree(work / role / "runs", ignore_errors=True)
            runs[role] = child(role, work, a.nanogpt, a.steps, True, a.threads)
            print(role, {k: round(v) for k, v in runs[role].items() if k.startswith("tokens_per_s")}, flush=True)
        base = runs["baseline"]
        for role in compared:
            x = runs[role]
            x["ratio_steps_only"] = x["tokens_per_s_steps_only"] / base["tokens_per_s_steps_only"]
            x["ratio_with_overhead"] = x["tokens_per_s_with_overhead"] / base["tokens_per_s_with_overhead"]
            x["ratio_flops_steps_only"] = x["ratio_steps_only"] * x["flops_per_token"] / base["flops_per_token"]
        rounds.append({"order": order, "runs": runs})
        summary = {role: {**{k: statistics.median(rd["runs"][role][k] for rd in rounds)
                             for k in ("ratio_steps_only", "ratio_with_overhead", "ratio_flops_steps_only")},
                          "ratio_steps_only_rounds": [round(rd["runs"][role]["ratio_steps_only"], 3) for rd in rounds],
                          **({"same_model_every_round": len({rd["runs"][role]["model_sha256"] for rd in rounds}) == 1}
                             if role in VARIANTS else {})}
                   for role in compared}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "shape": SHAPE, "steps": a.steps, **info,
            "baseline": "Gpt2Baseline in this file (nanoGPT's architecture and train.py step)",
            "median_ratios_vs_baseline": summary, "rounds": rounds}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
