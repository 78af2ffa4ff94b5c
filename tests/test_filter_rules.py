"""One test per filter rule: a hand-written document it must drop (exact reason asserted) and one
it must keep (BASE, hand-written prose) under the same params. Runs the real cleaners, signals
and threshold engine on each document."""
from __future__ import annotations

import dataclasses

import pytest

from _cleankit import BASE, filter_params, only_repetition, reason, synthetic_words
from llmpipe.params import FilterParams

SENTS = [s.strip() + "." for s in BASE.replace("\n", " ").split(".") if s.strip()]
PARAS = BASE.split("\n\n")
WORDS = BASE.split()
SYN = synthetic_words(400)


def lines(items, sep="\n"):
    return sep.join(items)


GERMAN = ("Der alte Leuchtturm stand mehr als hundert Jahre lang am Rand des Hafens. Seeleute "
          "vertrauten seinem Licht in Winternächten, wenn Nebel vom offenen Meer hereinzog und "
          "die Felsen darunter verborgen waren. Ein Wärter wohnte mit seiner Familie in dem "
          "kleinen Haus daneben und stieg jeden Abend die Wendeltreppe hinauf, um die Lampe "
          "anzuzünden. Als der Stadtrat beschloss, das Licht zu automatisieren, waren viele "
          "Bewohner unglücklich. Heute besuchen Schulklassen das kleine Museum das ganze Jahr.")
# English with no Gopher stop word (the, be, to, of, and, that, have, with).
NO_GOPHER = ("Our village sits beside a quiet river. In spring we walk along its banks, watching "
             "birds build nests in tall reeds. My grandmother knows every path here; she grew up "
             "in this valley many years ago. Each morning she brews strong tea, then tells us "
             "stories about floods, harvests, dances, weddings, winters so cold rivers froze "
             "solid. Her memory is sharp, her voice is warm, her laugh fills our kitchen. When "
             "guests arrive, she bakes bread in an old stone oven behind our house.")
REPEAT = "a passage repeated several times over in this document keeps coming back again here"

