"""Accuracy on held-out strings, per configuration of the cascade, in one run.

For each protocol of ``etlnorm.cascade.heldout`` (the lexicon and the index see only the train part)
and each configuration, prints acc@1, acc@5, recall@20, coverage and the precision of the IDs
written, overall and per method. Configurations:

- ``stock``: lexical → dense retrieval (the previous default, no query analysis help beyond lexical),
- ``+fuzzy``: lexical → fuzzy (one edit) → dense retrieval,
- ``+fuzzy+chars a=X``: the same with character n-grams mixed into retrieval at weight X.

Needs an etlnorm database with the ontology loaded (``ETLNORM_DATABASE_URL``; ``etlnorm ontology
load hp --source pinned``). Each protocol's train strings are encoded once (minutes on a CPU) and
the index is reused by later runs. Example::

    python bench/bench_heldout.py --ontology hp --protocols synonym typo --alphas 0.5 0.85
"""

from __future__ import annotations

import argparse
import random
import time

from etlnorm.cascade.heldout import heldout_split
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.experiment.evaluate import evaluate


def configurations(alphas: list[float]) -> list[tuple[str, dict]]:
    configs = [("stock", {"route": ["lexical", "retrieval"], "char_tier": False}),
               ("+fuzzy", {"route": ["lexical", "fuzzy", "retrieval"], "char_tier": False})]  # fmt: skip
    configs += [(f"+fuzzy+chars a={a}", {"route": ["lexical", "fuzzy", "retrieval"], "char_tier": True,
                                          "char_alpha": a}) for a in alphas]  # fmt: skip
    return configs


def recall(answers, gold, k: int) -> float:
    hits = sum(g == a.id or any(c.id == g for c in a.candidates[:k]) for a, g in zip(answers, gold, strict=True))
    return hits / max(1, len(gold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ontology", default="hp")
    parser.add_argument("--protocols", nargs="+", default=["synonym", "concept", "layperson", "typo"])
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.5, 0.85])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, default=None, help="score a seeded sample of the queries")
    args = parser.parse_args()
    engine = ready_engine()
    base = load_settings().model_copy(update={"top_k": 20})
    for protocol in args.protocols:
        split = heldout_split(engine, args.ontology, protocol, seed=args.seed)
        test = split.test if not args.limit else random.Random(args.seed).sample(split.test, args.limit)
        queries, gold = [q for q, _ in test], [g for _, g in test]
        print(f"\n== {args.ontology} {protocol} (seed {args.seed}): {len(split.train)} train strings, "
              f"{len(test)} queries ==")  # fmt: skip
        print(f"{'configuration':<22} {'acc@1':>6} {'acc@5':>6} {'rec@20':>6} {'cover':>6} {'prec':>6} {'terms/s':>8}"
              "  per method: n acc@1")  # fmt: skip
        for name, config in configurations(args.alphas):
            route = config.pop("route")
            settings = base.model_copy(update=config)
            normalizer = Normalizer(args.ontology, engine, settings, route=route, strings=split.train)
            normalizer.index, normalizer.lexicon  # noqa: B018 - built or loaded outside the timing
            if settings.char_tier:
                normalizer.chars  # noqa: B018
            start = time.perf_counter()
            answers = normalizer.normalize(queries)
            rate = len(queries) / (time.perf_counter() - start)
            result = evaluate(answers, gold, args.ontology)
            s = result.overall
            answered = [a for a in answers if a.id is not None]
            precision = sum(a.id == g for a, g in zip(answers, gold, strict=True) if a.id) / max(1, len(answered))
            methods = ", ".join(f"{m.method} {m.rows} {m.accuracy_at_1:.3f}" for m in result.by_method)
            print(f"{name:<22} {s.accuracy_at_1:6.3f} {recall(answers, gold, 5):6.3f} {recall(answers, gold, 20):6.3f}"
                  f" {s.coverage:6.3f} {precision:6.3f} {rate:8.0f}  {methods}")  # fmt: skip


if __name__ == "__main__":
    main()
