"""Score candidate routes on the same held-out queries, in one run, and pick one.

Each route runs raw and non-abstaining (``min_confidence`` 0, no calibration) over the split's train
part, so acc@1 compares what each route would put first; the threshold applies after, to whichever
is kept. A route is kept only if it costs at most ``max_ms_per_term``; among those the most accurate
wins, ties going to the cheaper. Routes with an untuned base model are not candidates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine

from etlnorm.cascade.normalizer import LLM_TIERS, Normalizer
from etlnorm.cascade.retrieval import View
from etlnorm.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A route and the settings it needs (models per ontology), under a short name for tables."""

    name: str
    route: tuple[str, ...]
    settings: dict[str, Any]


@dataclass(frozen=True)
class RouteScore:
    """One candidate measured on one query set."""

    name: str
    route: tuple[str, ...]
    queries: int
    acc_at_1: float
    acc_at_5: float
    ms_per_term: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "route": list(self.route)}


def candidates(ontology: str, settings: Settings, rerank_adapter: str | None = None,
               encoder: str | None = None) -> list[Candidate]:  # fmt: skip
    """The routes worth measuring for ``ontology`` with the models at hand: string tiers then
    retrieval (with the configured encoder, and again with ``encoder`` when ``tune`` just trained
    one), then each trained model tier on top of the best of those (the cross-encoder, the LLM
    reranker, the gene generator); never a model tier without its trained model."""
    out = [Candidate("lexical+retrieval", ("lexical", "retrieval"), {}),
           Candidate("lexical+fuzzy+retrieval", ("lexical", "fuzzy", "retrieval"), {})]  # fmt: skip
    best = out[1].route
    tuned = {"encoder_models": encoder} if encoder else {}
    if encoder:
        out.append(Candidate("lexical+fuzzy+retrieval (tuned encoder)", best, tuned))
    prefix = "tuned encoder " if encoder else ""
    if ontology in settings.reranker_models:
        out.append(Candidate(f"{prefix}+crossencoder", (*best, "crossencoder"),
                             {**tuned, "reranker_models": settings.reranker_models[ontology]}))  # fmt: skip
    adapter = rerank_adapter or settings.llm_rerank_adapters.get(ontology)
    if adapter:
        out.append(Candidate(f"{prefix}+llm rerank", (*best, "rerank"), {**tuned, "llm_rerank_adapters": adapter}))
    if ontology in settings.llm_adapters:
        out.append(Candidate("lexical+llm+retrieval", ("lexical", "llm", "retrieval"),
                             {**tuned, "llm_adapters": settings.llm_adapters[ontology]}))  # fmt: skip
    return out


def with_models(settings: Settings, ontology: str, candidate: Candidate, **update: Any) -> Settings:
    """``settings`` with the candidate's models set for ``ontology`` (and ``update`` applied)."""
    models = {key: {**getattr(settings, key), ontology: folder} for key, folder in candidate.settings.items()}
    return settings.model_copy(update={**models, **update})


def measure(engine: Engine, settings: Settings, ontology: str, routes: Sequence[Candidate], view: View | None,
            test: Sequence[tuple[str, str]], lm: Any = None) -> list[RouteScore]:  # fmt: skip
    """acc@1, acc@5 and cost of each route on ``test`` (query, gold), over ``view`` (None: the
    whole release). ``lm``: the loaded LLM to share among routes."""
    queries, gold = [q for q, _ in test], [g for _, g in test]
    scores = []
    for cand in routes:
        raw = with_models(settings, ontology, cand, min_confidence=0.0)
        normalizer = Normalizer(ontology, engine, raw, route=list(cand.route), calibrated=False, strings=view,
                                lm=lm if LLM_TIERS & set(cand.route) else None)  # fmt: skip
        normalizer.lexicon  # noqa: B018 - built outside the timing, as the index is
        if normalizer.uses_index:
            normalizer.index  # noqa: B018
        started = time.perf_counter()
        answers = normalizer.normalize(queries)
        ms = 1000 * (time.perf_counter() - started) / max(1, len(queries))
        n = max(1, len(gold))
        top5 = sum(g == a.id or any(c.id == g for c in a.candidates[:5]) for a, g in zip(answers, gold, strict=True))
        score = RouteScore(cand.name, cand.route, len(queries), round(sum(a.id == g for a, g in zip(answers, gold, strict=True)) / n, 4),
                           round(top5 / n, 4), round(ms, 2))  # fmt: skip
        log.info("%s %s: acc@1 %.3f, acc@5 %.3f, %.1f ms/term", ontology, cand.name, score.acc_at_1, score.acc_at_5, ms)
        scores.append(score)
    return scores


def choose(scores: Sequence[RouteScore], max_ms_per_term: float) -> RouteScore:
    """The most accurate route within the per-term cost (ties: the cheaper); the cheapest if none fits."""
    fitting = [s for s in scores if s.ms_per_term <= max_ms_per_term]
    if not fitting:
        return min(scores, key=lambda s: s.ms_per_term)
    return max(fitting, key=lambda s: (s.acc_at_1, -s.ms_per_term))
