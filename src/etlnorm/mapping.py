"""What normalization produces, and the unit of work the cascade's steps pass along."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# Methods, in the order a reader meets them: lexical hits, LLM paths, retrieval, and the two non-answers.
METHODS = ("exact", "synonym", "llm", "llm+retrieval", "rerank", "retrieval", "none", "empty")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One possible identifier for a term, with the score of the tier that proposed it."""

    id: str
    label: str | None
    score: float


@dataclass(slots=True)
class Mapping:
    """The answer for one input term. ``id`` is always current (never obsolete) or None."""

    term: str | None
    id: str | None
    label: str | None
    confidence: float
    method: str
    candidates: list[Candidate] = field(default_factory=list)

    def as_row(self) -> dict[str, object]:
        return {"term": self.term, "id": self.id, "label": self.label,
                "confidence": round(self.confidence, 4), "method": self.method}  # fmt: skip


@dataclass(slots=True)
class WorkItem:
    """One distinct normalized string on its way through the cascade.

    A step fills ``decision`` for the items it can answer, may add ``candidates`` for later
    steps, and may revise an earlier step's decision (the LLM reranker does).
    """

    key: str  # the normalized string: the unit of deduplication
    text: str  # one original spelling, what models see
    decision: Mapping | None = None
    candidates: list[Candidate] = field(default_factory=list)


class Step(Protocol):
    """A tier of the cascade: exact match, retrieval, LLM generation, LLM reranking."""

    name: str

    def __call__(self, items: list[WorkItem]) -> None:
        """Act on ``items`` in place; a step never raises for one bad term."""
        ...
