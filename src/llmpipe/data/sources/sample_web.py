"""Web-page sources of the sample corpus: c4 pages and fineweb rows (see `sample.py`)."""
from __future__ import annotations

import random
import uuid

from llmpipe.data.sources import sample_text as T
from llmpipe.data.sources.sample import (N_SHARED, Prose, counts, junk, near_dup, non_english, plant, shared_pages, upto,
                     url, web_page)

PAGE_CHARS = (400, 2200)  # prose per base page (C4's median document is ~2 KB)


def c4_pages(n: int, seed: int) -> list[dict]:
    rng, prose = random.Random(f"c4:{seed}"), Prose("c4", f"c4:{seed}")

    def rec(text: str, planted: str | None = None) -> dict:
        r = {"text": text, "url": url(rng, text.split()),
             "timestamp": f"2019-04-{rng.randint(18, 26)}T{rng.randint(0, 23):02d}:"
                          f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"}
        return {**r, "planted": planted} if planted else r

    c = counts(n)
    shared = shared_pages()[: min(N_SHARED, n // 4)]
    special = upto(1, lambda: rec(T.LOREM + "\n" + " ".join(prose.take(300)), "lorem_ipsum"))
    special += upto(c, lambda: rec(" ".join(prose.take(400)) + "\n" + T.CODE_PAGE + "\n"
                                   + " ".join(prose.take(200)), "curly_braces"))
    special += [rec(t, "non_english") for t in non_english(rng, c)]
    special += [rec(junk(rng), "junk") for _ in range(c)]
    special += [rec(t, "cross_source") for t in shared]
    n_base = max(1, n - len(special) - 2 * c)
    docs = upto(n_base, lambda: rec(web_page(prose.take(rng.randint(*PAGE_CHARS)), rng)))
    n_base = len(docs)
    extra = [(s, -1) for s in special]
    for _ in range(c if docs else 0):
        i = rng.randrange(n_base)
        extra.append(({**rec(docs[i]["text"], "exact_dup")}, i))
        j = rng.randrange(n_base)
        extra.append((rec(near_dup(docs[j]["text"], rng), "near_dup"), j))
    return plant(docs, extra, rng)[:n]


def fineweb_rows(n: int, seed: int) -> list[dict]:
    rng, prose = random.Random(f"fineweb:{seed}"), Prose("fineweb", f"fineweb:{seed}")
    dumps = ["CC-MAIN-2013-20", "CC-MAIN-2017-09", "CC-MAIN-2019-35", "CC-MAIN-2021-04", "CC-MAIN-2023-50"]

    def rec(text: str, planted: str | None = None, score: float | None = None) -> dict:
        dump = rng.choice(dumps)
        year = dump.split("-")[2]
        r = {"id": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>", "text": text,
             "url": url(rng, text.split()), "dump": dump,
             "date": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                     f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
             "file_path": f"s3://commoncrawl/crawl-data/{dump}/segments/{rng.randint(10**12, 10**13)}."
                          f"{rng.randint(1, 99)}/warc/{dump}-{rng.randint(0, 99999):05d}.warc.gz",
             "language": "en", "language_score": round(score or rng.uniform(0.8, 0.99), 4),
             "token_count": round(len(text.split()) * 1.3)}
        return {**r, "planted": planted} if planted else r

    def short_lines() -> str:
        lines = [" ".join(p.split()[:rng.randint(2, 5)]) for p in prose.take(1200)]
        return "\n".join(lines + [rng.choice(T.SHORT_LINES) for _ in range(rng.randint(5, 15))])

    def dup_lines() -> str:
        paras = prose.take(rng.randint(800, 2000))
        rep = paras[0]
        return "\n".join(paras + [rep] * rng.randint(3, 8))

    def no_punct() -> str:
        return "\n".join(p.rstrip(".!?") for p in prose.take(rng.randint(1000, 3000)))

    c = counts(n)
    shared = shared_pages()[: min(N_SHARED, n // 4)]
    special = [rec(t, "non_english", rng.uniform(0.65, 0.7)) for t in non_english(rng, c)]
    special += [rec(junk(rng), "junk") for _ in range(c)]
    special += upto(c, lambda: rec(short_lines(), "short_lines"))
    special += upto(c, lambda: rec(dup_lines(), "duplicated_lines"))
    special += upto(c, lambda: rec(no_punct(), "no_terminal_punctuation"))
    special += [rec(t if i < N_SHARED // 2 else near_dup(t, rng),
                    "cross_exact_dup" if i < N_SHARED // 2 else "cross_near_dup") for i, t in enumerate(shared)]
    n_base = max(1, n - len(special) - 2 * c)
    docs = upto(n_base, lambda: rec(web_page(prose.take(rng.randint(*PAGE_CHARS)), rng,
                                             noisy=rng.random() < 0.3)))
    n_base = len(docs)
    extra = [(s, -1) for s in special]
    for _ in range(c if docs else 0):
        i = rng.randrange(n_base)
        extra.append((rec(docs[i]["text"], "exact_dup"), i))
        j = rng.randrange(n_base)
        extra.append((rec(near_dup(docs[j]["text"], rng), "near_dup"), j))
    return plant(docs, extra, rng)[:n]
