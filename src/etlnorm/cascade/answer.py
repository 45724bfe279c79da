"""What normalization produces (``Answer``), and the unit of work the tiers pass along (``WorkItem``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Methods, in the order a reader meets them: a person's decision, lexical hits, LLM paths, retrieval, non-answers.
# ``negated`` and ``multiple`` carry no ID by default: the term denies a finding, or lists several.
METHODS = ("curated", "exact", "synonym", "fuzzy", "llm", "llm+retrieval", "rerank", "crossencoder", "retrieval",
           "negated", "multiple", "none", "empty")  # fmt: skip



@dataclass(frozen=True, slots=True)
class Candidate:
    """One possible identifier for a term, with the score of the tier that proposed it."""

    id: str
    label: str | None
    score: float


@dataclass(slots=True)
class Answer:
    """The answer for one input term. ``id`` is always current (never obsolete) or None."""

    term: str | None
    id: str | None
    label: str | None
    confidence: float
    method: str
    candidates: list[Candidate] = field(default_factory=list)

    def candidates_json(self) -> str:
        """The candidates (top-k, scores to 4 places) as JSON: what files and the mapping cache keep."""
        return json.dumps([{"id": c.id, "label": c.label, "score": round(float(c.score), 4)} for c in self.candidates])


@dataclass(slots=True)
class WorkItem:
    """One distinct normalized string on its way through the cascade.

    A tier fills ``decision`` for the items it can answer, may add ``candidates`` for later
    tiers, and may revise an earlier tier's decision (confirmation, reranking).
    """

    key: str  # the normalized string: the unit of deduplication
    text: str  # one original spelling, what models see
    decision: Answer | None = None
    candidates: list[Candidate] = field(default_factory=list)
    negated: bool = False  # the term denies its finding (set by the lexical tier's reading)
