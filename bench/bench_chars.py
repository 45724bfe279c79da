"""Benchmark of the character tier (``cascade/chars.py``) against and fused with dense retrieval, on HPO.

Two query sets, each of 2,000 seeded queries with their gold ID(s):

(a) typos: the ``typo`` held-out protocol (``cascade/heldout.py``): current HPO labels, each with one
    ``variants.typo`` edit in one word; the indexes hold labels and synonyms (the "all" variant);
(b) held-out synonyms: EXACT synonyms of current terms that normalize to no label; the indexes hold
    labels only (the "labels" variant), as in ``bench_normalize.py``.

Printed: build time and query throughput of the character index for n-gram ranges (2, 4) and (3, 5)
(approximate search as shipped, and the full sparse product), chars-alone acc@1 of each; then for
the shipped range: dense alone, chars alone, RRF for a few k/weights and the learned mix
(``chars.compare``), gold-in-top-10, and char search vs dense encode+search throughput; last, the
same on both sets together, and the mix weight learned there applied to each set.

Runs against ETLNORM_DATABASE_URL or the embedded default; loads hp (pinned copy) if missing; the
dense indexes are built once under ETLNORM_HOME/indexes (minutes on a CPU) and reused.

    ETLNORM_HOME=/tmp/etlnorm-bench .venv/bin/python bench/bench_chars.py
"""

from __future__ import annotations

import logging
import os
import random
import time
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sqlalchemy import Engine, text  # noqa: E402

from etlnorm.cascade.answer import Candidate  # noqa: E402
from etlnorm.cascade.chars import NGRAM_RANGE, CharIndex, compare, fuse, learn_alpha, mix  # noqa: E402
from etlnorm.cascade.encoder import load_encoder  # noqa: E402
from etlnorm.cascade.heldout import heldout_split  # noqa: E402
from etlnorm.cascade.retrieval import current_labels, load_index, release_strings  # noqa: E402
from etlnorm.cascade.textnorm import word_key  # noqa: E402
from etlnorm.config import load_settings  # noqa: E402
from etlnorm.db.engine import ready_engine  # noqa: E402

N_QUERIES = 2_000
DEPTH = 20  # candidates per list given to fusion
RANGES = ((2, 4), (3, 5))


def ensure_hp(engine: Engine, home) -> str:
    from etlnorm.ontology.registry import read_release
    from etlnorm.ontology.store import list_ontologies, save_release

    if not list_ontologies(engine, "hp"):
        save_release(engine, read_release("hp", "pinned", home / "ontologies"))
    return list_ontologies(engine, "hp")[0].release


