"""Faithful document boundaries: a .txt file split into documents (paragraph blocks, chunks of
lines) keeps every byte, and the tokenizer adds nothing to them, so the model trains on the
file's text plus one EOS between documents (issue 16, item 2)."""
from __future__ import annotations

import random

import pytest

from llmpipe.data.sources.readers import _line_chunks, _paragraph_blocks
from llmpipe.data.tokenizer import load
from test_sources import ingest
from test_tokenizer import train_tiny

VERSE = ("BAPTISTA:\nGentlemen, importune me no farther,\nFor how I firmly am resolved you know;\n\n"
         "GREMIO:\nTo cart her rather: she's too rough for me.\n   \n\n\n  indented line\n\t tab\n")


def random_text(seed: int, lines: int = 300) -> bytes:
    """Lines of words, blank and whitespace-only lines, runs of them, CRLF, non-ASCII."""
    rng = random.Random(seed)
    words = ["the", "king", "é", "日本", "o'er", "—", "  ", "\t", "x" * 40]
    out = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.2:
            out.append(rng.choice(["", " ", "\t ", "\r"]))
        else:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))))
    return ("\n".join(out) + rng.choice(["", "\n", "\n\n"])).encode()


@pytest.mark.parametrize("seed", range(5))
def test_paragraphs_and_chunks_tile_the_file(seed):
    data = random_text(seed)
    for blocks in (_paragraph_blocks(data, 0), _line_chunks(data, 0, 97)):
        assert b"".join(b for _, b in blocks) == data
        assert [s for s, _ in blocks] == [sum(len(b) for _, b in blocks[:k]) for k in range(len(blocks))]
    paras = _paragraph_blocks(data, 0)
    for _, b in paras[1:]:  # each block after the first starts on a non-blank line
        assert b.split(b"\n", 1)[0].strip()
    for _, b in paras[:-1]:  # ... and ends after its blank lines, where the next one starts
        assert b.endswith(b"\n")
    for _, b in _line_chunks(data, 0, 97):
        assert len(b) <= 97


def test_chunks_cut_long_lines_on_character_boundaries():
    data = ("é" * 30 + "\nshort\n").encode()  # 60 bytes of 2-byte characters on one line
    blocks = _line_chunks(data, 0, 25)
    assert b"".join(b for _, b in blocks) == data
    assert [b.decode() for _, b in blocks] == ["é" * 12, "é" * 12, "é" * 6 + "\nshort\n"]


@pytest.mark.parametrize("mode", ["paragraphs", "chunks"])
def test_ingested_documents_concatenate_to_the_file(tmp_path, mode):
    (tmp_path / "play.txt").write_bytes(b"\xef\xbb\xbf\n" + VERSE.replace("\n", "\r\n").encode() * 3)
    docs, _ = ingest(tmp_path, tmp_path / "play.txt", id_field="path", txt_mode=mode, txt_chunk_bytes=64)
    assert "".join(d["text"] for d in docs) == "\n" + VERSE * 3  # less the BOM, CRLF read as LF
    assert [d["id"] for d in docs] == [f"play.txt#{k}" for k in range(1, len(docs) + 1)]
    if mode == "paragraphs":
        assert docs[0]["text"] == "\nBAPTISTA:\nGentlemen, importune me no farther,\nFor how I firmly am resolved you know;\n\n"
        assert docs[1]["text"] == "GREMIO:\nTo cart her rather: she's too rough for me.\n   \n\n\n"
    else:
        assert all(len(d["text"].encode()) <= 64 for d in docs) and len(docs) > 3


def test_a_blank_file_makes_no_document(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "blank.txt").write_bytes(b"\n \n\t\n")
    (d / "one.txt").write_bytes(b"one\n")
    for mode in ("paragraphs", "chunks"):
        docs, rep = ingest(tmp_path, d, id_field="path", txt_mode=mode)
        assert [x["id"] for x in docs] == ["one.txt#1"] and rep["docs_in"] == 1


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load(train_tiny(tmp_path_factory.mktemp("tok")))


def test_ids_hold_the_text_and_nothing_else(tok):
    """No dummy prefix: a document's ids decode to it exactly, documents split at line ends encode
    to the ids of the whole, and a literal `</s>` in the text is text, not EOS."""
    text = (VERSE * 4).encode()
    docs = [b.decode() for _, b in _paragraph_blocks(text, 0)] + ["</s> <s> <pad> <unk>\n"]
    ids = [tok.encode(d) for d in docs]
    assert [tok.decode(i) for i in ids] == docs
    assert sum(ids, []) == tok.encode("".join(docs))
    assert all(i >= 4 for d in ids for i in d)  # never a special id (pad, unk, bos, eos)
    assert tok.piece(tok.encode("GREMIO:")[0]) == tok.piece(tok.encode("x\nGREMIO:")[2])  # no "▁" at a start
    assert tok.encode(" a")[0] == tok.sp.piece_to_id("▁a")  # a space is the text's own
