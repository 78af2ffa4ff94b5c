"""Chat data and SFT (issue #17, item 3): conversations are validated at ingest, stored as the one
chat template, encoded with fixed marker ids and an assistant-only loss mask that travels from
tokenize through mix to training; the HF export's `chat_template` gives the same ids."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/huggingface_hub read it
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from _evalkit import train_tokenizer
from _tokkit import tokenize, write_source_shards
from llmpipe.core.errors import UserError
from llmpipe.data import chat
from llmpipe.data.mix import build_mix
from llmpipe.data.sources.ingest import ingest_source
from llmpipe.data.tokenizer import load
from llmpipe.data.tokens import VerifyError, open_tokens, verify_dir
from llmpipe.params import SourceParams
from llmpipe.train.loader import TokenWindows
from llmpipe.train.model import ModelConfig, Transformer, doc_segments

CONV = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "The red fox watched the sky?"},
        {"role": "assistant", "content": "The old miller sang beside the door."},
        {"role": "user", "content": "And then\nwhat?"},
        {"role": "assistant", "content": " A quiet river, 123 456."}]


def user_bot(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Question {i} about the red fox?"},
            {"role": "assistant", "content": f"The old miller {i} waited for the rain."}]


@pytest.fixture(scope="module")
def spm(tmp_path_factory) -> Path:
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


# --------------------------------------------------------------------------- validation, template

@pytest.mark.parametrize("messages, reason", [
    ("hello", "messages_not_list"),
    ([], "empty_turn"),
    (["hi"], "message_not_object"),
    ([{"role": "bot", "content": "hi"}], "bad_role"),
    ([{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}], "bad_role"),
    ([{"role": "user", "content": 3}], "content_not_string"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": " \n"}], "empty_turn"),
    ([{"role": "user", "content": "a <|end|> b"}, {"role": "assistant", "content": "x"}], "reserved_token"),
    ([{"role": "user", "content": "hi"}], "no_assistant_turn"),
])
def test_check_messages_names_the_rule_and_the_message(messages, reason):
    got = chat.check_messages(messages)
    assert got is not None and got[0] == reason
    assert chat.check_messages(CONV) is None


def test_render_parse_round_trip_and_fixed_marker_ids(spm):
    text = chat.render(CONV)
    assert text.startswith("<|system|>You are terse.<|end|><|user|>")
    assert chat.parse(text) == [(m["role"], m["content"]) for m in CONV]
    with pytest.raises(ValueError):
        chat.parse("plain text")
    tok = load(spm)
    assert {k: tok.sp.piece_to_id(p) for k, p in zip(chat.CHAT_IDS, chat.CHAT_PIECES)} == chat.CHAT_IDS


def test_loss_mask_covers_exactly_the_assistant_tokens(spm):
    tok = load(spm)
    ids, mask = chat.encode(tok.sp, chat.render(CONV))
    assert len(ids) == len(mask)
    # built by hand: per turn its marker, the content's own ids, <|end|>; 1 on assistant content + end
    want_ids, want_mask = [], []
    for m in CONV:
        body = tok.sp.encode(m["content"])
        want_ids += [chat.CHAT_IDS[m["role"]], *body, chat.CHAT_IDS["end"]]
        want_mask += [0] + [int(m["role"] == "assistant")] * (len(body) + 1)
    assert ids == want_ids and mask == want_mask
    learnt = [i for i, k in zip(ids, mask) if k]
    answers = [m["content"] for m in CONV if m["role"] == "assistant"]
    assert tok.sp.decode(learnt) == "<|end|>".join(answers) + "<|end|>"
    assert sum(mask) == sum(len(tok.sp.encode(a)) + 1 for a in answers)
    # the markers are pieces of the tokenizer: encoding the whole text gives the same ids
    assert tok.sp.encode(chat.render(CONV)) == ids


def test_hf_chat_template_gives_the_same_ids(tmp_path, spm):
    transformers = pytest.importorskip("transformers")
    from llmpipe.eval.generate import chat_prompt
    from llmpipe.eval.hf_tokenizer import write_hf_tokenizer
    tok = load(spm)
    write_hf_tokenizer(spm, tmp_path, model_max_length=64)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)

    def hf_ids(messages, **kw):
        out = hf.apply_chat_template(messages, tokenize=True, **kw)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    ids, _ = chat.encode(tok.sp, chat.render(CONV))
    assert hf_ids(CONV) == ids
    assert hf.apply_chat_template(CONV, tokenize=False) == chat.render(CONV)
    # the generation prompt: `llmpipe generate --chat` = EOS + what apply_chat_template gives
    turns = CONV[:2]
    assert chat_prompt(tok.sp, turns[1]["content"], turns[0]["content"]) == \
        [tok.eos_id] + hf_ids(turns, add_generation_prompt=True)
    assert hf_ids(turns, add_generation_prompt=True)[-1] == chat.CHAT_IDS["assistant"]
    assert hf.decode(ids) == chat.render(CONV)
    with pytest.raises(UserError, match="reserved for the template"):
        chat_prompt(tok.sp, "hi <|assistant|>")


# --------------------------------------------------------------------------- ingest

def _ingest(tmp_path, rows, **kw):
    path = tmp_path / "in" / "chats.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sp = SourceParams(kind="chat", uri=str(path.parent), **kw)
    out = tmp_path / "out"
    rep = ingest_source("talk", sp, out, progress=False, jobs=1)
    rows = [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return rows, rep


def test_ingest_stores_valid_conversations_and_names_bad_ones(tmp_path):
    good = [{"messages": CONV}, {"messages": user_bot(1)}, {"messages": CONV}]  # the last: a copy
    rows, rep = _ingest(tmp_path, good)
    assert [r["text"] for r in rows] == [chat.render(CONV), chat.render(user_bot(1)), chat.render(CONV)]
    assert rep["duplicate_texts"] == 1 and rows[2]["id"] == rows[0]["id"] + "-2"  # a conversation is a document
    bad = [{"messages": user_bot(2)}, {"messages": [{"role": "robot", "content": "x"}]},
           {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
           {"messages": [{"role": "user", "content": ["x"]}]}, {"text": "no messages"}]
    with pytest.raises(UserError) as e:
        _ingest(tmp_path / "fail", bad)
    msg = str(e.value)
    assert "chats.jsonl:2: bad_role: message 1 has role 'robot'" in msg and "on_bad_record: skip" in msg
    assert "\n" not in msg
    rows, rep = _ingest(tmp_path / "skip", bad, on_bad_record="skip")
    assert len(rows) == 1 and rep["docs_in"] == 5
    assert rep["skipped_by_reason"] == {"bad_role": 1, "content_not_string": 1, "empty_turn": 1,
                                        "missing_messages_field": 1}


def test_parquet_chat_source_without_the_messages_column_names_it(tmp_path):
    import pyarrow as pa
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(pa.table({"id": ["a"], "conversation": [json.dumps(CONV)]}), src / "talk.parquet")
    sp = SourceParams(kind="chat", uri=str(src))
    with pytest.raises(UserError) as e:
        ingest_source("talk", sp, tmp_path / "out", progress=False, jobs=1)
    msg = str(e.value)
    assert "talk.parquet: missing_messages_field: no column 'messages' (columns: id, conversation); " \
           "set messages_field to the column holding each conversation's" in msg, msg
    assert "text_field" not in msg and "\n" not in msg
    pq.write_table(pa.table({"id": ["b"], "messages": [CONV]}), src / "good.parquet")
    rep = ingest_source("talk", SourceParams(kind="chat", uri=str(src), on_bad_record="skip"), tmp_path / "skip",
                        progress=False, jobs=1)
    assert rep["skipped_by_reason"] == {"missing_messages_field": 1} and rep["docs_out"] == 1


def test_chat_params_rules():
    with pytest.raises(ValueError, match="sample://chat holds conversations"):
        SourceParams(kind="c4", uri="sample://chat")
    with pytest.raises(ValueError, match="not .txt"):
        SourceParams(kind="chat", uri="data/raw/x", format="txt")


def test_sample_chat_is_valid_deterministic_and_outside_the_prose_pool():
    from llmpipe.data.sources.prose import MIN_WORDS
    from llmpipe.data.sources.sample import sample_records
    recs = sample_records("chat", 120, seed=0)
    assert recs == sample_records("chat", 120, seed=0) and recs != sample_records("chat", 120, seed=1)
    assert len(recs) == 120 and all(chat.check_messages(r["messages"]) is None for r in recs)
    dups = [r for r in recs if r.get("planted") == "exact_dup"]
    assert len(dups) == 4 and all(any(d["messages"] == r["messages"] for r in recs if "planted" not in r)
                                  for d in dups)
    # the docstrings answered are shorter than any paragraph of the prose pool: no chat text is in
    # another sample source (the pool itself takes seconds to build; test_sample checks its rules)
    answers = [[m["content"] for m in r["messages"] if m["role"] == "assistant"][0] for r in recs]
    assert all(len(a.split()) < MIN_WORDS for a in answers)


# --------------------------------------------------------------------------- tokenize, mix, loader

@pytest.fixture(scope="module")
def mixed(tmp_path_factory, spm):
    """A chat source and a plain one, tokenized and mixed half and half."""
    root = tmp_path_factory.mktemp("mix")
    convs = [CONV] + [user_bot(i) for i in range(40)]
    write_source_shards(root, "talk", [[{"id": f"t{i}", "text": chat.render(c)} for i, c in enumerate(convs)]])
    write_source_shards(root, "web", [[{"id": f"w{i}", "text": f"The red fox {i} watched the sky before dawn."}
                                       for i in range(60)]])
    dirs = {}
    for src in ("talk", "web"):
        dirs[src] = root / "tokens" / src
        tokenize(root, src, spm, chat=src == "talk", val_fraction=0.2)
    meta = build_mix(dirs, spm, root / "mix", weights={"talk": 1.0, "web": 1.0}, train_tokens=2000,
                     val_tokens=300, seed=0, on_short="repeat", tolerance=0.5, max_val_overlap=1.0)
    return root, convs, meta


def test_tokenize_writes_the_mask_beside_the_tokens(mixed, spm):
    root, convs, _ = mixed
    tok = load(spm)
    verify_dir(root / "tokens" / "talk")
    by_id = {f"t{i}": chat.encode(tok.sp, chat.render(c)) for i, c in enumerate(convs)}
    for split in ("train", "val"):
        tf = open_tokens(root / "tokens" / "talk", split)
        ids = tf.doc_table(["id"]).column("id").to_pylist()
        assert ids and tf.mask is not None and len(tf.mask) == len(tf.tokens)
        for k, doc_id in enumerate(ids):
            lo, hi = int(tf.offsets[k]), int(tf.offsets[k + 1])
            want_ids, want_mask = by_id[doc_id]
            assert tf.tokens[lo:hi].tolist() == want_ids + [tok.eos_id]
            assert np.asarray(tf.mask[lo:hi]).tolist() == want_mask + [0]
    assert open_tokens(root / "tokens" / "web", "train").mask is None  # a plain source has none


def test_a_chat_shard_that_loses_conversations_to_dedup_is_trimmed_mask_and_all(tmp_path, spm, monkeypatch):
    """Dedup dropping conversations from a chat shard: its tokens and loss mask are cut from the
    previous version (no encode), byte for byte what a fresh encode writes, both splits."""
    import shutil
    from llmpipe.data import encode
    rows = [{"id": f"t{i}", "text": chat.render(CONV if i % 7 == 0 else user_bot(i))} for i in range(70)]
    parts = [rows[:50], rows[50:]]
    kw = dict(chat=True, val_fraction=0.3)
    write_source_shards(tmp_path, "talk", parts, row_group_size=16)
    tokenize(tmp_path, "talk", spm, **kw)
    drop = np.zeros(50, np.uint8)
    drop[[0, 3, 17, 18, 41]] = 2  # near duplicates of another source's conversations
    write_source_shards(tmp_path, "talk", parts, row_group_size=16, dedup={"part-00.00000": drop})
    calls = []  # the real encoder, counted
    real = encode._encode_shard
    monkeypatch.setattr(encode, "_encode_shard", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    meta = tokenize(tmp_path, "talk", spm, **kw)
    assert (meta["shards_trimmed"], meta["shards_reused"], calls) == (1, 1, [])
    out = tmp_path / "tokens/talk"
    verify_dir(out, spm)
    fresh = tmp_path / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    assert tokenize(tmp_path, "talk", spm, fresh, **kw)["shards_reused"] == 0 and len(calls) == 2
    got, want = ({p.name: p.read_bytes() for p in sorted(d.iterdir())} for d in (out, fresh))
    assert got == want and any(n.endswith(".train.mask") for n in got)
    kept = {f"t{i}" for i in range(70)} - {f"t{i}" for i in (0, 3, 17, 18, 41)}
    tok = load(spm)
    for split in ("train", "val"):
        tf = open_tokens(out, split)
        for k, doc_id in enumerate(tf.doc_table(["id"]).column("id").to_pylist()):
            kept.discard(doc_id)
            lo, hi = int(tf.offsets[k]), int(tf.offsets[k + 1])
            assert np.asarray(tf.mask[lo:hi]).tolist() == chat.encode(tok.sp, rows[int(doc_id[1:])]["text"])[1] + [0]
    assert not kept


def test_mix_gathers_masks_and_plain_documents_train_on_every_token(mixed):
    root, _, meta = mixed
    verify_dir(root / "mix")
    tf = open_tokens(root / "mix", "train")
    sources = tf.doc_table(["source"]).column("source").to_pylist()
    assert set(sources) == {"talk", "web"}
    for k, src in enumerate(sources):
        m = np.asarray(tf.mask[int(tf.offsets[k]):int(tf.offsets[k + 1])])
        assert m.all() if src == "web" else (0 < m.sum() < len(m) and m[0] == 0 and m[-1] == 0)
    assert meta["splits"]["train"]["loss_tokens"] == int(np.asarray(tf.mask).sum())
    # a damaged mask is named by verify
    bad = root / "bad"
    import shutil
    shutil.copytree(root / "mix", bad)
    arr = np.fromfile(bad / "train.mask", dtype=np.uint8)
    arr[5] = 2
    (bad / "train.mask").chmod(0o644)
    arr.tofile(bad / "train.mask")
    with pytest.raises(VerifyError, match="train.mask: value 2"):
        verify_dir(bad)


def test_loader_ignores_targets_outside_the_mask_and_counts_a_step_exactly(mixed):
    root, _, _ = mixed
    d = root / "mix"
    w = TokenWindows(d / "train.bin", "uint16", 16, seqs_per_step=8, seed=1, mask=d / "train.mask")
    plain = TokenWindows(d / "train.bin", "uint16", 16, seqs_per_step=8, seed=1)
    mask = np.fromfile(d / "train.mask", dtype=np.uint8)
    x, y = w.micro_batch(3, 0, 0, 1, 8)
    px, py = plain.micro_batch(3, 0, 0, 1, 8)
    assert torch.equal(x, px)
    starts = w.offsets(3, 8)
    want = mask[starts[:, None] + 1 + np.arange(16)[None, :]].astype(bool)
    assert torch.equal(y >= 0, torch.from_numpy(want)) and torch.equal(y[y >= 0], py[y >= 0])
    assert w.loss_tokens(3) == int(want.sum()) and plain.loss_tokens(3) == 8 * 16
    with pytest.raises(UserError, match="mask bytes"):
        TokenWindows(d / "train.bin", "uint16", 16, 8, 1, mask=d / "val.mask")


# --------------------------------------------------------------------------- attention per document

def test_doc_mask_keeps_attention_inside_each_document():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, context=24, ffn_hidden=64)
    model = Transformer(cfg).eval()
    eos = 3
    a, b = [10, 11, 12, 13, eos], [20, 21, 22, 23, 24, 25, eos]
    x = torch.tensor([a + b])
    seg = doc_segments(x, eos)
    assert seg.tolist() == [[0] * 5 + [1] * 7]
    with torch.no_grad():
        packed, _ = model(x, segments=seg)
        alone, _ = model(torch.tensor([b]))
        other, _ = model(torch.tensor([[30, 31, 32, 33, eos] + b]), segments=seg)
        leaky, _ = model(x)
    # RoPE attention sees relative positions only: b after a, masked, is b alone
    torch.testing.assert_close(packed[0, 5:], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(other[0, 5:], packed[0, 5:], atol=1e-5, rtol=0)
    assert not torch.allclose(leaky[0, 5:], alone[0], atol=1e-3)


# --------------------------------------------------------------------------- training

def test_sft_trains_on_the_mask_and_counts_its_tokens_exactly(tmp_path):
    """The real train stage with train.sft + train.doc_mask on a hand-made mask: the tokens the loss
    counted (cost.json) are the mask's ones in every step's windows, counted from the data."""
    import yaml
    from _trainkit import make_inputs, write_params
    from test_train import stage
    root = make_inputs(tmp_path / "r")
    write_params(root, train={"tokens": 256 * 6, "sft": True, "doc_mask": True, "ckpt_every": 6,
                              "eval_every": 3, "log_every": 1, "overfit_check": False},
                 cost={"require_benchmark": False})
    mix = root / "data" / "mix"
    meta = json.loads((mix / "data_meta.json").read_text())
    p = stage(root, "train")  # no mask yet: one clear line, exit 2
    assert p.returncode == 2 and "train.sft: true, but data/mix has no loss mask" in p.stderr, p.stderr
    meta["splits"] = {}
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        n = len(np.fromfile(mix / f"{split}.bin", dtype=np.uint16))
        (rng.random(n) < 0.3).astype(np.uint8).tofile(mix / f"{split}.mask")
        meta["splits"][split] = {"files": {k: {"name": f"{split}.{k}"} for k in ("bin", "mask")}}
    (mix / "data_meta.json").write_text(json.dumps(meta))
    p = stage(root, "train")
    assert p.returncode == 0, p.stderr
    cost = json.loads((root / "runs/train/cost.json").read_text())
    tp = yaml.safe_load((root / "params.yaml").read_text())["train"]
    w = TokenWindows(mix / "train.bin", "uint16", 32, tp["batch_tokens"] // 32, tp.get("seed", 0), mask=mix / "train.mask")
    counted = sum(w.loss_tokens(s) for s in range(cost["steps"]))
    assert cost["loss_tokens_seen"] == counted and 0 < counted < cost["tokens_seen"] == 256 * 6
    assert cost["loss_token_share"] == round(counted / cost["tokens_seen"], 6)
    # step 0 (2 micro-batches of 4 windows): its loss is the mean over the step's masked-in targets,
    # whatever micro-batch they fall in, with attention inside documents: recomputed from the init
    cfg = ModelConfig(**json.loads((root / "runs/train/config.json").read_text())["model"])
    torch.manual_seed(tp.get("seed", 0))
    model = Transformer(cfg)
    x, y = w.gather(w.offsets(0, w.seqs_per_step))
    with torch.no_grad():
        _, want = model(x, targets=y, segments=doc_segments(x, 3))
    logged = (root / "runs/train/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1].split("\t")
    assert logged[0] == "1" and abs(float(logged[1]) - want.item()) < 1e-4


def test_generate_chat_prints_the_reply_up_to_end_of_turn(tmp_path, spm, capsys):
    from _evalkit import constant_logits_model
    from llmpipe.cli import main
    from llmpipe.train.model import save_model
    tok = load(spm)
    word = next(i for i in range(tok.vocab_size) if tok.piece(i).isalpha() and len(tok.piece(i)) > 2)
    fox = [word]
    args = ["generate", "--model", str(tmp_path / "run"), "--tokenizer", str(spm), "--chat", "--prompt",
            "What does the red fox do?", "--max-new-tokens", "5", "--temperature", "0", "--device", "cpu"]
    for logits, want in (({fox[0]: 5.0}, tok.piece(word) * 5 + "\n"), ({fox[0]: 5.0, chat.CHAT_IDS["end"]: 9.0}, "\n")):
        m = constant_logits_model(tok.vocab_size, logits)
        save_model(tmp_path / "run", m, m.cfg)
        assert main(args) == 0
        assert capsys.readouterr().out == want  # the reply only: no prompt, no marker


def test_eval_chat_prompts_feed_the_template_ids_and_stop_at_end_of_turn(spm):
    """eval.chat_prompts reach the model as `llmpipe generate --chat`'s ids (EOS, <|user|>, the
    message's ids, <|end|>, <|assistant|>), not as plain text; the reply stops at <|end|>."""
    from _evalkit import constant_logits_model, tiny_model
    from llmpipe.eval.evaluate import chat_markdown
    from llmpipe.eval.generate import chat_prompt
    tok = load(spm)
    prompt = "What does the red fox do?"
    model = tiny_model(tok.vocab_size)
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kw: seen.append(args[0][0].tolist()), with_kwargs=True)
    md, counts = chat_markdown(model, tok, [prompt], max_new_tokens=4)
    want = chat_prompt(tok.sp, prompt)
    assert seen[0] == want == [tok.eos_id, chat.CHAT_IDS["user"], *tok.sp.encode(prompt), chat.CHAT_IDS["end"],
                               chat.CHAT_IDS["assistant"]]
    assert seen[0] != [tok.eos_id] + tok.encode(prompt)
    assert counts["prompts"] == 1 and 1 <= counts["new_tokens"] <= 4 and f"## 1. {prompt}" in md
    word = next(i for i in range(tok.vocab_size) if tok.piece(i).isalpha() and len(tok.piece(i)) > 2)
    for logits, reply, ended in (({word: 5.0}, tok.piece(word) * 3, 0),
                                 ({word: 5.0, chat.CHAT_IDS["end"]: 9.0}, "", 1)):
        md, counts = chat_markdown(constant_logits_model(tok.vocab_size, logits), tok, [prompt], max_new_tokens=3)
        assert counts["ended"] == ended and md.splitlines()[-1] == f"- greedy: {reply}" + (" `<|end|>`" if ended else "")


# The SFT phase on the pretrained sample model with the real `dvc repro` (sample://chat beside the
# built sample, the loss on assistant tokens, the chat prompts in its eval): tests/test_phases_dvc.py.
