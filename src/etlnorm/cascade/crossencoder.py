"""The cross-encoder tier: re-score retrieval's top candidates with a reranker trained on the ontology.

A bi-encoder compares two vectors made apart; a cross-encoder reads the term and a candidate's
string together, so it can weigh the words that matter. It costs one model pass per (term,
candidate) pair, so it only sees terms no lexical tier decided (retrieval's answers and
abstentions), ``POOL`` candidates each, in one batched call.

Its probability is *combined* with retrieval's score, ``weight`` · p + (1 − weight) · score, with
the weight fitted on the training split (``etlnorm.finetune.reranker``): an undertrained reranker
that replaces the order is worse than none, and a fitted weight of 0 leaves retrieval's order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from rapidfuzz import fuzz, process

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.tier import ActsOn
from etlnorm.files import read_json

log = logging.getLogger(__name__)

METADATA_FILE = "etlnorm-reranker.json"
POOL = 20  # candidates of retrieval's fused list the reranker reads
STRINGS_PER_ID = 1  # the candidate's string closest in spelling to the term (one pass per candidate)


@dataclass
class Reranker:
    """A trained cross-encoder and the weight its probability gets against retrieval's score."""

    model: Any  # sentence_transformers.CrossEncoder
    weight: float
    folder: Path
    batch_size: int = 128

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """P(same concept) of each (term, string) pair."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict(list(pairs), batch_size=self.batch_size, show_progress_bar=len(pairs) > 20000,
                                    convert_to_numpy=True)  # fmt: skip
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def reranker_metadata(folder: str | Path) -> dict[str, Any]:
    """The JSON beside a trained reranker: its weight, base model, hashes, held-out figures."""
    return read_json(folder, METADATA_FILE, "reranker (train one with `etlnorm reranker finetune`)")


def open_reranker(folder: str | Path, weight: float | None = None, device: str | None = None) -> Reranker:
    """Load a cross-encoder folder; ``weight`` defaults to the one fitted when it was trained."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import CrossEncoder

    path = Path(folder).expanduser()
    if weight is None:
        weight = float(reranker_metadata(path)["weight"])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = CrossEncoder(str(path), device=device, local_files_only=True)
    return Reranker(model, weight, path)


@cache
def load_reranker(folder: str) -> Reranker:
    """One reranker per folder per process."""
    return open_reranker(folder)


def pair_strings(term: str, strings: Sequence[str], label: str | None, n: int = STRINGS_PER_ID) -> list[str]:
    """What the reranker reads of one candidate: its strings (label included) closest in spelling
    to ``term``."""
    pool = list(dict.fromkeys([*([label] if label else []), *strings]))
    if len(pool) <= n:
        return pool
    return [text for text, _, _ in process.extract(term, pool, scorer=fuzz.WRatio, limit=n)]


def strings_by_id(view: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(id, string) pairs grouped by ID: the strings the reranker may read of each candidate."""
    by_id: dict[str, list[str]] = {}
    for ident, text in view:
        by_id.setdefault(ident, []).append(text)
    return by_id


def combine(candidates: Sequence[Candidate], probabilities: Sequence[float], weight: float) -> list[Candidate]:
    """Candidates re-scored as weight · p + (1 − weight) · retrieval score, best first."""
    scored = [Candidate(c.id, c.label, weight * float(p) + (1 - weight) * c.score)
              for c, p in zip(candidates, probabilities, strict=True)]  # fmt: skip
    return sorted(scored, key=lambda c: -c.score)


def score_candidates(reranker: Reranker, terms: Sequence[str], pools: Sequence[Sequence[Candidate]],
                     strings: Mapping[str, Sequence[str]]) -> list[list[float]]:  # fmt: skip
    """The reranker's probability for each candidate of each term: the best over the candidate's
    strings (``pair_strings``), all pairs of all terms in one batched call."""
    pairs: list[tuple[str, str]] = []
    owners: list[tuple[int, int]] = []
    for t, (term, pool) in enumerate(zip(terms, pools, strict=True)):
        for c, cand in enumerate(pool):
            for text in pair_strings(term, strings.get(cand.id, ()), cand.label):
                pairs.append((term, text))
                owners.append((t, c))
    probs = reranker.probabilities(pairs)
    best = [[0.0] * len(pool) for pool in pools]
    for (t, c), p in zip(owners, probs, strict=True):
        best[t][c] = max(best[t][c], float(p))
    return best


class CrossEncoderTier:
    """Re-orders the candidates of retrieval's items (method ``crossencoder``); abstains below
    ``min_confidence`` of the combined score, candidates kept."""

    name = "crossencoder"
    acts_on: ClassVar[ActsOn] = ActsOn(decided_by=frozenset({"retrieval"}), needs_candidates=True)

    def __init__(self, reranker: Reranker, strings: Mapping[str, Sequence[str]], top_k: int = 5,
                 min_confidence: float = 0.6) -> None:  # fmt: skip
        self.reranker, self.strings = reranker, strings
        self.top_k, self.min_confidence = top_k, min_confidence

    def __call__(self, items: list[WorkItem]) -> None:
        pools = [(item.candidates or (item.decision.candidates if item.decision else []))[:POOL] for item in items]
        probs = score_candidates(self.reranker, [item.text for item in items], pools, self.strings)
        for item, pool, p in zip(items, pools, probs, strict=True):
            ranked = combine(pool, p, self.reranker.weight)[: self.top_k]
            item.candidates = ranked
            best = ranked[0]
            if best.score >= self.min_confidence:
                item.decision = Answer(item.text, best.id, best.label, best.score, "crossencoder", ranked)
            else:
                item.decision = None
