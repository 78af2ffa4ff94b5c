"""Cleaners: exact output text and exact characters removed, per cleaner, on hand-written input."""
from __future__ import annotations

import pytest

from _cleankit import BASE
from llmpipe.data.clean import quality
from llmpipe.data.kinds.c4 import text as c4
from llmpipe.data.kinds.gutenberg import text as gutenberg
from llmpipe.data.kinds.wikipedia import text as wikipedia
from llmpipe.data.clean.pipeline import clean_text
from llmpipe.data.kinds.c4 import CleanParams as C4CleanParams
from llmpipe.data.kinds.gutenberg import CleanParams as GutenbergCleanParams
from llmpipe.data.kinds.wikipedia import CleanParams as WikipediaCleanParams
from llmpipe.params import CleanParams

GOOD = "This line is a perfectly ordinary sentence of prose."


def test_whitespace_normalises_endings_and_blank_runs():
    raw = "  First line.  \r\nSecond\x00 line.\r\n\r\n\r\n\r\nThird line.\t\n\n"
    assert quality.whitespace(raw) == "First line.\nSecond line.\n\nThird line."


@pytest.mark.parametrize("line, cleaner", [
    ("Please enable JavaScript to view the comments powered by Disqus.", "c4_javascript"),
    ("By using this site you agree to our Terms of Use and Privacy Policy.", "c4_policy"),
    ("This site uses cookies to improve your experience.", "c4_policy"),
    ("Home Products Contact", "c4_terminal_punct"),
    ("Click here now.", "c4_min_line_words"),
])
def test_c4_line_cleaners_remove_the_line_and_count_it(line, cleaner):
    text, removed = c4.clean(f"{GOOD}\n{line}\n{GOOD}", C4CleanParams())
    assert text == f"{GOOD}\n{GOOD}"
    assert removed[cleaner] == len(line) + 1
    assert sum(removed.values()) == len(line) + 1


@pytest.mark.parametrize("line", [
    # real C4 (c4-train.00000, a banking article): a 806-char paragraph of prose, not a policy line
    "Only 18 percent of credit union customers do, a disadvantage in terms of service costs.",
    "The survey ranks the tools in terms of use cases and price.",
])
def test_c4_policy_keeps_prose_saying_in_terms_of(line):
    assert c4.clean(f"{GOOD}\n{line}", C4CleanParams())[0] == f"{GOOD}\n{line}"
    assert c4.clean("Read our Terms of Service before you order.", C4CleanParams())[0] == ""


def test_c4_citation_markers_are_cut_not_lines():
    line = "The river floods every spring.[3] Farmers plant late.[citation needed]"
    text, removed = c4.clean(line + ".", C4CleanParams())
    assert text == "The river floods every spring. Farmers plant late.."
    assert removed["c4_citations"] == len("[3]") + len("[citation needed]")


def test_c4_switches_off():
    p = C4CleanParams(citations=False, javascript=False, policy=False, terminal_punct=False,
                      min_line_words=None)
    raw = "Enable JavaScript\nPrivacy policy\nShort[1]"
    assert c4.clean(raw, p) == (raw, dict.fromkeys(
        ["c4_citations", "c4_javascript", "c4_policy", "c4_terminal_punct", "c4_min_line_words"], 0))


def test_wikipedia_tables_tails_markup():
    raw = ("'''Lumbra''' is a [[village]] in the [[Tessin valley|valley]] of the Alps.<ref>Atlas, p. 4</ref>"
           " It has a church.{{citation needed}}\n"
           "{| class=\"wikitable\"\n|-\n! Year !! People\n|-\n| 1900 || 300\n|}\n"
           "== History ==\nThe village was founded in 1200.[[File:Lumbra.jpg|thumb|A view]]\n"
           "<!-- hidden note -->See the [https://example.org official site].\n"
           "== See also ==\n* [[Alps]]\n== References ==\n* Atlas of the Alps")
    text, removed = wikipedia.clean(raw, WikipediaCleanParams())
    assert text == ("Lumbra is a village in the valley of the Alps. It has a church.\n"
                    "History\nThe village was founded in 1200.\n"
                    "See the official site.\n")
    assert removed["wikipedia_tables"] == len("{| class=\"wikitable\"\n|-\n! Year !! People\n|-\n| 1900 || 300\n|}\n")
    assert removed["wikipedia_tails"] == len("== See also ==\n* [[Alps]]\n== References ==\n* Atlas of the Alps")
    assert removed["wikipedia_markup"] > 0


def test_wikipedia_plain_text_tail_heading():
    raw = "Lumbra is a village.\n\nHistory\nIt was founded in 1200.\n\nReferences\n\nAtlas of the Alps, 1990."
    assert wikipedia.strip_tails(raw) == "Lumbra is a village.\n\nHistory\nIt was founded in 1200.\n\n"


