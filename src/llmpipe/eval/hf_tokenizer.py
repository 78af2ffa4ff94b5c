"""A SentencePiece model rewritten as a Hugging Face `tokenizers` pipeline (`tokenizer.json`).

Why not let transformers convert `tokenizer.model` at load time: that needs `protobuf` on the
loading machine, and transformers 5's `LlamaTokenizer` rebuilds its own pipeline (Metaspace
pre-tokenizer) that differs from SentencePiece on leading spaces and ignores the model's
normalizer. Instead we read the model's own settings here and write a pipeline that reproduces
SentencePiece step by step; `PreTrainedTokenizerFast` loads it verbatim (transformers 4 and 5).

SentencePiece, in order (sentencepiece/src/normalizer.cc): character normalization (the
precompiled charsmap, e.g. nmt_nfkc; empty for `identity`), whitespace cleanup when
`remove_extra_whitespaces` (strip both ends, collapse runs of spaces), a dummy "▁" prefix when
`add_dummy_prefix`, spaces -> "▁". For BPE models the segmentation merges the adjacent pair whose
result has the highest score; a HF BPE whose merge ranks follow the merged piece's score does the
same. Unigram models map onto HF's Unigram model with the same scores.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError
from llmpipe.data.chat import CHAT_TEMPLATE

import base64
import json
from pathlib import Path
from typing import Any

SPACE = "\u2581"  # "▁", SentencePiece's visible space
# ModelProto.SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _proto(spm_path: str | Path):
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError as e:  # protobuf missing
        raise UserError(f"reading {spm_path} needs the `protobuf` package (pip install protobuf): {e}") from None
    m = pb.ModelProto()
    m.ParseFromString(Path(spm_path).read_bytes())
    return m


def spm_special_ids(spm_path: str | Path) -> dict[str, Any]:
    """bos/eos/unk/pad ids (None when absent) and the vocab size of a SentencePiece model."""
    m = _proto(spm_path)
    t = m.trainer_spec
    ids = {k: (v if v >= 0 else None) for k, v in
           (("bos", t.bos_id), ("eos", t.eos_id), ("unk", t.unk_id), ("pad", t.pad_id))}
    return {**ids, "vocab_size": len(m.pieces)}


def _normalizer(ns) -> dict[str, Any] | None:
    steps: list[dict[str, Any]] = []
    if ns.precompiled_charsmap:
        steps.append({"type": "Precompiled",
                      "precompiled_charsmap": base64.b64encode(ns.precompiled_charsmap).decode()})
    if ns.remove_extra_whitespaces:
        steps.append({"type": "Strip", "strip_left": True, "strip_right": True})
        steps.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
    if ns.add_dummy_prefix:
        steps.append({"type": "Prepend", "prepend": SPACE})
    steps.append({"type": "Replace", "pattern": {"String": " "}, "content": SPACE})
    return {"type": "Sequence", "normalizers": steps}


def _bpe_merges(pieces: list[tuple[str, float, int]]) -> list[list[str]]:
    """Every split (left, right) of a normal piece into two normal pieces, ranked by the merged
    piece's score (highest first), then by the split's ids: SentencePiece's merge order."""
    normal = {p: i for i, (p, _, t) in enumerate(pieces) if t == NORMAL}
    merges = []
    for piece, i in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                merges.append((-pieces[i][1], i, normal[left], normal[right], left, right))
    merges.sort()
    return [[m[4], m[5]] for m in merges]


def tokenizer_json(spm_path: str | Path) -> dict[str, Any]:
    """The `tokenizer.json` object reproducing `spm_path`'s encode and decode.

    A one-character user-defined piece (llmpipe's "\\n") stays a plain vocab entry that no merge
    involves, exactly as SentencePiece treats it: as an HF added token it would split the text
    and the dummy "▁" would be prepended again after every newline. Longer user-defined pieces
    (llmpipe's chat markers `<|user|>`, ...) are added tokens, not special: matched in text
    whatever `split_special_tokens` says, as SentencePiece matches them, and with no dummy "▁"
    (llmpipe's models have none) the text between them encodes as SentencePiece encodes it.
    """
    m = _proto(spm_path)
    pieces = [(p.piece, p.score, p.type) for p in m.pieces]
    t = m.trainer_spec
    unk = pieces[t.unk_id][0] if t.unk_id >= 0 else None
    added = [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": ty != USER_DEFINED}
             for i, (p, _, ty) in enumerate(pieces)
             if ty in (UNKNOWN, CONTROL) or (ty == USER_DEFINED and len(p) > 1)]
    if t.model_type == 2:  # BPE
        model = {"type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": bool(t.byte_fallback),
                 "ignore_merges": False, "vocab": {p: i for i, (p, _, _) in enumerate(pieces)},
                 "merges": _bpe_merges(pieces)}
    elif t.model_type == 1:  # Unigram
        # SentencePiece's lattice never uses control/unused pieces; HF's Unigram would, so their
        # scores go far below any real piece's.
        floor = min(s for _, s, _ in pieces) - 1e4
        model = {"type": "Unigram", "unk_id": t.unk_id if t.unk_id >= 0 else None,
                 "vocab": [[p, s if ty in (NORMAL, USER_DEFINED, BYTE) else floor] for p, s, ty in pieces],
                 "byte_fallback": bool(t.byte_fallback)}
    else:
        raise UserError(f"{spm_path}: SentencePiece model_type {t.model_type} is not BPE (2) or "
                         f"unigram (1); only those two export to Hugging Face")
    decoders = [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]
    if m.normalizer_spec.add_dummy_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": _normalizer(m.normalizer_spec), "pre_tokenizer": None,
            "post_processor": None, "decoder": {"type": "Sequence", "decoders": decoders},
            "model": model}


def write_hf_tokenizer(spm_path: str | Path, out_dir: str | Path, model_max_length: int) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out_dir`."""
    out_dir = Path(out_dir)
    m = _proto(spm_path)
    t = m.trainer_spec
    special = {name: m.pieces[i].piece for name, i in
               (("bos_token", t.bos_id), ("eos_token", t.eos_id), ("unk_token", t.unk_id),
                ("pad_token", t.pad_id)) if i >= 0}
    tj = tokenizer_json(spm_path)
    (out_dir / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=1) + "\n",
                                            encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
              # SentencePiece reads "</s>" in text as characters, never as the control token
              "split_special_tokens": True,
              "model_max_length": model_max_length,
              "chat_template": CHAT_TEMPLATE,  # llmpipe.data.chat: the ids SFT trained on
              "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                       for a in tj["added_tokens"]}}
    for name, obj in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        (out_dir / name).write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
