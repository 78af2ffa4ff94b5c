"""Eval: bits per byte, per-source sums, subsets, multiple choice, the regression gate, the stage."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from _evalkit import constant_logits_model, load_stage, save_tiny_run, tiny_model, token_dirs, train_tokenizer
from llmpipe.eval import mc
from llmpipe.eval.evaluate import (RegressionError, Tally, check_regression, doc_nll, doc_windows,
                              evaluate_sources, select_docs, select_spans, source_budget)
from llmpipe.data.tokenizer import load as load_tokenizer


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalkit")
    spm = train_tokenizer(tmp / "tok")
    tok = load_tokenizer(spm)
    dirs = token_dirs(tmp, spm, {"alpha": 12, "beta": 8})
    return tmp, spm, tok, dirs


# --------------------------------------------------------------------------- bits per byte

def test_bits_per_byte_hand_computed():
    # A uniform model over V = 8 tokens: every prediction costs ln 8 nats = 3 bits. Two documents
    # of 5 and 3 tokens (EOS included) over 10 + 6 UTF-8 bytes: (5 + 3) * 3 bits / 16 bytes = 1.5.
    model = constant_logits_model(8, {})
    nll = doc_nll(model, [[4, 5, 6, 7, 3], [5, 5, 3]], start_id=3, batch_size=2)
    assert nll == pytest.approx([5 * math.log(8), 3 * math.log(8)], rel=1e-6)
    m = Tally(nll=float(nll.sum()), tokens=8, bytes=16, docs=2).metrics()
    assert m["bits_per_byte"] == pytest.approx(1.5, rel=1e-6)
    assert m["loss"] == pytest.approx(math.log(8), rel=1e-6)
    assert m["perplexity"] == pytest.approx(8.0, rel=1e-5)
    assert m["nll_bits"] == pytest.approx(24.0, rel=1e-6)


def test_tally_exact_arithmetic():
    m = Tally(nll=4 * math.log(2), tokens=2, bytes=8, docs=1).metrics()
    assert m == {"loss": 2 * math.log(2), "perplexity": pytest.approx(4.0), "bits_per_byte": 0.5,
                 "nll_bits": 4.0, "tokens": 2, "bytes": 8, "docs": 1}


def test_windows_cover_every_token_once():
    doc = list(range(10, 160))  # 150 tokens, context 64 -> windows of 64, 64, 22 predictions
    w = doc_windows(doc, start_id=3, context=64)
    assert [len(t) for _, t in w] == [64, 64, 22]
    assert np.concatenate([t for _, t in w]).tolist() == doc
    assert w[0][0][0] == 3 and all(len(i) == len(t) for i, t in w)


@torch.no_grad()
def _direct_nll(model, doc, start_id):
    """The same quantity as doc_nll, one window at a time, without batching or padding."""
    total = 0.0
    for inp, tgt in doc_windows(doc, start_id, model.cfg.context):
        logits, _ = model(torch.from_numpy(inp)[None])
        lp = torch.log_softmax(logits[0].double(), -1)
        total -= float(lp[torch.arange(len(tgt)), torch.from_numpy(tgt)].sum())
    return total


def test_doc_nll_matches_direct_forward_and_ignores_batching():
    model = tiny_model(50, seed=1)
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(4, 50, (n,), generator=g).tolist() + [3] for n in (5, 30, 63, 140)]
    expect = [_direct_nll(model, d, 3) for d in docs]
    for bs in (1, 3, 16):
        assert doc_nll(model, docs, 3, batch_size=bs) == pytest.approx(expect, rel=1e-5)


# --------------------------------------------------------------------------- per source, subsets

def test_per_source_metrics_sum_to_overall(kit):
    tmp, spm, tok, dirs = kit
    model = tiny_model(tok.vocab_size, seed=2)
    m = evaluate_sources(model, dirs, tok, max_tokens=0, seed=0, batch_size=4)
    ps = m["per_source"]
    assert set(ps) == {"alpha", "beta"}
    for key in ("tokens", "bytes", "docs"):
        assert sum(s[key] for s in ps.values()) == m[key]
    assert sum(s["nll_bits"] for s in ps.values()) == pytest.approx(m["nll_bits"], rel=1e-12)
    assert m["bits_per_byte"] == pytest.approx(m["nll_bits"] / m["bytes"], rel=1e-12)
    from llmpipe.data.tokens import open_tokens
    for src, d in dirs.items():  # the whole val split: bytes and tokens are the meta's
        info = open_tokens(d, "val").meta["splits"]["val"]
        assert (ps[src]["bytes"], ps[src]["tokens"], ps[src]["docs"]) == (
            info["utf8_bytes"], info["tokens"], info["docs"])
    # an untrained model is close to uniform: loss near ln V
    assert abs(m["loss"] - math.log(tok.vocab_size)) < 0.5


def test_max_tokens_subset_is_whole_documents_and_deterministic(kit):
    tmp, spm, tok, dirs = kit
    model = tiny_model(tok.vocab_size, seed=2)
    full = evaluate_sources(model, dirs, tok, max_tokens=0, seed=0, batch_size=8)
    a = evaluate_sources(model, dirs, tok, max_tokens=600, seed=0, batch_size=8)
    b = evaluate_sources(model, dirs, tok, max_tokens=600, seed=0, batch_size=3)
    for src in a["per_source"]:  # batch shapes change float32 rounding only
        assert a["per_source"][src] == pytest.approx(b["per_source"][src], rel=1e-6)
    assert 600 <= a["tokens"] < full["tokens"]
    assert all(1 <= s["docs"] < full["per_source"][k]["docs"] for k, s in a["per_source"].items())


def test_select_docs():
    ids = [f"d{i}" for i in range(20)]
    lengths = np.full(20, 10)
    assert select_docs(ids, lengths, 0, 0).tolist() == list(range(20))
    assert select_docs(ids, lengths, 1000, 0).tolist() == list(range(20))
    a = select_docs(ids, lengths, 45, seed=1)
    assert len(a) == 5 and a.tolist() == sorted(a.tolist())  # 5 whole docs cover 45 tokens
    assert select_docs(ids, lengths, 45, seed=1).tolist() == a.tolist()
    assert select_docs(ids, lengths, 45, seed=2).tolist() != a.tolist()


def test_select_spans_cut_the_document_that_crosses_the_budget():
    """One long book among short pages: the source scores exactly its budget, the book cut."""
    ids = [f"d{i}" for i in range(10)]
    lengths = np.array([10] * 9 + [5000])
    for seed in range(5):
        pick, used = select_spans(ids, lengths, 45, seed)
        assert pick.tolist() == select_docs(ids, lengths, 45, seed).tolist() and int(used.sum()) == 45
        assert (used >= 1).all() and (used <= lengths[pick]).all() and int((used < lengths[pick]).sum()) <= 1
    pick, used = select_spans(ids, lengths, 0, 0)
    assert used.tolist() == lengths.tolist()
    assert [source_budget(1000, s, 10_000, 300) for s in (9_000, 900, 100, 0)] == [900, 300, 100, 1]
    assert source_budget(0, 900, 10_000, 300) == 0


def test_every_source_gets_its_floor_and_cut_documents_count_their_prefix_bytes(kit):
    tmp, spm, tok, dirs = kit
    model = tiny_model(tok.vocab_size, seed=2)
    from llmpipe.data.tokens import open_tokens
    have = {s: len(open_tokens(d, "val").tokens) for s, d in dirs.items()}
    full = evaluate_sources(model, dirs, tok, max_tokens=0, seed=0, batch_size=8)
    small = min(have, key=have.get)
    m = evaluate_sources(model, dirs, tok, max_tokens=60, seed=0, batch_size=8, min_source_tokens=150)
    for src, n in have.items():
        assert m["per_source"][src]["tokens"] == min(n, max(150, round(60 * n / sum(have.values()))))
        assert 0 < m["per_source"][src]["bytes"] < full["per_source"][src]["bytes"] or n <= 150
    without = evaluate_sources(model, dirs, tok, max_tokens=60, seed=0, batch_size=8)
    assert without["per_source"][small]["tokens"] < m["per_source"][small]["tokens"]


# --------------------------------------------------------------------------- multiple choice

def test_mc_picks_higher_mean_logprob_not_higher_sum(kit):
    tmp, spm, tok, dirs = kit
    context, long_choice, short_choice = "The red fox", "carried bread to market", "sang"
    _, a = mc.continuation(tok, context, long_choice, " ")
    _, b = mc.continuation(tok, context, short_choice, " ")
    assert len(a) > len(b) >= 1 and not set(a) & set(b)
    model = constant_logits_model(tok.vocab_size, {**{t: 5.0 for t in a}, **{t: 4.0 for t in b}})
    na, nb = len(set(a)), len(set(b))
    logz = math.log(na * math.e ** 5 + nb * math.e ** 4 + tok.vocab_size - na - nb)
    scores = mc.mean_logprobs(model, tok.eos_id, [mc.continuation(tok, context, c, " ")
                                                   for c in (long_choice, short_choice)])
    assert scores == pytest.approx([5 - logz, 4 - logz], abs=1e-4)
    assert len(a) * (5 - logz) < len(b) * (4 - logz)  # summed log-probs would pick the short one
    for label, choices in ((0, [long_choice, short_choice]), (1, [short_choice, long_choice])):
        r = mc.score_task(model, tok, [{"context": context, "choices": choices, "label": label}])
        assert r == {"accuracy": 1.0, "correct": 1, "n": 1, "chance": 0.5}
    r = mc.score_task(model, tok, [{"context": context, "choices": [long_choice, short_choice], "label": 1}])
    assert r["accuracy"] == 0.0


def test_continuation_is_the_tokens_after_the_common_prefix(kit):
    tok = kit[2]
    ctx, cont = mc.continuation(tok, "The old miller", "watched the sky", " ")
    assert ctx + cont == tok.encode("The old miller watched the sky")
    assert tok.sp.decode(cont).strip() == "watched the sky"


def test_few_shot_prefix_uses_other_examples_with_answers():
    ex = [{"context": f"q{i}", "choices": ["x", f"a{i}"], "label": 1} for i in range(5)]
    p = mc.few_shot_prefix(ex, 2, k=2, seed=0, delimiter=" ")
    shots = p.strip().split("\n\n")
    assert len(shots) == 2 and "q2 a2" not in shots and all(s.split()[1] == "a" + s.split()[0][1:] for s in shots)
    assert p == mc.few_shot_prefix(ex, 2, k=2, seed=0, delimiter=" ")
    assert mc.few_shot_prefix(ex, 2, k=0, seed=0, delimiter=" ") == ""


def test_load_task_errors_name_file_and_line(tmp_path):
    good = {"context": "c", "choices": ["a", "b"], "label": 1}
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "label": 2}) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:3: need context"):
        mc.load_task(p)
    p.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:2: not valid JSON"):
        mc.load_task(p)
    p.write_text(json.dumps(good) + "\n")
    assert mc.load_task(p) == [good]


def test_builtin_task_from_documents():
    texts = [("short", "too short")] + [(f"id{i}", " ".join(f"w{i}_{j}" for j in range(12))) for i in range(6)]
    ex = mc.builtin_task(texts, n=5, choices=3, context_words=8, continuation_words=4, seed=0)
    assert len(ex) == 5 and [e["context"].split()[0] for e in ex] == [f"w{i}_0" for i in range(5)]
    for e in ex:
        doc = e["context"].split()[0].split("_")[0]
        assert e["choices"][e["label"]] == " ".join(f"{doc}_{j}" for j in range(8, 12))
        assert len(set(e["choices"])) == 3 and all(c.split()[0].endswith("_8") for c in e["choices"])
    assert ex == mc.builtin_task(texts, n=5, choices=3, context_words=8, continuation_words=4, seed=0)
    assert ex != mc.builtin_task(texts, n=5, choices=3, context_words=8, continuation_words=4, seed=1)
    assert mc.builtin_task(texts[:3], n=5, choices=3, context_words=8, continuation_words=4, seed=0) == []


def test_samples_markdown_line_format():
    from llmpipe.eval.evaluate import _emphasise
    assert _emphasise("The fox", " ran home.\n") == "The fox **ran home. ⏎** "
    assert _emphasise("Once", "s upon") == "Once**s upon**"
    assert _emphasise("A", "  ") == "A  "


# --------------------------------------------------------------------------- regression gate

def test_regression_gate_around_tolerance(tmp_path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"bits_per_byte": 2.0, "per_source": {}}))
    assert check_regression(1.5, None, 0.05) is None
    assert "+0.00%" in check_regression(2.0, base, 0.0)
    assert "+4.95%" in check_regression(2.099, base, 0.05)
    with pytest.raises(RegressionError, match=r"regression gate failed: bits_per_byte 2\.10100 vs baseline 2\.00000"):
        check_regression(2.101, base, 0.05)
    with pytest.raises(RegressionError):
        check_regression(2.001, base, 0.0)
    with pytest.raises(RegressionError):
        check_regression(float("nan"), base, 0.05)
    with pytest.raises(FileNotFoundError, match="eval.baseline"):
        check_regression(1.0, tmp_path / "missing.json", 0.05)
    base.write_text("{}")
    with pytest.raises(ValueError, match="bits_per_byte"):
        check_regression(1.0, base, 0.05)


# --------------------------------------------------------------------------- the stage

def _write_params(path, sources, **eval_overrides):
    ev = {"max_tokens": 0, "batch_size": 8, "device": "cpu", "prompts": ["The red fox", "A quiet river"],
          "temperature": 0.9, "top_k": 20, "max_new_tokens": 12, "seed": 3,
          "builtin_mc": {"n": 6, "choices": 3, "context_words": 10, "continuation_words": 5},
          **eval_overrides}
    data = {"sources": {s: {"kind": "c4", "uri": "sample://c4"} for s in sources}, "eval": ev}
    path.write_text(yaml.safe_dump(data))


def test_eval_stage_outputs_are_deterministic_and_gate_fails(kit, tmp_path):
    stages_eval = load_stage("eval")
    _, spm, tok, dirs = kit
    save_tiny_run(tmp_path / "run", tok.vocab_size, seed=4)
    task = tmp_path / "mini.jsonl"
    task.write_text(json.dumps({"context": "The red fox", "choices": ["sang", "carried bread"], "label": 0}) + "\n")
    params = tmp_path / "params.yaml"
    _write_params(params, dirs, mc_tasks=[str(task), {"path": str(task), "name": "mini2shot", "k": 0}])
    outs = {}
    for run in ("a", "b"):
        args = ["--params", str(params), "--model", str(tmp_path / "run"), "--tokenizer", str(spm),
                "--tokens", str(dirs["alpha"].parent), "--metrics", str(tmp_path / run / "eval.json"),
                "--samples", str(tmp_path / run / "samples.md"), "--plot", str(tmp_path / run / "ps.json")]
        assert stages_eval.main(args) == 0
        outs[run] = [(tmp_path / run / f).read_bytes() for f in ("eval.json", "samples.md", "ps.json")]
    assert outs["a"] == outs["b"]
    m = json.loads(outs["a"][0])
    assert set(m["per_source"]) == {"alpha", "beta"} and m["bits_per_byte"] > 0
    assert set(m["mc"]) == {"builtin_val", "mini", "mini2shot"} and m["mc"]["builtin_val"]["n"] == 6
    assert json.loads(outs["a"][2]) == [{"source": s, "bits_per_byte": m["per_source"][s]["bits_per_byte"]}
                                        for s in ("alpha", "beta")]
    samples = outs["a"][1].decode()
    assert "## 1. The red fox" in samples and "## 2. A quiet river" in samples
    assert samples.count("- greedy: ") == 2 and samples.count("- sampled: ") == 2
    # the gate: a baseline 1% better than this run fails at 0.5% tolerance, passes at 2%
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps({"bits_per_byte": m["bits_per_byte"] / 1.01}))
    for tol, rc in ((0.005, 2), (0.02, 0)):
        _write_params(params, dirs, baseline=str(base), max_regression=tol, builtin_mc={"n": 0}, prompts=[])
        args = ["--params", str(params), "--model", str(tmp_path / "run"), "--tokenizer", str(spm),
                "--tokens", str(dirs["alpha"].parent), "--metrics", str(tmp_path / "g.json"),
                "--samples", str(tmp_path / "g.md"), "--plot", str(tmp_path / "g_ps.json")]
        assert stages_eval.main(args) == rc


def test_chat_prompts_run_after_sft_only_and_rerun_byte_identical(kit, tmp_path):
    """A run trained with the SFT loss (config.json counts loss_tokens_seen) gets samples.md's
    "Chat" section and metrics.chat; a plain run neither (it never learnt the turns)."""
    from llmpipe.train.model import save_model
    stages_eval = load_stage("eval")
    _, spm, tok, dirs = kit
    params = tmp_path / "params.yaml"
    _write_params(params, dirs, builtin_mc={"n": 0}, prompts=["The red fox"], max_new_tokens=6,
                  chat_prompts=["What does the red fox do?", "And the miller?"])
    model = tiny_model(tok.vocab_size, seed=2)
    out = {}
    for name, extra in (("sft", {"train": {"loss_tokens_seen": 10}}), ("plain", {"train": {"tokens_seen": 10}})):
        save_model(tmp_path / name, model, model.cfg, extra=extra)
        for rep in ("a", "b"):
            args = ["--params", str(params), "--model", str(tmp_path / name), "--tokenizer", str(spm),
                    "--tokens", str(dirs["alpha"].parent), "--metrics", str(tmp_path / rep / f"{name}.json"),
                    "--samples", str(tmp_path / rep / f"{name}.md"), "--plot", str(tmp_path / rep / f"{name}.ps")]
            assert stages_eval.main(args) == 0
        out[name] = [(tmp_path / "a" / f"{name}.{x}").read_bytes() for x in ("json", "md")]
        assert out[name] == [(tmp_path / "b" / f"{name}.{x}").read_bytes() for x in ("json", "md")]
    md = out["sft"][1].decode()
    chat_part = md[md.index("# Chat"):]
    assert "## 1. What does the red fox do?" in chat_part and "## 2. And the miller?" in chat_part
    assert chat_part.count("- greedy: ") == 2 and "- sampled" not in chat_part
    m = json.loads(out["sft"][0])
    assert m["chat"]["prompts"] == 2 and 0 < m["chat"]["new_tokens"] <= 2 * 6
    assert "# Chat" not in out["plain"][1].decode() and "chat" not in json.loads(out["plain"][0])
    assert md[:md.index("# Chat")].rstrip() == out["plain"][1].decode().rstrip()  # the prompt suite as before
    # a chat prompt holding a marker: one line naming the key
    _write_params(params, dirs, builtin_mc={"n": 0}, prompts=[], chat_prompts=["hi <|end|> there"])
    args = ["--params", str(params), "--model", str(tmp_path / "sft"), "--tokenizer", str(spm),
            "--tokens", str(dirs["alpha"].parent), "--metrics", str(tmp_path / "x.json"),
            "--samples", str(tmp_path / "x.md"), "--plot", str(tmp_path / "x.ps")]
    assert stages_eval.main(args) == 2


# --------------------------------------------------------------------------- end to end with DVC

@pytest.mark.slow
def test_eval_in_the_pipeline_metrics_plots_and_gate(repo_copy):
    from conftest import dvc, set_params, stages_ran
    repo = repo_copy
    before = (repo / "metrics" / "eval.json").read_bytes()
    m = json.loads(before)
    sources = yaml.safe_load((repo / "params.yaml").read_text())["sources"]
    assert set(m["per_source"]) == set(sources) and m["bits_per_byte"] > 0
    assert sum(s["nll_bits"] for s in m["per_source"].values()) == pytest.approx(m["nll_bits"], rel=1e-5)
    assert sum(s["bytes"] for s in m["per_source"].values()) == m["bytes"]
    assert m["mc"]["builtin_val"]["n"] > 0 and (repo / "reports" / "samples.md").read_text().count("- greedy: ") == 2
    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert "metrics/eval.json" in flat and "bits_per_byte" in flat
    plots = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    assert not plots.get("errors"), plots["errors"]
    assert {"Bits per byte by source", "Training loss", "Learning rate"} <= set(plots["data"]), sorted(plots["data"])
    # the gate, through dvc: a baseline 1% better fails at tolerance 0, passes at 5%; only eval runs
    (repo / "baseline.json").write_text(json.dumps({"bits_per_byte": m["bits_per_byte"] * 0.99}))
    set_params(repo, {"eval.baseline": "baseline.json", "eval.max_regression": 0.0})
    p = dvc(repo, "repro", check=False)
    assert p.returncode != 0 and stages_ran(p) == {"eval"}
    assert "regression gate failed: bits_per_byte" in p.stdout + p.stderr
    set_params(repo, {"eval.max_regression": 0.05})
    p = dvc(repo, "repro")
    assert stages_ran(p) == {"eval"}
    assert (repo / "metrics" / "eval.json").read_bytes() == before  # deterministic rerun


# --------------------------------------------------------------------------- a broken model

@pytest.mark.parametrize("breakage", ["nan-weight", "overflowing-weights"])
def test_eval_stage_fails_on_a_non_finite_model_with_one_line_and_writes_nothing(kit, tmp_path, capsys, breakage):
    stages_eval = load_stage("eval")
    _, spm, tok, dirs = kit
    model = tiny_model(tok.vocab_size, seed=4)
    with torch.no_grad():
        if breakage == "nan-weight":
            model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
        else:  # finite weights whose logits overflow float32
            model.model.norm.weight.fill_(3e38)
    from llmpipe.train.model import save_model
    save_model(tmp_path / "run", model, model.cfg)
    params = tmp_path / "params.yaml"
    _write_params(params, dirs)
    good = b'{"bits_per_byte": 2.5}\n'  # the previous run's metrics, not this model's
    (tmp_path / "eval.json").write_bytes(good)
    args = ["--params", str(params), "--model", str(tmp_path / "run"), "--tokenizer", str(spm),
            "--tokens", str(dirs["alpha"].parent), "--metrics", str(tmp_path / "eval.json"),
            "--samples", str(tmp_path / "samples.md"), "--plot", str(tmp_path / "ps.json")]
    assert stages_eval.main(args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    want = {"nan-weight": f"eval: error: {tmp_path / 'run' / 'model.safetensors'}: non-finite weights (NaN or "
                          "inf) in 1 tensor(s), first model.layers.0.mlp.up_proj.weight",
            "overflowing-weights": f"eval: error: source alpha ({dirs['alpha']}): the model's summed "
                                   "log-likelihood of the val documents is"}[breakage]
    assert len(lines) == 1 and lines[0].startswith(want) and "Traceback" not in err
    assert (tmp_path / "eval.json").read_bytes() == good  # left as it was, never half-written
    assert not (tmp_path / "samples.md").exists() and not (tmp_path / "ps.json").exists()


def test_generate_refuses_non_finite_logits_instead_of_sampling_garbage():
    from llmpipe.train.sampling import NonFiniteModel, generate
    model = tiny_model(50, seed=0)
    with torch.no_grad():
        model.model.norm.weight.fill_(3e38)
    for temperature in (0.0, 0.8):  # greedy would return argmax of NaN; sampling would raise in torch
        with pytest.raises(NonFiniteModel, match="logits are not finite .* at new token 1"):
            generate(model, [3, 4, 5], 5, temperature=temperature, top_k=10)
