"""Benchmark of the normalization cascade on HPO (not a test: it prints figures).

Throughput: terms/s of the lexical tier, of the encoder alone and of the retrieval tier on 20,000
distinct strings drawn from HPO synonyms; end-to-end ``Normalizer.normalize()`` on 200,000 inputs
with 20,000 distinct (deduplication at work).

Accuracy (held-out synonyms): the retrieval index holds HPO labels only ("labels" variant) and the
lexical tier sees labels only; every EXACT synonym of a current term is a query, its gold answer
the term(s) it belongs to. Accuracy@1 of lexical alone, retrieval alone and the cascade.

Runs against ETLNORM_DATABASE_URL or the embedded default; loads hp (pinned copy) if missing.

    ETLNORM_HOME=/tmp/etlnorm-bench .venv/bin/python bench/bench_normalize.py
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sqlalchemy import Engine, text  # noqa: E402

from etlnorm.cascade.answer import Answer, WorkItem  # noqa: E402
from etlnorm.cascade.lexical import LABEL, LexicalTier, Lexicon  # noqa: E402
from etlnorm.cascade.normalizer import Normalizer  # noqa: E402
from etlnorm.cascade.retrieval import RetrievalTier, build_index, load_index  # noqa: E402
from etlnorm.cascade.textnorm import word_key  # noqa: E402
from etlnorm.config import load_settings  # noqa: E402
from etlnorm.db.engine import ready_engine  # noqa: E402

N_DISTINCT = 20_000
N_INPUTS = 200_000


def ensure_hp(engine: Engine, home) -> str:
    from etlnorm.ontology.registry import read_release
    from etlnorm.ontology.store import list_ontologies, save_release

    if not list_ontologies(engine, "hp"):
        save_release(engine, read_release("hp", "pinned", home / "ontologies"))
    return list_ontologies(engine, "hp")[0].release


def labels_only(lexicon: Lexicon) -> Lexicon:
    """The lexicon restricted to current labels: the lexical tier of the held-out protocol."""
    words = {k: kept for k, v in lexicon.words.items() if (kept := [e for e in v if e.rank == LABEL])}
    return Lexicon(words, {}, lexicon.labels, has_symbols=False)


def items(strings: list[str]) -> list[WorkItem]:
    return [WorkItem(s, s) for s in strings]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} terms/s  ({n:,} in {seconds:.1f} s)"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def accuracy(decisions: list[Answer | None], gold: list[set[str]]) -> tuple[float, float]:
    answered = [
        d for d in decisions if d is not None and d.id is not None and d.method not in ("none", "empty")
    ]
    correct = sum(1 for d, g in zip(decisions, gold, strict=True)
                  if d is not None and d.method not in ("none", "empty") and d.id in g)  # fmt: skip
    return correct / len(gold), len(answered) / len(gold)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    engine = ready_engine(settings)
    release = ensure_hp(engine, settings.home_dir)
    print(f"database {engine.url.render_as_string(hide_password=True)}; hp release {release}")
    print(f"cpu threads available: {os.cpu_count()}, torch threads: ", end="")
    import torch

    print(torch.get_num_threads())

    with engine.connect() as conn:
        sample = [r[0] for r in conn.execute(text(
            "SELECT DISTINCT s.text FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
            " WHERE s.ontology = 'hp' AND NOT t.obsolete"))]  # fmt: skip
        exact_rows = conn.execute(text(
            "SELECT s.text, s.id FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
            " WHERE s.ontology = 'hp' AND s.scope = 'EXACT' AND NOT t.obsolete ORDER BY 1, 2")).all()  # fmt: skip
    sample.sort()
    random.Random(0).shuffle(sample)
    distinct = sample[:N_DISTINCT]
    print(f"throughput set: {len(distinct):,} distinct HPO synonym strings (of {len(sample):,})")

    normalizer = Normalizer("hp", engine, settings, variant="labels")
    (lexicon, encoder), t_load = timed(lambda: (normalizer.lexicon, normalizer.encoder))
    print(f"lexicon + encoder loaded in {t_load:.1f} s ({encoder.fingerprint})")
    (folder, built), t_index = timed(lambda: build_index(engine, "hp", encoder, settings.home_dir, "labels"))
    print(f"labels-only index {'built' if built else 'already up to date'} in {t_index:.1f} s: {folder}")
    index, t_load_index = timed(lambda: load_index(engine, "hp", encoder, settings.home_dir, "labels"))
    print(f"index loaded in {t_load_index:.2f} s ({index.index.ntotal:,} vectors)")

    print("\n== throughput (one process, CPU) ==")
    lexical = LexicalTier(lexicon)
    _, t = timed(lambda: lexical(items(distinct)))
    print(f"lexical tier alone      {rate(len(distinct), t)}")
    _, t = timed(lambda: encoder.encode(distinct))
    print(f"encoder alone           {rate(len(distinct), t)}")
    retrieval = RetrievalTier(index, encoder, settings.top_k, settings.min_confidence)
    _, t = timed(lambda: retrieval(items(distinct)))
    print(f"retrieval tier alone    {rate(len(distinct), t)}  (encode + FAISS search + per-ID merge)")

    inputs = [distinct[i % len(distinct)] for i in range(N_INPUTS)]
    random.Random(1).shuffle(inputs)
    fresh = Normalizer("hp", engine, settings, variant="labels")
    fresh.lexicon, fresh.encoder  # noqa: B018  (loading is not part of the timing)
    results, t = timed(lambda: fresh.normalize(inputs))
    methods = Counter(m.method for m in results)
    print(
        f"normalize() end to end  {rate(len(inputs), t)}  ({len(set(inputs)):,} distinct; methods {dict(methods)})"
    )
    protocol = Normalizer("hp", engine, settings, variant="labels",
                          tiers=[LexicalTier(labels_only(lexicon)), retrieval])  # fmt: skip
    protocol.lexicon  # noqa: B018
    results, t = timed(lambda: protocol.normalize(inputs))
    methods = Counter(m.method for m in results)
    print(f"normalize() labels-only lexicon + retrieval  {rate(len(inputs), t)}  (methods {dict(methods)})")

    print("\n== accuracy@1, held-out EXACT synonyms vs. labels-only lexicon and index ==")
    gold_by_text: dict[str, set[str]] = {}
    for query, term_id in exact_rows:
        gold_by_text.setdefault(query, set()).add(term_id)
    queries = sorted(gold_by_text)
    gold = [gold_by_text[q] for q in queries]
    label_keys = set(labels_only(lexicon).words)
    variants = sum(1 for q in queries if word_key(q) in label_keys)
    print(f"{len(queries):,} distinct EXACT synonyms of current terms as queries "
          f"({variants:,} normalize to some label's key)")  # fmt: skip

    lex_items = items(queries)
    LexicalTier(labels_only(lexicon))(lex_items)
    acc, cov = accuracy([i.decision for i in lex_items], gold)
    print(f"lexical alone (labels)  acc@1 {acc:.3f}  coverage {cov:.3f}")

    ret_items = items(queries)
    _, t = timed(lambda: retrieval(ret_items))
    acc, cov = accuracy([i.decision for i in ret_items], gold)
    in_top5 = sum(1 for i, g in zip(ret_items, gold, strict=True) if any(c.id in g for c in i.candidates))
    top1 = sum(1 for i, g in zip(ret_items, gold, strict=True) if i.candidates and i.candidates[0].id in g)
    print(f"retrieval alone         acc@1 {acc:.3f}  coverage {cov:.3f} (min_confidence {settings.min_confidence});"
          f" top-1 ignoring threshold {top1 / len(queries):.3f}; gold in top-{settings.top_k} "
          f"{in_top5 / len(queries):.3f}  [{t:.0f} s]")  # fmt: skip

    mappings, t = timed(lambda: protocol.normalize(queries))
    acc, cov = accuracy(list(mappings), gold)
    print(f"cascade (lexical→retrieval) acc@1 {acc:.3f}  coverage {cov:.3f}  methods "
          f"{dict(Counter(m.method for m in mappings))}  [{t:.0f} s]")  # fmt: skip


if __name__ == "__main__":
    main()
