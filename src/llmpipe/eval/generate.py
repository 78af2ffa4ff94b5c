"""`llmpipe generate`: stream a continuation of a prompt from a trained model to stdout.

`--chat` (and `--system`): the prompt is a user turn of the chat template (`llmpipe.data.chat`,
the same ids SFT trained on); the assistant's reply is printed, up to its `<|end|>`.

The sampling itself (temperature, top-k, KV cache) is `llmpipe.train.sampling`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from llmpipe.core.errors import UserError
from llmpipe.data.chat import CHAT_IDS, check_messages, prompt_ids
from llmpipe.train.device import resolve_device
from llmpipe.train.model import check_tokenizer
from llmpipe.train.sampling import check_finite, generate


class TextStreamer:
    """Prints the text of a growing id list as it grows: decodes prefix + new ids each time and
    prints the new suffix, so word-initial spaces ("▁") and multi-byte characters (byte-fallback
    pieces) come out right. Costs O(n) per token, negligible next to the model."""

    def __init__(self, sp, prefix: Sequence[int] = (), stream=None) -> None:
        self.sp, self.stream, self.ids = sp, stream or sys.stdout, list(prefix)
        self.shown = sp.decode(self.ids)

    def __call__(self, tok: int) -> None:
        self.ids.append(tok)
        text = self.sp.decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next byte
            return
        if text.startswith(self.shown):
            self.stream.write(text[len(self.shown):])
            self.stream.flush()
        self.shown = text


def chat_prompt(sp, prompt: str, system: str | None = None) -> list[int]:
    """The ids `llmpipe generate --chat` prompts with: a system turn (optional), the user turn,
    then `<|assistant|>` (`chat.prompt_ids`); UserError for a turn the template cannot hold."""
    messages = ([{"role": "system", "content": system}] if system is not None else []) + \
        [{"role": "user", "content": prompt}]
    bad = check_messages(messages + [{"role": "assistant", "content": "x"}])
    if bad is not None:
        raise UserError(f"--chat: {bad[1]}")
    return prompt_ids(sp, messages, sp.eos_id())


def cli_generate(args) -> int:
    """`llmpipe generate`: stream a continuation of --prompt to stdout."""
    import sentencepiece as spm

    from llmpipe.train.model import load_model

    if not Path(args.tokenizer).exists():
        raise FileNotFoundError(f"{args.tokenizer}: not found (did `dvc repro tokenizer` run? or pass --tokenizer)")
    if args.temperature < 0 or args.top_k < 0:
        raise UserError(f"--temperature and --top-k must be >= 0, got {args.temperature}, {args.top_k}")
    model, cfg = load_model(args.model, device=resolve_device(args.device, key="--device", mps=True))
    check_finite(model, Path(args.model) / "model.safetensors")
    check_tokenizer(args.model, args.tokenizer)
    sp = spm.SentencePieceProcessor(model_file=str(args.tokenizer))
    if sp.vocab_size() != cfg.vocab_size:
        raise UserError(f"{args.tokenizer}: vocab size {sp.vocab_size()} != the model's {cfg.vocab_size} "
                         f"({args.model}/config.json): wrong tokenizer?")
    if getattr(args, "chat", False):  # the chat template (data/chat.py): EOS, turns, <|assistant|>
        prompt_ids, stop = chat_prompt(sp, args.prompt, args.system), CHAT_IDS["end"]
    else:
        if getattr(args, "system", None) is not None:
            raise UserError("--system needs --chat")
        prompt_ids, stop = [sp.eos_id()] + sp.encode(args.prompt), sp.eos_id()
        sys.stdout.write(args.prompt)
    streamer = TextStreamer(sp, prompt_ids)
    generate(model, prompt_ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
             seed=args.seed, stop_id=stop, on_token=lambda t: t in (stop, sp.eos_id()) or streamer(t))
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0
