"""Held-out evaluation: loss, perplexity and bits per byte, overall and per source; the prompt
suite (reports/samples.md); the regression gate. Multiple choice lives in `llmpipe.eval.mc`.

Bits per byte = (summed negative log-likelihood of the documents' tokens, in bits) / (UTF-8 bytes
of the same documents' text). Unlike loss per token it does not depend on the tokenizer, so it
compares models across vocabularies (as in the Pile and GPT-3/Gopher byte-level reports).

What is scored: every token of each document, its closing EOS included (the code length of a
stream of documents needs to say where each ends), each predicted from the tokens before it in
the same document, preceded by EOS (what the model saw before every training document). A
document longer than the context is cut into consecutive windows of `context` predictions; the
first token of a window sees only its own window (no overlap: cheaper, slightly pessimistic).
Sums are float64 and exact over any partition, so per-source NLL and bytes add up to overall.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from llmpipe.core.log import get_logger
from llmpipe.train.model import Transformer

log = get_logger("evaluate")
LN2 = math.log(2.0)
DOCS_PER_CHUNK = 2048  # documents whose windows are built and scored together


@dataclass
class Tally:
    """Summed NLL (nats) over `tokens` predictions of `docs` documents holding `bytes` UTF-8 bytes."""

    nll: float = 0.0
    tokens: int = 0
    bytes: int = 0
    docs: int = 0

    def __iadd__(self, other: "Tally") -> "Tally":
        self.nll += other.nll
        self.tokens += other.tokens
        self.bytes += other.bytes
        self.docs += other.docs
        return self

    def metrics(self) -> dict:
        loss = self.nll / self.tokens if self.tokens else float("nan")
        return {"loss": loss, "perplexity": math.exp(loss) if self.tokens else float("nan"),
                "bits_per_byte": self.nll / LN2 / self.bytes if self.bytes else float("nan"),
                "nll_bits": self.nll / LN2, "tokens": self.tokens, "bytes": self.bytes, "docs": self.docs}


def doc_windows(doc: Sequence[int], start_id: int, context: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) windows of at most `context` predictions covering every token of `doc`."""
    seq = np.concatenate([[start_id], np.asarray(doc, dtype=np.int64)])
    n = len(seq) - 1  # predictions
    return [(seq[j:min(j + context, n)], seq[j + 1:j + 1 + context]) for j in range(0, n, context)]


@torch.no_grad()
def doc_nll(model: Transformer, docs: Sequence[Sequence[int]], start_id: int, batch_size: int,
            progress: bool = False) -> np.ndarray:
    """(len(docs),) float64: summed NLL in nats of each document's tokens (see module doc)."""
    device = next(model.parameters()).device
    ctx = model.cfg.context
    windows = [(d, w) for d, doc in enumerate(docs) for w in doc_windows(doc, start_id, ctx)]
    # Longest first, so each batch pads little; sorted is deterministic (stable sort on length).
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i][1][0]))
    out = np.zeros(len(docs), dtype=np.float64)
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc="eval", unit="batch", mininterval=5.0, disable=None)
    for b in batches:
        chunk = [windows[i] for i in order[b:b + batch_size]]
        T = max(len(w[0]) for _, w in chunk)
        x = torch.zeros((len(chunk), T), dtype=torch.long)
        y = torch.full((len(chunk), T), -1, dtype=torch.long)  # -1: padding, ignored
        for r, (_, (inp, tgt)) in enumerate(chunk):
            x[r, :len(inp)] = torch.from_numpy(inp)
            y[r, :len(tgt)] = torch.from_numpy(tgt)
        logits, _ = model(x.to(device))  # (B, T, V) float32
        nll = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1).to(device), ignore_index=-1,
                              reduction="none").view(y.shape)  # (B, T), 0 at padding
        per_row = nll.double().sum(dim=1).cpu().numpy()
        for r, (d, _) in enumerate(chunk):
            out[d] += per_row[r]
    return out


