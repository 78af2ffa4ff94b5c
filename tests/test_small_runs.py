"""Small-run checks (issue 16, item 5): the overfit bar scales with ln(vocab), and a benchmark
taken on a loaded machine is flagged (warned about, or refused) instead of priced from silently."""
from __future__ import annotations

import json
import math

import pytest
import torch

from _trainkit import write_params
from llmpipe.core.errors import UserError
from llmpipe.params import BenchParams
from llmpipe.train.checks import OverfitCheckFailed, overfit_check
from llmpipe.train.model import ModelConfig, Transformer
from llmpipe.train.throughput import check_contention, contention

CPU = torch.device("cpu")


def batch(vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    m = Transformer(ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2,
                                context=16, ffn_hidden=64))
    x = torch.randint(0, vocab, (4, 16))
    return m, x, torch.roll(x, -1, 1)


def test_overfit_bar_is_a_share_of_ln_vocab():
    m, x, y = batch(1024)
    with pytest.raises(OverfitCheckFailed, match=r"short of a drop of train.overfit_min_drop 0.25 x ln\(vocab 1024\) "
                                                  r"= 1.733 nats \(it fell 0.000\)"):
        overfit_check(m, x, y, lr=0.0, steps=5, max_ratio=None, device=CPU, precision="fp32", min_drop=0.25)
    first, last = overfit_check(m, x, y, lr=1e-2, steps=30, max_ratio=None, device=CPU, precision="fp32",
                                min_drop=0.25)
    assert first - last >= 0.25 * math.log(1024)
    # the same run judged by a drop it cannot make names both bars when both are set
    with pytest.raises(OverfitCheckFailed, match=r"x ln\(vocab 1024\) = 69.315 nats .* and train.overfit_max_ratio"):
        overfit_check(m, x, y, lr=1e-2, steps=3, max_ratio=1e-3, device=CPU, precision="fp32", min_drop=10.0)


def test_contention_signs():
    bp = BenchParams()
    quiet = contention([1000.0, 1010.0, 990.0], cpu_s=1.9, wall_s=1.0, device=CPU, bp=bp)
    threads = torch.get_num_threads()
    assert quiet["window_spread"] == pytest.approx(0.02) and quiet["cpu_share"] == pytest.approx(1.9 / threads)
    busy = contention([1000.0, 1010.0, 990.0], cpu_s=0.3 * threads, wall_s=1.0, device=CPU, bp=bp)
    assert busy["loaded"] and "got 30% of its" in busy["why"] and "other processes" in busy["why"]
    jumpy = contention([1000.0, 400.0, 990.0], cpu_s=threads, wall_s=1.0, device=CPU, bp=bp)
    assert jumpy["loaded"] and "spread 61% around the median" in jumpy["why"]
    gpu = contention([1000.0, 1001.0], cpu_s=0.0, wall_s=1.0, device=torch.device("cuda"), bp=bp)
    assert gpu["cpu_share"] is None and not gpu["loaded"]  # on a GPU only the spread counts
    rec = {"tokens_per_s": 721.0, "contention": busy}
    assert "measured 721 tokens/s on a loaded machine" in check_contention(rec, bp)
    with pytest.raises(UserError, match=r"rerun `dvc repro -f bench` when the machine is quiet \(bench.on_loaded: fail\)"):
        check_contention(rec, BenchParams(on_loaded="fail"))
    assert check_contention({"tokens_per_s": 1.0, "contention": quiet}, bp) is None or not quiet["loaded"]


def test_the_bench_stage_refuses_an_unsteady_measurement_and_writes_nothing(tmp_path, capsys):
    """max_spread 0: any real spread between windows is 'not steady', so with on_loaded: fail the
    stage must exit 2 with one line; with warn it writes the record, flagged."""
    from _evalkit import load_stage
    bench = load_stage("bench")
    out, env = tmp_path / "runs" / "throughput.json", tmp_path / "runs" / "env.json"
    args = ["--params", str(tmp_path / "params.yaml"), "--out", str(out), "--env", str(env)]
    write_params(tmp_path, bench={"windows": 2, "max_spread": 0.0, "on_loaded": "fail"})
    assert bench.main(args) == 2
    err = capsys.readouterr().err
    assert "bench: error: bench: measured" in err and "windows spread" in err and "Traceback" not in err
    assert not out.exists() and not env.exists()
    write_params(tmp_path, bench={"windows": 2, "max_spread": 0.0, "on_loaded": "warn"})
    assert bench.main(args) == 0
    rec = json.loads(out.read_text())
    assert rec["contention"]["loaded"] and "windows spread" in rec["contention"]["why"]
