"""Generation cost with and without the KV cache; writes bench/results/generate.json.

    PYTHONPATH=src .venv/bin/python bench/bench_generate.py --preset tiny --lengths 64 128 255

For each length n, the wall time to generate n tokens from a 1-token prompt (greedy, random
weights, CPU or --device cuda), median of --repeats. With the cache each new token is one forward
pass over one position, so time per token stays flat as n grows (total linear in n); without it
each step reruns the whole sequence (total quadratic). Reported: seconds, tokens/s, and the ratio.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from llmpipe.core.atomic import write_json
from llmpipe.train.sampling import generate
from llmpipe.train.model import Transformer, config_from_preset


def timed(model, n: int, use_cache: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        generate(model, [3], n, use_cache=use_cache)
        if next(model.parameters()).is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 255])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/generate.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = config_from_preset(a.preset, vocab_size=a.vocab)
    model = Transformer(cfg).to(a.device).eval()
    generate(model, [3], 8)  # warm-up
    rows = []
    for n in a.lengths:
        cached, full = timed(model, n, True, a.repeats), timed(model, n, False, a.repeats)
        rows.append({"new_tokens": n, "cache_s": round(cached, 4), "no_cache_s": round(full, 4),
                     "cache_tokens_per_s": round(n / cached, 1), "no_cache_tokens_per_s": round(n / full, 1),
                     "speedup": round(full / cached, 2)})
        print(rows[-1])
    write_json(a.out, {"preset": a.preset, "vocab": a.vocab, "device": a.device, "threads": a.threads,
                       "torch": torch.__version__, "machine": platform.machine(),
                       "params": model.num_params(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