def timed(fn, repeat: int = 1):
    """(result, wall seconds, CPU seconds), the fastest of ``repeat`` runs: the machine may be shared."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return result, *best


def typo_queries(engine: Engine, strings: list[tuple[str, str]]) -> list[tuple[str, set[str]]]:
    """Set (a): the ``typo`` protocol's 2,000 seeded misspelt labels; its train part is the release's
    labels and synonyms, i.e. the "all" index."""
    split = heldout_split(engine, "hp", "typo", n_typos=N_QUERIES)
    if set(split.train) != set(strings):
        raise RuntimeError("the typo protocol's train strings are not the 'all' index strings")
    return [(query, {gold}) for query, gold in split.test]


def held_out_queries(engine: Engine, labels: dict[str, str | None]) -> list[tuple[str, set[str]]]:
    """Set (b): 2,000 seeded EXACT synonyms that normalize to no label; gold: the terms they belong to."""
    label_keys = {word_key(label) for label in labels.values() if label}
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.text, s.id FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
            " WHERE s.ontology = 'hp' AND s.scope = 'EXACT' AND NOT t.obsolete"
            " ORDER BY 1, 2")).all()  # fmt: skip
    gold: dict[str, set[str]] = {}
    for synonym, term_id in rows:
        gold.setdefault(synonym, set()).add(term_id)
    pool = sorted(s for s in gold if word_key(s) not in label_keys)
    return [(s, gold[s]) for s in random.Random(0).sample(pool, N_QUERIES)]


def acc1(lists: list[list[Candidate]], gold: list[set[str]]) -> float:
    return sum(1 for c, g in zip(lists, gold, strict=True) if c and c[0].id in g) / len(gold)


def in_top(lists: list[list[Candidate]], gold: list[set[str]], n: int = 10) -> float:
    return sum(1 for c, g in zip(lists, gold, strict=True) if any(x.id in g for x in c[:n])) / len(gold)


def top_ids(candidates: list[Candidate], n: int) -> list[str]:
    return [c.id for c in candidates[:n]]


def rate(n: int, wall: float, cpu: float) -> str:
    return f"{n / wall:>8,.0f} terms/s wall, {n / cpu:>8,.0f} per CPU-second ({n:,} in {wall:.2f} s)"


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    engine = ready_engine(settings)
    release = ensure_hp(engine, settings.home_dir)
    print(f"database {engine.url.render_as_string(hide_password=True)}; hp release {release}; "
          f"cpu threads available: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    labels = current_labels(engine, "hp")
    strings = {variant: release_strings(engine, "hp", variant) for variant in ("all", "labels")}
    sets = {
        "(a) typos, index labels+synonyms": ("all", typo_queries(engine, strings["all"])),
        "(b) held-out EXACT synonyms, index labels only": ("labels", held_out_queries(engine, labels)),
    }
    for name, (variant, queries) in sets.items():
        print(f"{name}: {len(queries):,} queries, {len(strings[variant]):,} index strings; "
              f"e.g. {[q for q, _ in queries[:4]]}")  # fmt: skip

    print("\n== character index alone: n-gram range, build, throughput (one process), acc@1 ==")
    chars: dict[str, list[list[Candidate]]] = {}
    for ngram_range in RANGES:
        for name, (variant, queries) in sets.items():
            texts, gold = [q for q, _ in queries], [g for _, g in queries]
            index, wall, _ = timed(partial(CharIndex.build, strings[variant], labels, ngram_range))
            _, wall_d, _ = timed(partial(index.search, texts[:8], DEPTH))  # derives its matrices
            results, wall_q, cpu_q = timed(partial(index.search, texts, DEPTH))
            _, wall_w, cpu_w = timed(partial(index.search, texts, DEPTH), repeat=3)
            exact = CharIndex(index.vectorizer, index.matrix, index.row_id, index.ids, labels, max_df=None)
            full, wall_f, cpu_f = timed(partial(exact.search, texts, DEPTH))
            same = sum(1 for a, b in zip(results, full, strict=True) if top_ids(a, 1) == top_ids(b, 1))
            same10 = sum(1 for a, b in zip(results, full, strict=True) if top_ids(a, 10) == top_ids(b, 10))
            print(f"{ngram_range} {name[:3]} build {wall:.2f} s (+ {wall_d:.2f} s on first search), "
                  f"{len(index):,} rows, {index.matrix.shape[1]:,} grams; acc@1 {acc1(results, gold):.3f} "
                  f"(full product {acc1(full, gold):.3f}; same rank 1 as full: {same / len(texts):.3f}, "
                  f"same top 10: {same10 / len(texts):.3f})")  # fmt: skip
            print(f"    search       {rate(len(texts), wall_q, cpu_q)}  first run")
            print(f"    search again {rate(len(texts), wall_w, cpu_w)}  best of 3, query words cached")
            print(f"    full product {rate(len(texts), wall_f, cpu_f)}")
            if ngram_range == NGRAM_RANGE:
                chars[name] = results

    print(f"\n== dense (MiniLM) vs chars {NGRAM_RANGE} vs fused, acc@1; {DEPTH} candidates per list ==")
    encoder = load_encoder(None)
    lists: dict[str, tuple[list[set[str]], list[list[Candidate]], list[list[Candidate]]]] = {}
    for name, (variant, queries) in sets.items():
        texts, gold = [q for q, _ in queries], [g for _, g in queries]
        dense_index = load_index(engine, "hp", encoder, settings.home_dir, variant)
        encoder.encode(texts[:8])  # warm
        dense, wall_d, cpu_d = timed(partial(search_dense, dense_index, encoder, texts))
        lists[name] = (gold, dense, chars[name])
        print(f"\n{name}")
        for method, acc in compare(gold, dense, chars[name]).items():
            print(f"    {method:<34} acc@1 {acc:.3f}")
        fused = [fuse(d, c) for d, c in zip(dense, chars[name], strict=True)]
        print(f"    gold in top 10: dense {in_top(dense, gold):.3f}, chars {in_top(chars[name], gold):.3f}, "
              f"rrf k=60 {in_top(fused, gold):.3f}")  # fmt: skip
        print(f"    dense encode+search {rate(len(texts), wall_d, cpu_d)}")

    # One combination must serve both kinds of query: learn it on the two sets together.
    gold = [one for golds, _, _ in lists.values() for one in golds]
    dense = [one for _, dense_lists, _ in lists.values() for one in dense_lists]
    both = [one for _, _, char_lists in lists.values() for one in char_lists]
    print("\n(a) + (b) together (one weight for both kinds of query)")
    for method, acc in compare(gold, dense, both).items():
        print(f"    {method:<34} acc@1 {acc:.3f}")
    alpha = learn_alpha(gold, dense, both)
    for name, (g, d, c) in lists.items():
        mixed = [mix(x, y, alpha) for x, y in zip(d, c, strict=True)]
        print(f"    mix alpha={alpha:.2f} (learned on both) on {name[:3]}: acc@1 {acc1(mixed, g):.3f}, "
              f"gold in top 10 {in_top(mixed, g):.3f}")  # fmt: skip


def search_dense(index, encoder, texts: list[str]) -> list[list[Candidate]]:
    return index.search(encoder.encode(texts), DEPTH)


if __name__ == "__main__":
    main()