# (kind, params overrides, document to drop, expected reason). `kind_off` switches off the
# kind's own rules so a global rule is the first that can fail.
GLOBAL = dict(kind="fineweb", kind_off="fineweb")
CASES = [
    # ---- global: length
    (GLOBAL, {}, "A short note that says very little.", "global_min_chars"),
    (GLOBAL, {"global__max_chars": 1100}, BASE + "\n\n" + NO_GOPHER, "global_max_chars"),
    (GLOBAL, {}, " ".join(WORDS[:45]), "global_min_words"),
    (GLOBAL, {"global__max_words": 200}, BASE + "\n\n" + NO_GOPHER, "global_max_words"),
    # ---- global: Gopher quality
    (GLOBAL, {}, " ".join(["it is so", "we go on", "by an ox", "do as i do", "at my spot"] * 15),
     "global_min_mean_word_length"),
    (GLOBAL, {}, " ".join(w * 3 for w in SYN[:60]) + " the of and to", "global_max_mean_word_length"),
    (GLOBAL, {}, BASE + " #news" * 20, "global_max_symbol_ratio"),
    (GLOBAL, {}, lines("- " + s for s in SENTS), "global_max_bullet_line_ratio"),
    (GLOBAL, {}, lines(s[:-1] + "..." for s in SENTS), "global_max_ellipsis_line_ratio"),
    (GLOBAL, {}, BASE + " " + " ".join(str(1000 + i) for i in range(60)), "global_min_alpha_word_ratio"),
    # ---- global: web heuristics
    (GLOBAL, {}, BASE + " " + " ".join(f"x{i:09d}" for i in range(100)), "global_min_alpha_ratio"),
    (GLOBAL, {}, BASE + "\n" + "=" * 200, "global_max_repeated_char_ratio"),
    (GLOBAL, {"global__max_short_line_ratio": 0.5},
     lines(" ".join(WORDS[i:i + 3]) for i in range(0, len(WORDS), 3)), "global_max_short_line_ratio"),
    (GLOBAL, {}, lines(PARAS + ["All rights reserved."] * 2 + ["Privacy policy and terms of use."]),
     "global_max_boilerplate_line_ratio"),
    # ---- global: English
    (GLOBAL, {}, GERMAN, "global_min_stopword_ratio"),
    (GLOBAL, {}, NO_GOPHER, "global_min_gopher_stopwords"),
    # ---- global: Gopher repetition, each rule alone
    (GLOBAL, only_repetition("max_dup_line_ratio"),
     lines(SENTS[:6] + ["Yes indeed."] * 5), "global_max_dup_line_ratio"),
    (GLOBAL, only_repetition("max_dup_para_ratio"),
     lines(PARAS + ["Yes indeed."] * 3, "\n\n"), "global_max_dup_para_ratio"),
    (GLOBAL, only_repetition("max_dup_line_char_ratio"),
     lines(SENTS[:3] + [PARAS[1]] * 2), "global_max_dup_line_char_ratio"),
    (GLOBAL, only_repetition("max_dup_para_char_ratio"),
     lines([PARAS[0], PARAS[1], PARAS[1]], "\n\n"), "global_max_dup_para_char_ratio"),
    *[(GLOBAL, only_repetition(f"max_top_{n}gram_ratio"),
       BASE + " " + " ".join(" ".join(SYN[:n]) + f" {w}" for w in SYN[100:160]), f"global_max_top_{n}gram_ratio")
      for n in (2, 3, 4)],
    *[(GLOBAL, only_repetition(f"max_dup_{n}gram_ratio"), BASE + (" " + REPEAT) * 4,
       f"global_max_dup_{n}gram_ratio") for n in range(5, 11)],
    # ---- C4
    (dict(kind="c4"), {}, BASE + " Lorem ipsum dolor sit amet.", "c4_max_lorem_ipsum_count"),
    (dict(kind="c4"), {}, BASE + " Call it as function() { return 1; }.", "c4_max_curly_brace_count"),
    (dict(kind="c4"), {}, " ".join(WORDS[:60]).replace(".", ",") + " and so on. " + " ".join(WORDS[60:120])
     .replace(".", ",") + ".", "c4_min_sentence_count"),
    (dict(kind="c4"), {}, BASE + " Codes: " + " ".join(str(10**9 + 123457 * i) for i in range(40)) + ".",
     "c4_min_alpha_ratio"),
    (dict(kind="c4"), {}, BASE.replace(" ", " - "), "c4_max_punct_ratio"),
    (dict(kind="c4"), {}, lines(["Home", "About us", "Contact", "Shop | Blog | News | Events"] + PARAS),
     "c4_max_nav_line_ratio"),
    (dict(kind="c4"), {"c4__min_long_paragraph_count": 1}, lines(SENTS), "c4_min_long_paragraph_count"),
    (dict(kind="c4"), {"c4__max_bad_word_count": 0}, BASE + " Buy cheap viagra online today.",
     "c4_max_bad_word_count"),
    # ---- Wikipedia
    (dict(kind="wikipedia"), {}, "Lumbra is a village in the north of the valley. It has a church.",
     "wikipedia_min_words"),
    (dict(kind="wikipedia"), {}, "Mercury may refer to the following.\n\n" + lines(
        f"{SYN[i].title()} {SYN[i + 1]}, a river in {SYN[i + 2].title()} county" for i in range(0, 60, 3)),
     "wikipedia_max_list_line_ratio"),
    # ---- Gutenberg
    (dict(kind="gutenberg"), {},
     "The Project Gutenberg EBook of Nothing\n\n*** START OF THIS PROJECT GUTENBERG EBOOK NOTHING ***\n\n"
     "*** END OF THIS PROJECT GUTENBERG EBOOK NOTHING ***\n\n" + BASE, "gutenberg_min_body_chars"),
    # ---- FineWeb
    (dict(kind="fineweb"), {}, lines(s.rstrip(".") for s in SENTS), "fineweb_min_terminal_punct_line_ratio"),
    (dict(kind="fineweb"), {}, lines(f"{SYN[i]} {SYN[i + 1]} is here." for i in range(0, 120, 2)),
     "fineweb_max_short_line_ratio"),
    (dict(kind="fineweb"), {}, lines(PARAS + [SENTS[0] + " " + SENTS[1]] * 2), "fineweb_max_dup_line_char_ratio"),
    (dict(kind="fineweb"), {}, lines(f"{w}{w} {SYN[i + 1] * 2} {SYN[i + 2] * 2}." for i, w in
                                     enumerate(SYN[:150:3])), "fineweb_max_newline_word_ratio"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[3] for c in CASES])
def test_rule_drops_and_keeps(case):
    where, overrides, doc, expected = case
    fp = filter_params(where.get("kind_off"), **overrides)
    assert reason(doc, where["kind"], fp) == expected
    assert reason(BASE, where["kind"], fp) is None  # the same rules keep good prose


def test_every_rule_has_a_case():
    """Each threshold field of FilterParams appears as an expected reason above."""
    fp = FilterParams()
    fields = {("global" if sec == "global_" else sec) + "_" + f.name
              for sec in ("global_", "c4", "wikipedia", "gutenberg", "fineweb")
              for f in dataclasses.fields(getattr(fp, sec)) if f.name.startswith(("min_", "max_"))}
    # the two rules over quality@SRC's stored signals (not computed from a document's text) have
    # their cases in tests/test_quality_model.py
    external = {"global_min_quality_score", "global_max_eval_ngrams"}
    assert external <= fields
    assert fields - external == {c[3] for c in CASES}
