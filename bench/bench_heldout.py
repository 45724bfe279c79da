"""Accuracy on held-out strings, per configuration of the cascade, in one run.

For each protocol of ``etlnorm.cascade.heldout`` (the lexicon and the index see only the train part)
and each configuration, prints acc@1, acc@5, recall@20, coverage and the precision of the IDs
written, overall and per method, and throughput. Configurations, each tier alone and together:

- ``lexical`` / ``lexical+fuzzy``: string matches only (what they answer, they answer precisely),
- ``dense`` / ``chars``: retrieval alone, dense cosine or character n-grams (α 0),
- ``stock``: lexical → dense retrieval (no fuzzy, no characters),
- ``+fuzzy``: lexical → fuzzy (one edit) → dense retrieval,
- ``+fuzzy+chars a=X``: the same with character n-grams mixed into retrieval at weight X (the
  default route at X = 0.85),
- ``+crossencoder``: the default route then the trained reranker (``--reranker FOLDER``),
- ``+llm-rerank``: the default route then the LLM reranker (``--llm-rerank``; SmolLM2 offline).

``--encoder FOLDER`` (a fine-tuned encoder of the same split) repeats the retrieval configurations
with it, in the same run. Index build (or load) and the models' recorded training times are printed.

Needs an etlnorm database with the ontology loaded (``ETLNORM_DATABASE_URL``; ``etlnorm ontology
load hp --source pinned``). Each protocol's train strings are encoded once per encoder (minutes on a
CPU) and the index is reused by later runs. Example::

    python bench/bench_heldout.py --ontology hp --protocols synonym typo --alphas 0.5 0.85
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from etlnorm.cascade.heldout import heldout_split
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.experiment.evaluate import evaluate
from etlnorm.finetune.encoder import check_not_trained_on

DEFAULT = ["lexical", "fuzzy", "retrieval"]


def configurations(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(name, settings and route) of every configuration asked for, stock encoder first."""
    plain = [("lexical", {"route": ["lexical"]}), ("lexical+fuzzy", {"route": ["lexical", "fuzzy"]})]
    retrieval = [("dense", {"route": ["retrieval"], "char_tier": False}),
                 ("chars", {"route": ["retrieval"], "char_tier": True, "char_alpha": 0.0}),
                 ("stock", {"route": ["lexical", "retrieval"], "char_tier": False}),
                 ("+fuzzy", {"route": DEFAULT, "char_tier": False})]  # fmt: skip
    retrieval += [(f"+fuzzy+chars a={a}", {"route": DEFAULT, "char_tier": True, "char_alpha": a}) for a in args.alphas]
    if args.reranker:
        retrieval.append(("+crossencoder", {"route": [*DEFAULT, "crossencoder"], "reranker": args.reranker}))
    if args.llm_rerank:
        retrieval.append(("+llm-rerank", {"route": [*DEFAULT, "rerank"]}))
    configs = plain + retrieval
    if args.encoder:
        configs += [(f"{name} [tuned]", {**c, "encoder": args.encoder}) for name, c in retrieval]
    return configs


def trained_seconds(folder: str | None) -> str:
    for name in ("etlnorm-encoder.json", "etlnorm-reranker.json"):
        path = Path(folder or "-").expanduser() / name
        if path.is_file():
            meta = json.loads(path.read_text())
            return f"{meta.get('train_seconds')} s training on {meta.get('pairs')} pairs"
    return "not fine-tuned"


def recall(answers, gold, k: int) -> float:
    hits = sum(g == a.id or any(c.id == g for c in a.candidates[:k]) for a, g in zip(answers, gold, strict=True))
    return hits / max(1, len(gold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ontology", default="hp")
    parser.add_argument("--protocols", nargs="+", default=["synonym", "concept", "layperson", "typo"])
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.85])
    parser.add_argument("--encoder", help="a fine-tuned encoder folder of this split, compared with the stock one")
    parser.add_argument("--reranker", help="a trained reranker folder of this split (etlnorm reranker finetune)")
    parser.add_argument("--llm-rerank", action="store_true", help="also the LLM reranker (llm_* settings)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, default=None, help="score a seeded sample of the queries")
    args = parser.parse_args()
    engine = ready_engine()
    base = load_settings().model_copy(update={"top_k": 20})
    for folder in (args.encoder, args.reranker):
        if folder:
            print(f"{folder}: {trained_seconds(folder)}")
    for protocol in args.protocols:
        for folder in (args.encoder, args.reranker):  # a model trained on another split would inflate the figures
            check_not_trained_on(folder, args.ontology, protocol, args.seed)
        split = heldout_split(engine, args.ontology, protocol, seed=args.seed)
        test = split.test if not args.limit else random.Random(args.seed).sample(split.test, args.limit)
        queries, gold = [q for q, _ in test], [g for _, g in test]
        print(f"\n== {args.ontology} {protocol} (seed {args.seed}): {len(split.train)} train strings, "
              f"{len(test)} queries ==")  # fmt: skip
        print(f"{'configuration':<28} {'acc@1':>6} {'acc@5':>6} {'rec@20':>6} {'cover':>6} {'prec':>6} {'terms/s':>8}"
              "  per method: n precision")  # fmt: skip
        for name, config in configurations(args):
            config = dict(config)
            route, encoder, reranker = config.pop("route"), config.pop("encoder", None), config.pop("reranker", None)
            if encoder:
                config["encoder_models"] = {args.ontology: encoder}
            if reranker:
                config["reranker_models"] = {args.ontology: reranker}
            settings = base.model_copy(update=config)
            normalizer = Normalizer(args.ontology, engine, settings, route=route, strings=split.train)
            normalizer.lexicon  # noqa: B018 - built outside the timing
            if "retrieval" in route:
                start = time.perf_counter()
                normalizer.index  # noqa: B018
                if settings.char_tier:
                    normalizer.chars  # noqa: B018
                print(f"  ({name}: index and characters ready in {time.perf_counter() - start:.0f} s)")
            start = time.perf_counter()
            answers = normalizer.normalize(queries)
            rate = len(queries) / (time.perf_counter() - start)
            result = evaluate(answers, gold, args.ontology)
            s = result.overall
            answered = [a for a in answers if a.id is not None]
            precision = sum(a.id == g for a, g in zip(answers, gold, strict=True) if a.id) / max(1, len(answered))
            methods = ", ".join(f"{m.method} {m.rows} {m.accuracy_at_1:.3f}" for m in result.by_method)
            print(f"{name:<28} {s.accuracy_at_1:6.3f} {recall(answers, gold, 5):6.3f} {recall(answers, gold, 20):6.3f}"
                  f" {s.coverage:6.3f} {precision:6.3f} {rate:8.0f}  {methods}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