BODY = "CHAPTER I\n\nIt was a dark and quiet evening when the travellers\nreached the inn at the end of\nthe valley road."
HEADERS = [
    "The Project Gutenberg EBook of Tales, by Anon\n\nThis eBook is for the use of anyone anywhere.\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK TALES ***\n",
    "The Project Gutenberg EBook of Tales\n\n*** START OF THIS PROJECT GUTENBERG EBOOK TALES ***\n",
    "***START OF THE PROJECT GUTENBERG EBOOK TALES***\n",
    "**The Project Gutenberg Etext of Tales**\n\n**Welcome To The World of Free Plain Vanilla Electronic Texts**\n"
    "Information about the small print follows.\n"
    "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n",
    "*** START OF THIS PROJECT GUTENBERG EBOOK TALES ***\n\n\n\n\nProduced by A. Volunteer and the Online\n"
    "Distributed Proofreading Team\n",
]
FOOTERS = [
    "\n*** END OF THE PROJECT GUTENBERG EBOOK TALES ***\n\nUpdated editions will replace the previous one.",
    "\nEnd of the Project Gutenberg EBook of Tales, by Anon\n\n*** END OF THIS PROJECT GUTENBERG EBOOK TALES ***\n",
    "\nEnd of Project Gutenberg's Tales, by Anon\n",
    "\nEnd of this Project Gutenberg Etext of Tales.\n",
    "\n*** START: FULL LICENSE ***\n\nTHE FULL PROJECT GUTENBERG LICENSE\nPLEASE READ THIS BEFORE YOU DISTRIBUTE\n",
]
UNWRAPPED = ("CHAPTER I\n\nIt was a dark and quiet evening when the travellers reached the inn at the end of "
             "the valley road.")


@pytest.mark.parametrize("header", HEADERS, ids=["start_the", "start_this", "no_space", "small_print", "credits"])
@pytest.mark.parametrize("footer", FOOTERS, ids=["end_of_the", "end_of_the_ebook", "end_of_pgs", "etext", "license"])
def test_gutenberg_strips_every_marker_variant(header, footer):
    raw = header + "\n" + BODY + "\n" + footer
    text, removed = gutenberg.clean(raw, GutenbergCleanParams())
    assert text == UNWRAPPED
    assert removed["gutenberg_footer"] == len(footer) - 1  # from the marker line on
    assert removed["gutenberg_header"] + removed["gutenberg_footer"] + removed["gutenberg_unwrap"] \
        == len(raw) - len(text)


def test_gutenberg_header_marker_wrapped_over_two_lines():
    # gutenberg.org #148 (Franklin): the START line wraps before its closing stars; the title's
    # second half is part of the marker, not the body's first line
    header = ("*** START OF THIS PROJECT GUTENBERG EBOOK THE AUTOBIOGRAPHY OF BENJAMIN\n"
              "FRANKLIN ***\n")
    text, removed = gutenberg.clean(header + "\n" + BODY + "\n" + FOOTERS[0], GutenbergCleanParams())
    assert text == UNWRAPPED
    # a marker that closes on its own line never eats the next non-empty line
    closed = "*** START OF THE PROJECT GUTENBERG EBOOK TALES ***\nCHAPTER I ***\n"
    assert gutenberg.body_span(closed)[0] == closed.index("\nCHAPTER")


def test_gutenberg_without_markers_is_left_whole():
    assert gutenberg.body_span(BODY) == (0, len(BODY))
    assert gutenberg.clean(BODY, GutenbergCleanParams(unwrap=False))[0] == BODY


def test_gutenberg_empty_body_and_verse():
    raw = HEADERS[1] + FOOTERS[0]
    assert gutenberg.clean(raw, GutenbergCleanParams())[0] == ""
    verse = "  The wind is cold,\n  The night is long.\n\nA prose line\nwrapped here."
    assert gutenberg.unwrap(verse) == "The wind is cold,\nThe night is long.\n\nA prose line wrapped here."


def test_clean_text_reports_every_cleaner_of_the_kind():
    raw = HEADERS[0] + "\r\n" + BASE.replace("\n", "\r\n") + FOOTERS[0]
    text, removed = clean_text(raw, "gutenberg", CleanParams())
    assert set(removed) == {"whitespace", "gutenberg_header", "gutenberg_footer", "gutenberg_unwrap"}
    assert text == BASE
    assert sum(removed.values()) == len(raw) - len(text)
    off = CleanParams(whitespace=False, gutenberg=GutenbergCleanParams(False, False, False))
    assert clean_text(raw, "gutenberg", off) == (raw, dict.fromkeys(removed, 0))