def select_docs(doc_ids: Sequence[str], doc_tokens: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Indices (sorted) of whole documents, taken in a seeded order keyed by document id until
    `budget` tokens are covered; budget 0 -> all. The same ids and seed give the same subset."""
    if budget <= 0 or int(doc_tokens.sum()) <= budget:
        return np.arange(len(doc_ids))
    from llmpipe.core.seeds import unit_hash
    order = sorted(range(len(doc_ids)), key=lambda i: (unit_hash(seed, doc_ids[i]), i))
    taken, total = [], 0
    for i in order:
        if total >= budget:
            break
        taken.append(i)
        total += int(doc_tokens[i])
    return np.sort(np.asarray(taken, dtype=np.int64))


def source_budget(max_tokens: int, source_tokens: int, total_tokens: int, floor: int) -> int:
    """Val tokens scored for one source: its share `max_tokens * source / total`, at least
    `floor` (a small source is not reduced to a document or two by a big one), never more than
    the source has; 0 (every document) when max_tokens is 0."""
    if max_tokens <= 0:
        return 0
    share = round(max_tokens * source_tokens / max(total_tokens, 1))
    return max(1, min(source_tokens, max(share, floor)))


def select_spans(doc_ids: Sequence[str], doc_tokens: np.ndarray, budget: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(indices sorted, tokens scored of each): `select_docs`'s documents, the last one taken (the
    one that crosses the budget) cut to what is left of it, so a source scores exactly its budget
    and one long book cannot take it several times over. Budget 0 -> every document, whole."""
    pick = select_docs(doc_ids, doc_tokens, budget, seed)
    used = doc_tokens[pick].astype(np.int64)
    if budget > 0 and used.sum() > budget:
        from llmpipe.core.seeds import unit_hash
        last = max(range(len(pick)), key=lambda k: (unit_hash(seed, doc_ids[pick[k]]), int(pick[k])))
        used[last] -= int(used.sum()) - budget
    return pick, used


def evaluate_sources(model: Transformer, token_dirs: dict[str, Path], tokenizer, *, max_tokens: int,
                     seed: int, batch_size: int, min_source_tokens: int = 0) -> dict:
    """Loss/perplexity/bits per byte of each source's val split and of all together.

    Each source gets `source_budget` tokens (its share of `max_tokens`, at least
    `min_source_tokens`): whole documents in a seeded order, the last one cut to the budget
    (`select_spans`; its bytes are then those of the decoded prefix).
    """
    from llmpipe.data.tokens import open_tokens

    files = {s: open_tokens(d, "val", tokenizer=tokenizer) for s, d in sorted(token_dirs.items())}
    total_tokens = sum(len(f.tokens) for f in files.values())
    overall, per_source = Tally(), {}
    for src, tf in files.items():
        table = tf.doc_table()
        ids = table.column("id").to_pylist()
        nbytes = table.column("utf8_bytes").to_numpy()
        lengths = np.diff(tf.offsets.astype(np.int64))
        budget = source_budget(max_tokens, len(tf.tokens), total_tokens, min_source_tokens)
        pick, used = select_spans(ids, lengths, budget, seed)
        doc_bytes = nbytes[pick].astype(np.int64)
        for k in np.flatnonzero(used < lengths[pick]).tolist():   # a cut document: its prefix's bytes
            doc_bytes[k] = len(tokenizer.decode(np.asarray(tf.doc(int(pick[k])))[: used[k]].tolist()).encode("utf-8"))
        nll = 0.0
        for lo in range(0, len(pick), DOCS_PER_CHUNK):  # bounded memory: windows of a chunk only
            docs = [np.asarray(tf.doc(int(i)))[: int(u)] for i, u in
                    zip(pick[lo:lo + DOCS_PER_CHUNK], used[lo:lo + DOCS_PER_CHUNK])]
            nll += float(doc_nll(model, docs, tokenizer.eos_id, batch_size, progress=True).sum())
        if not math.isfinite(nll):
            from llmpipe.train.sampling import NonFiniteModel
            raise NonFiniteModel(f"source {src} ({token_dirs[src]}): the model's summed log-likelihood of "
                                 f"the val documents is {nll} (its logits overflow): the model is broken; "
                                 "retrain it (`dvc repro -f train`)")
        t = Tally(nll=nll, tokens=int(used.sum()), bytes=int(doc_bytes.sum()), docs=len(pick))
        per_source[src] = t.metrics()
        overall += t
        log.info("%s: %s docs, %s tokens, bits/byte %.4f", src, f"{t.docs:,}", f"{t.tokens:,}",
                 per_source[src]["bits_per_byte"])
    return {**overall.metrics(), "per_source": per_source}


def seeded_val_texts(token_dirs: dict[str, Path], tokenizer, seed: int) -> Iterator[tuple[str, str]]:
    """(id, text) of every val document of every source, in the order of sha256(seed:id),
    decoded lazily (a consumer that needs 100 documents decodes about 100)."""
    from llmpipe.core.seeds import unit_hash
    from llmpipe.data.tokens import open_tokens

    files = {s: open_tokens(d, "val", tokenizer=tokenizer) for s, d in sorted(token_dirs.items())}
    keys = sorted((unit_hash(seed, doc_id), doc_id, src, i) for src, tf in files.items()
                  for i, doc_id in enumerate(tf.doc_table().column("id").to_pylist()))
    for _, doc_id, src, i in keys:
        yield doc_id, tokenizer.decode(files[src].doc(i))


# --------------------------------------------------------------------------- prompts and samples

def load_prompts(prompts: Iterable[str], prompts_file: Optional[str | Path]) -> list[str]:
    """Params prompts, then the file's non-empty, non-# lines."""
    out = [p for p in prompts]
    if prompts_file:
        path = Path(prompts_file)
        if not path.exists():
            raise FileNotFoundError(f"eval.prompts_file: {path} not found")
        out += [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    return out


def samples_markdown(model: Transformer, tokenizer, prompts: list[str], *, temperature: float,
                     top_k: int, max_new_tokens: int, seed: int) -> str:
    """Greedy and seeded sampled continuations of each prompt, as Markdown."""
    from llmpipe.train.sampling import generate

    eos = tokenizer.eos_id
    max_new = min(max_new_tokens, model.cfg.context - 1)
    lines = ["# Samples", "", f"Greedy, and sampled with temperature {temperature}, top-k {top_k}, "
             f"seed {seed} + prompt index; up to {max_new} new tokens, stopping at EOS.", ""]
    for i, prompt in enumerate(prompts):
        ids = [eos] + tokenizer.encode(prompt)
        lines += [f"## {i + 1}. {prompt}", ""]
        for label, temp in (("greedy", 0.0), ("sampled", temperature)):
            new = generate(model, ids, max_new, temperature=temp, top_k=top_k, seed=seed + i, stop_id=eos)
            text = tokenizer.decode(ids + new)[len(tokenizer.decode(ids)):]  # decode drops EOS/BOS/pad
            lines += [f"- {label}: {_emphasise(prompt, text)}" + (" `<eos>`" if new[-1] == eos else "")]
        lines.append("")
    return "\n".join(lines)


def chat_markdown(model: Transformer, tokenizer, prompts: list[str], *, max_new_tokens: int
                  ) -> tuple[str, dict]:
    """Greedy replies to each user message through the chat template, with the ids `llmpipe
    generate --chat` prompts with (`chat.prompt_ids`: EOS, the user turn, `<|assistant|>`), up
    to `<|end|>`: a Markdown section for samples.md and counts for the metrics."""
    from llmpipe.data import chat
    from llmpipe.train.sampling import generate

    end, eos = chat.CHAT_IDS["end"], tokenizer.eos_id
    max_new = min(max_new_tokens, model.cfg.context - 1)
    lines = ["# Chat", "", f"Greedy replies through the chat template (as `llmpipe generate --chat`), up to "
             f"{max_new} new tokens, stopping at `<|end|>`.", ""]
    ended = new_tokens = 0
    for i, prompt in enumerate(prompts):
        messages = [{"role": "user", "content": prompt}]
        bad = chat.check_messages(messages + [{"role": "assistant", "content": "x"}])
        if bad is not None:
            raise UserError(f"eval.chat_prompts[{i}]: {bad[1]}; write it without the marker")
        new = generate(model, chat.prompt_ids(tokenizer.sp, messages, eos), max_new, temperature=0.0,
                       stop_id=end)
        closed = new[-1] == end  # else it ran to max_new
        reply = tokenizer.sp.decode([t for t in new[:len(new) - closed] if t != eos])  # as generate --chat prints it
        ended += closed
        new_tokens += len(new)
        lines += [f"## {i + 1}. {prompt}", "", f"- greedy: {reply.replace(chr(10), ' ⏎ ')}"
                  + (" `<|end|>`" if closed else ""), ""]
    return "\n".join(lines), {"prompts": len(prompts), "ended": ended, "new_tokens": new_tokens}


def trained_sft(model_dir: str | Path) -> bool:
    """Whether the run's loss counted the SFT mask only (its config.json reports `loss_tokens_seen`
    exactly then): the chat prompts are for such a model."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return "loss_tokens_seen" in cfg.get("train", {})


def _emphasise(prompt: str, continuation: str) -> str:
    """One Markdown line: the prompt, then the continuation in bold (newlines shown as ⏎; the
    bold markers go inside the surrounding spaces, or Markdown would not render them)."""
    core = continuation.replace("\n", " ⏎ ")
    stripped = core.strip()
    if not stripped:
        return prompt + core
    lead = core[:len(core) - len(core.lstrip())]
    trail = core[len(core.rstrip()):]
    return f"{prompt}{lead}**{stripped}**{trail}"


# --------------------------------------------------------------------------- the eval stage

def _rounded(obj):
    """Floats to 6 decimals: stable, readable metrics files (`dvc metrics diff`)."""
    if isinstance(obj, float):
        return round(obj, 6) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def run_eval(model_dir: str | Path, tokenizer_path: str | Path, token_dirs: dict[str, Path], p, *,
             metrics_path: str | Path, samples_path: str | Path, plot_path: str | Path,
             gate: Optional[tuple[str, float, str]] = None) -> dict:
    """The `eval` stage (`p` is `EvalParams`): writes metrics, samples and the per-source plot
    file, then applies the regression gate (so a failing run still leaves its numbers to read):
    against `eval.baseline`, or for a later phase `gate` = (the previous phase's metrics file,
    its max_regression, the key that set it). A run whose final model averages checkpoints (train.average_last) is
    also scored at its last step's weights (`last_step`).
    A model with non-finite weights, log-likelihoods or logits fails (NonFiniteModel) before
    anything is written, so an existing metrics file is left as it was."""
    from llmpipe.eval import mc
    from llmpipe.core.atomic import write_json, write_text
    from llmpipe.train.device import resolve_device
    from llmpipe.train.model import check_tokenizer
    from llmpipe.train.sampling import check_finite
    from llmpipe.core.log import Timer
    from llmpipe.train.model import load_model
    from llmpipe.data.tokenizer import load as load_tokenizer

    tok = load_tokenizer(tokenizer_path)
    model, cfg = load_model(model_dir, device=resolve_device(p.device, key="eval.device", mps=True))
    check_finite(model, Path(model_dir) / "model.safetensors")
    check_tokenizer(model_dir, tokenizer_path)
    if tok.vocab_size != cfg.vocab_size:
        raise UserError(f"{tokenizer_path}: vocab {tok.vocab_size} != model vocab {cfg.vocab_size} "
                         f"({model_dir}/config.json); rerun `dvc repro train`")
    torch.manual_seed(p.seed)
    with Timer() as t:
        metrics = evaluate_sources(model, token_dirs, tok, max_tokens=p.max_tokens, seed=p.seed,
                                   batch_size=p.batch_size, min_source_tokens=p.min_source_tokens)
        last = last_step_model(model_dir, model)
        if last is not None:  # the average's unaveraged twin, on the same documents
            m = evaluate_sources(last, token_dirs, tok, max_tokens=p.max_tokens, seed=p.seed,
                                 batch_size=p.batch_size, min_source_tokens=p.min_source_tokens)
            metrics["last_step"] = {"bits_per_byte": m["bits_per_byte"], "loss": m["loss"],
                                    "per_source": {s: v["bits_per_byte"] for s, v in m["per_source"].items()}}
        if p.texts:  # held-out texts as streams, beside the per-source figures
            from llmpipe.eval.stream import score_texts
            metrics["texts"] = score_texts(model, tok, p.texts, stride=p.stride, batch_size=p.batch_size)
        tasks = {}
        if p.builtin_mc.n > 0:
            texts = seeded_val_texts(token_dirs, tok, p.seed)
            b = p.builtin_mc
            ex = mc.builtin_task(texts, n=b.n, choices=b.choices, context_words=b.context_words,
                                 continuation_words=b.continuation_words, seed=p.seed)
            if ex:
                tasks["builtin_val"] = mc.score_task(model, tok, ex, seed=p.seed)
            else:
                log.warning("builtin_mc: fewer than %d val documents with %d+ words; task skipped",
                            b.choices, b.context_words + b.continuation_words)
        for task in p.mc_tasks:
            name = task.name or Path(task.path).name.removesuffix(".jsonl")
            tasks[name] = mc.score_task(model, tok, mc.load_task(task.path), k=task.k, seed=p.seed,
                                        delimiter=task.delimiter)
        metrics["mc"] = tasks
        prompts = load_prompts(p.prompts, p.prompts_file)
        samples = samples_markdown(model, tok, prompts, temperature=p.temperature, top_k=p.top_k,
                                   max_new_tokens=p.max_new_tokens, seed=p.seed)
        if p.chat_prompts and trained_sft(model_dir):  # after SFT: the chat suite, as a user meets it
            section, metrics["chat"] = chat_markdown(model, tok, p.chat_prompts, max_new_tokens=p.max_new_tokens)
            samples += "\n" + section
    metrics = _rounded(metrics)
    write_json(metrics_path, metrics)
    write_text(samples_path, samples)
    write_json(plot_path, [{"source": s, "bits_per_byte": m["bits_per_byte"]}
                           for s, m in metrics["per_source"].items()])
    log.info("eval: %s docs, %s tokens, bits/byte %.4f, loss %.4f, %d MC task(s), %d prompts in %.1fs",
             f"{metrics['docs']:,}", f"{metrics['tokens']:,}", metrics["bits_per_byte"] or float("nan"),
             metrics["loss"] or float("nan"), len(tasks), len(prompts), t.seconds)
    baseline, limit, key = gate if gate is not None else (p.baseline, p.max_regression, "eval.max_regression")
    verdict = check_regression(metrics["bits_per_byte"] if metrics["bits_per_byte"] is not None
                               else float("nan"), baseline, limit, key=key)
    if verdict:
        log.info("regression gate passed: %s", verdict)
    return metrics


def last_step_model(model_dir: str | Path, model: Transformer) -> Optional[Transformer]:
    """The last step's weights of a run whose model.safetensors averages checkpoints (its
    config.json `train.average` names the checkpoint); None for any other run."""
    import copy

    from safetensors.torch import load_file

    avg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("train", {}).get("average")
    if not avg:
        return None
    path = Path(model_dir) / avg["last"] / f"{avg['weights']}.safetensors"
    if not path.is_file():
        raise UserError(f"{path}: not found; config.json says the model averages {avg['k']} checkpoints and "
                        "this one holds the last step's weights (rerun `dvc repro -f` the train stage)")
    last = copy.deepcopy(model)
    last.load_state_dict(load_file(str(path)))
    return last.eval()


# --------------------------------------------------------------------------- regression gate

class RegressionError(UserError, RuntimeError):
    """bits per byte got worse than the baseline by more than eval.max_regression."""


def check_regression(bits_per_byte: float, baseline: Optional[str | Path], max_regression: float,
                     key: str = "eval.max_regression") -> Optional[str]:
    """None without a baseline; else a one-line verdict, or RegressionError when over tolerance."""
    if baseline is None:
        return None
    path = Path(baseline)
    if not path.exists():
        raise FileNotFoundError(f"eval.baseline: {path} not found (a metrics file with bits_per_byte, "
                                "e.g. a saved metrics/eval.json)")
    ref = json.loads(path.read_text(encoding="utf-8")).get("bits_per_byte")
    if not isinstance(ref, (int, float)) or not ref > 0:
        raise UserError(f"eval.baseline: {path} has no positive number at key bits_per_byte")
    limit = ref * (1.0 + max_regression)
    change = bits_per_byte / ref - 1.0
    verdict = (f"bits_per_byte {bits_per_byte:.5f} vs baseline {ref:.5f} ({path}): {change:+.2%}, "
               f"allowed up to {limit:.5f} ({key} {max_regression:.2%})")
    if not bits_per_byte <= limit:  # also catches NaN
        raise RegressionError(f"regression gate failed: {verdict}")
    return verdict
