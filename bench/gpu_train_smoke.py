"""GPU smoke run of the real training loop (not a test): bench stage, then the 100m preset in
bf16 + torch.compile for 20 steps, then a second process-free resume to the end, on a tiny
hermetic corpus (tests/_trainkit.py). DVCLive is not installed on the device image, so this
script's trainer logs to stderr only (the one override below); everything else is llmpipe's code.

    PYTHONPATH=src:tests python3 bench/gpu_train_smoke.py OUTDIR [PRESET [COMPILE]]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _trainkit import make_inputs, write_params
from llmpipe.train.model import PRESETS
from llmpipe.params import load_params
from llmpipe.train.trainer import Paths, Trainer


class StderrOnlyTrainer(Trainer):
    def open_live(self, resumed: bool):
        return None


def main(out: str, preset: str = "100m", compile: bool = True) -> int:
    out = str(Path(out).resolve())
    root = make_inputs(Path(tempfile.mkdtemp()) / "w")
    mb = 32 if preset == "100m" else 2
    bt = 2 * mb * PRESETS[preset]["context"]  # 2 accumulation micro-steps per step
    write_params(root, model={"preset": preset, "d_model": None, "n_layers": None, "n_heads": None,
                              "context": None, "ffn_hidden": None},
                 train={"tokens": 40 * bt, "batch_tokens": bt, "micro_batch": mb, "lr": 3e-3,
                        "warmup": 5, "compile": compile, "eval_every": 10, "ckpt_every": 10,
                        "log_every": 5, "max_steps": 20, "overfit_steps": 30},
                 cost={"hourly_rate": 3.0, "max_cost": 5.0},
                 bench={"warmup_steps": 3, "steps": 5, "windows": 3})
    os.chdir(root)
    from stages_bench import main as bench_main
    t = time.perf_counter()
    assert bench_main([]) == 0
    rec = {"bench": json.loads(Path("runs/throughput.json").read_text()), "bench_s": time.perf_counter() - t}
    for name in ("first", "resumed"):  # 20 steps, then a resume to the end
        if name == "resumed":
            d = yaml.safe_load(Path("params.yaml").read_text())
            d["train"]["max_steps"] = None
            Path("params.yaml").write_text(yaml.safe_dump(d))
        p = load_params("params.yaml")
        t = time.perf_counter()
        tr = StderrOnlyTrainer(Paths(), p.model, p.train, p.cost)
        tr.setup()
        rec[name] = tr.run()
        rec[f"{name}_wall_s"] = time.perf_counter() - t
    rec["cost"] = json.loads(Path("runs/train/cost.json").read_text())      # projection, counters
    rec["timing"] = json.loads(Path("runs/train/timing.json").read_text())  # spend, tokens/s
    rec["samples"] = Path("runs/train/samples.txt").read_text()
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "gpu_train_smoke.json").write_text(json.dumps(rec, indent=2, sort_keys=True))
    print(json.dumps({k: rec[k] for k in ("first", "resumed", "cost")}, indent=1))
    return 0


if __name__ == "__main__":
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "stages_bench", Path(__file__).resolve().parents[1] / "stages" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["stages_bench"] = mod
    sys.exit(main(sys.argv[1], *sys.argv[2:3], *[a == "1" for a in sys.argv[3:4]]))
