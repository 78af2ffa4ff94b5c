"""The three-phase plan of README "Phases" with the real `dvc repro` on the session's built sample
repo plus `sample://chat`: the base phase (pretraining, chat weight 0), `anneal` (other weights,
a decaying LR) and `sft` (the chat source alone, the loss on assistant tokens). Exactly the new
stages run and never the base train; each phase starts from the model the phase before promoted;
the SFT loss counts exactly the assistant tokens of its data; the token counts and the curves
continue across phases; the SFT eval answers the chat prompts; each stage reads exactly the
params it declares and opens only files it declares; an anneal edit reruns the anneal and the
SFT phase after it, nothing else; a phase whose eval regresses stops the plan."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import BIN, declared_params, dvc, run, set_params, stages_ran

pytestmark = pytest.mark.slow

SOURCES = ("c4", "wikipedia", "gutenberg", "fineweb")
CHAT = {"kind": "chat", "uri": "sample://chat", "id_field": "id", "sample_docs": 200}


def weights(**w: float) -> dict[str, float]:
    return {s: w.get(s, 0) for s in (*SOURCES, "chat")}


PLAN = {
    "anneal": {"after": "train", "eval": {},
               "data": {"weights": weights(wikipedia=0.5, gutenberg=0.5), "train_tokens": 60000, "val_tokens": 10000},
               "train": {"tokens": 2048, "schedule": "decay"}},
    "sft": {"after": "anneal", "eval": {"max_regression": 10.0},  # bits per byte of web text: SFT may lose some
            "data": {"weights": weights(chat=1), "train_tokens": 60000},
            "train": {"tokens": 4096, "lr": 0.001, "batch_tokens": 512, "init": "weights", "sft": True,
                      "average_last": 2}},
}
PHASE_STAGES = {f"{s}_phase@{p}" for s in ("mix", "train", "eval") for p in PLAN}


def tsv_steps(repo, run_name: str) -> list[int]:
    head, *rows = (repo / f"runs/{run_name}/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    i = head.split("\t").index("step")
    return [int(r.split("\t")[i]) for r in rows]


def status(repo) -> set[str]:
    """The stages `dvc status` lists once stage `params` has cut the edited params.yaml into its
    files (before that, a params edit shows as `params` alone: README "The pipeline")."""
    dvc(repo, "repro", "params")
    return set(json.loads(dvc(repo, "status", "--json").stdout or "{}"))


def read(repo, path: str):
    return json.loads((repo / path).read_text())


def test_pretrain_anneal_sft_plan_reruns_only_the_phase_that_changed(repo_copy, tmp_path):
    repo = repo_copy
    tokenizer, base = ((repo / p).read_bytes() for p in ("artifacts/tokenizer/spm.model", "runs/train/model.safetensors"))
    # fewer val tokens per eval (this test runs seven): the base eval reruns for that, once
    set_params(repo, {"sources.chat": CHAT, "tokenizer.sample_weights": {**{s: 1 for s in SOURCES}, "chat": 0},
                      "mix.weights": {**yaml.safe_load((repo / "params.yaml").read_text())["mix"]["weights"], "chat": 0},
                      "phases": PLAN, "eval.max_tokens": 6000, "eval.min_source_tokens": 1000})
    audit = tmp_path / "audit"
    ran = stages_ran(dvc(repo, "repro", env={"LLMPIPE_AUDIT_DIR": str(audit)}))
    assert PHASE_STAGES | {"ingest@chat", "tokenize@chat", "eval"} <= ran, ran
    # the chat source, weight 0 in pretraining, keeps the tokenizer, every other token file and the
    # base model (train reruns: data_meta.json records mix.weights, now with `chat: 0`)
    assert not ran & {"bench", *(f"tokenize@{s}" for s in SOURCES)}, ran
    assert (repo / "artifacts/tokenizer/spm.model").read_bytes() == tokenizer
    assert (repo / "runs/train/model.safetensors").read_bytes() == base

    # each phase starts from the model its predecessor's eval promoted
    for name, after in (("anneal", "train"), ("sft", "anneal")):
        promoted = read(repo, f"runs/{after}/promotion.json")["model_sha256"]
        first = sorted((repo / f"runs/{name}/ckpt").glob("step_*"))[0]
        assert json.loads((first / "meta.json").read_text())["fingerprint_parts"]["init"]["model_sha256"] == promoted
        assert read(repo, f"runs/{name}/config.json")["train"]["phase"] == name
    # one curve over the global step: base 8 steps, anneal 2, sft 8 (log_every 2)
    assert tsv_steps(repo, "anneal") == list(range(2, 11, 2)) and tsv_steps(repo, "sft") == list(range(2, 19, 2))
    # counted tokens across the plan
    cost = {r: read(repo, f"runs/{r}/cost.json") for r in ("train", "anneal", "sft")}
    assert [c["tokens_seen"] for c in cost.values()] == [8192, 2048, 4096]
    assert [c["cumulative_tokens"] for c in cost.values()] == [8192, 8192 + 2048, 8192 + 2048 + 4096]
    assert [c["tokens_before"] for c in cost.values()] == [0, 8192, 8192 + 2048]
    assert cost["sft"]["sequences"] == 4096 // 64 and cost["sft"]["padding_tokens"] == 0
    assert cost["sft"]["plan"]["plan_tokens_so_far"] == 14336 and cost["sft"]["plan"]["chinchilla_tokens"] > 0
    assert "share_c4" not in read(repo, "reports/phases/anneal/mix.json")  # weight 0: left out
    check_sft_counts(repo, cost["sft"])
    # eval: both ways for the averaged SFT model; the chat prompts after SFT only
    ev = {r: read(repo, p) for r, p in (("train", "metrics/eval.json"), ("anneal", "metrics/phases/anneal.json"),
                                         ("sft", "metrics/phases/sft.json"))}
    assert ev["sft"]["bits_per_byte"] > 0 and ev["sft"]["last_step"]["bits_per_byte"] != ev["sft"]["bits_per_byte"]
    assert read(repo, "runs/sft/config.json")["train"]["average"]["steps"] == [4, 8]
    assert ev["sft"]["chat"]["prompts"] == 3 and "chat" not in ev["anneal"] and "chat" not in ev["train"]
    samples = (repo / "reports/phases/sft/samples.md").read_text()
    assert "# Chat" in samples and "## 1. What does `os.getcwd()` do?" in samples
    assert "# Chat" not in (repo / "reports/phases/anneal/samples.md").read_text()
    for r in ("train", "anneal"):
        assert read(repo, f"runs/{r}/gate.json")["bits_per_byte"] == ev[r]["bits_per_byte"]
    check_audit(repo, audit)
    check_opened_files_are_deps(repo, tmp_path)
    p = run([str(BIN / "llmpipe"), "generate", "--chat", "--model", "runs/sft", "--prompt",
             "What does `os.getcwd()` do?", "--max-new-tokens", "8", "--temperature", "0"], cwd=repo)
    assert p.stdout.strip() and "<|" not in p.stdout

    # the anneal's weights: its three stages and the SFT phase's train and eval, never the base
    set_params(repo, {"phases.anneal.data.weights": weights(wikipedia=0.7, gutenberg=0.3)})
    assert status(repo) == {"mix_phase@anneal"}  # what changed; repro then follows its outputs
    assert stages_ran(dvc(repo, "repro")) == {"mix_phase@anneal", "train_phase@anneal", "eval_phase@anneal",
                                              "train_phase@sft", "eval_phase@sft"}
    # the SFT phase's learning rate changes its train stage only (and so its eval, after it);
    # set back, nothing is to do (the lr rerun itself was in this test's polish version: +25 s)
    set_params(repo, {"phases.sft.train.lr": 0.002})
    assert status(repo) == {"train_phase@sft"}
    set_params(repo, {"phases.sft.train.lr": PLAN["sft"]["train"]["lr"]})

    # a regression beyond the phase's limit stops the plan: no promotion, sft does not train
    set_params(repo, {"phases.anneal.train.lr": 0.5, "phases.anneal.train.schedule": "constant",
                      "phases.anneal.train.init": "weights", "phases.anneal.eval.max_regression": 0.0})
    p = dvc(repo, "repro", check=False)
    assert p.returncode != 0 and "regression gate failed" in p.stderr, p.stderr[-3000:]
    assert "vs baseline" in p.stderr and "(phases.anneal.eval.max_regression 0.00%)" in p.stderr
    assert "runs/train/gate.json" in p.stderr
    assert "train_phase@anneal" in stages_ran(p) and "train_phase@sft" not in stages_ran(p)
    assert not (repo / "runs/anneal/promotion.json").exists()


def check_sft_counts(repo, cost: dict) -> None:
    """The SFT phase's loss counted exactly the assistant tokens of its data: the mix's mask is 1
    on exactly the tokens of assistant turns (read off the token ids: after <|assistant|>, up
    to and with its <|end|>), and the tokens counted are those in the targets of every step."""
    from llmpipe.data.chat import CHAT_IDS
    from llmpipe.train.loader import TokenWindows
    d = repo / "data/phases/sft"
    meta = read(repo, "data/phases/sft/data_meta.json")
    ids = np.fromfile(d / "train.bin", dtype=meta["dtype"])
    mask = np.fromfile(d / "train.mask", dtype=np.uint8)
    assistant = np.zeros(len(ids), np.uint8)  # 1 from the token after <|assistant|> through its <|end|>
    inside, others = False, {CHAT_IDS["system"], CHAT_IDS["user"], CHAT_IDS["assistant"], meta["eos_id"]}
    for k, t in enumerate(ids.tolist()):
        assert not (inside and t in others), k  # an assistant turn closes with <|end|> only
        assistant[k] = inside
        inside = t == CHAT_IDS["assistant"] or (inside and t != CHAT_IDS["end"])
    assert 0 < assistant.sum() < len(ids) and np.array_equal(mask, assistant)
    assert meta["splits"]["train"]["loss_tokens"] == int(assistant.sum())
    tp = yaml.safe_load((repo / "params.yaml").read_text())
    ctx, batch = tp["model"]["context"], tp["phases"]["sft"]["train"]["batch_tokens"]
    w = TokenWindows(d / "train.bin", meta["dtype"], ctx, batch // ctx, tp["train"].get("seed", 0), mask=d / "train.mask")
    counted = sum(w.loss_tokens(s) for s in range(cost["steps"]))
    assert cost["loss_tokens_seen"] == counted and 0 < counted < cost["tokens_seen"] == 4096
    assert read(repo, "runs/sft/config.json")["train"]["loss_tokens_seen"] == counted


def check_audit(repo, audit) -> None:
    """The phase stages read exactly the params they declare (tests/test_pipeline_contract.py's
    rule, for the stages the session's default pipeline does not have)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    recs = {tuple(r["argv"][1:]): set(r["params"]) for r in map(json.loads, (p.read_text() for p in audit.glob("*.json")))}
    for name in PHASE_STAGES:
        argv = tuple(lock[name]["cmd"].split()[3:])
        read_keys = {k for k in recs[argv] if not k.endswith("[]") and not k.startswith("exec.")}
        declared = set(declared_params(lock[name]))
        assert all(any(k == d or k.startswith(d + ".") for d in declared) for k in read_keys), (name, read_keys, declared)
        assert all(any(k == d or k.startswith(d + ".") for k in read_keys) for d in declared), (name, read_keys, declared)


# Runs a stage module with a Python audit hook that records every file opened for reading and
# every folder listed (Python-level opens: json, numpy memmaps, pathlib; not files that C++/Rust
# libraries open themselves, such as SentencePiece's model or safetensors).
OPEN_HOOK = textwrap.dedent("""
    import json, os, runpy, sys
    out, module, *args = sys.argv[1:]
    seen = set()
    def hook(event, a):
        if event == "open" and isinstance(a[0], (str, os.PathLike)):
            mode, flags = a[1], a[2]
            ro = (not any(c in mode for c in "wax+")) if isinstance(mode, str) else (flags & os.O_ACCMODE) == os.O_RDONLY
            if ro:
                seen.add(os.path.abspath(a[0]))
        elif event in ("os.listdir", "os.scandir") and isinstance(a[0], (str, os.PathLike)):
            seen.add(os.path.abspath(a[0]))
    sys.addaudithook(hook)
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        open(out, "w").write(json.dumps(sorted(seen)))
""")


def check_opened_files_are_deps(repo, tmp_path) -> None:
    """Each phase eval, rerun as DVC runs it, reads only its declared deps (the file the gate
    compares with included), and writes the same bytes again (its outputs stay up to date)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    root = repo.resolve()
    for name in ("eval_phase@sft",):  # the gate against runs/anneal/gate.json; the chat prompts
        deps = [d["path"] for d in lock[name]["deps"]]
        outs = [repo / o["path"] for o in lock[name]["outs"]]
        before = [p.read_bytes() for p in outs]
        _, module, *args = lock[name]["cmd"].split()
        assert module == "-m"
        log = tmp_path / f"{name}.opened.json"
        run([str(BIN / "python"), "-c", OPEN_HOOK, str(log), *args], cwd=repo)
        opened = set()
        for p in json.loads(log.read_text()):
            try:
                opened.add(str(Path(p).resolve().relative_to(root)))
            except ValueError:
                continue  # outside the repo: the venv, the stdlib
        # not data: the code (DVC hashes it as code deps), params; the outputs, their temps
        # (`.NAME.tmp-PID`) and their folders (synced after the rename: core/atomic.py)
        written = {str(o.relative_to(repo)) for o in outs}
        written |= {str(Path(o).parent / f".{Path(o).name}.tmp-") for o in written} | \
            {str(p) for o in written for p in Path(o).parents}
        opened = {p for p in opened if p not in ("params.yaml", "src", "stages") and not p.startswith(("src/", "stages/"))
                  and not any(p == w or (w.endswith(".tmp-") and p.startswith(w)) for w in written)}
        # a dep on data/manifests/STAGE covers data/STAGE/SRC/...: each copy there is that folder's
        # manifest, which lists every file's size and sha256 (docs/ARCHITECTURE.md)
        deps += [f"data/{d[len('data/manifests/'):]}" for d in deps if d.startswith("data/manifests/")]
        undeclared = {p for p in opened if not any(p == d or p.startswith(d.rstrip("/") + "/") for d in deps)}
        assert not undeclared, (name, undeclared)
        assert any(p.endswith("gate.json") for p in opened), (name, opened)  # the gate's reference was read
        assert [p.read_bytes() for p in outs] == before, name
