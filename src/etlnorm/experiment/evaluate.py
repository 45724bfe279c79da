"""Scoring normalization against gold IDs: accuracy@1, accuracy@5, coverage, and accuracy by confidence.

Gold IDs are resolved first (alt IDs and obsolete terms with a replacement lead to the current ID),
so a table written against an older release is scored fairly. Rows whose gold ID is unknown or
obsolete without replacement, or blank, are counted and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from etlnorm.cascade.answer import METHODS, Answer
from etlnorm.cascade.calibration import calibration_bins, calibration_error

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55 ... 0.95
TOP_K = 5
BINS = 10  # reliability diagram bins
@dataclass(frozen=True, slots=True)
class Scored:
    """One row's outcome."""

    method: str
    confidence: float
    answered: bool  # an ID was given (method not none/empty)
    correct: bool  # the answer is the gold ID
    in_top_k: bool  # the gold ID is the answer or among the candidates


@dataclass(frozen=True, slots=True)
class AtThreshold:
    threshold: float
    answered: int  # answers with confidence >= threshold
    coverage: float  # answered / rows
    precision: float | None  # correct / answered; None when nothing is answered


@dataclass(frozen=True, slots=True)
class Bin:
    """Answers whose confidence falls in [low, high): does their precision match their confidence?"""

    low: float
    high: float
    answered: int
    mean_confidence: float
    precision: float


@dataclass(frozen=True, slots=True)
class Summary:
    """Scores of a group of rows: all of them, or those one method answered."""

    method: str  # "all" for every row
    rows: int
    accuracy_at_1: float
    accuracy_at_5: float
    coverage: float
    thresholds: list[AtThreshold] = field(default_factory=list)
    bins: list[Bin] = field(default_factory=list)  # the reliability diagram's points
    calibration_error: float | None = None  # expected calibration error over ``bins``; None: nothing answered


@dataclass(frozen=True, slots=True)
class Evaluation:
    ontology: str
    rows: int  # rows read
    scored: int  # rows with a resolvable gold ID
    gold_resolved: int  # gold IDs that were alt IDs or replaced obsolete terms
    gold_unusable: int  # blank, unknown, or obsolete without replacement: not scored
    overall: Summary
    by_method: list[Summary]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def score(mapping: Answer, gold: str, top_k: int = TOP_K) -> Scored:
    answered = mapping.id is not None and mapping.method not in ("none", "empty")
    correct = answered and mapping.id == gold
    in_top_k = correct or any(c.id == gold for c in mapping.candidates[:top_k])
    return Scored(mapping.method, mapping.confidence, answered, correct, in_top_k)


def summarize(method: str, rows: Sequence[Scored]) -> Summary:
    n = len(rows)
    if n == 0:
        return Summary(method, 0, 0.0, 0.0, 0.0)
    thresholds = []
    for t in THRESHOLDS:
        above = [r for r in rows if r.answered and r.confidence >= t - 1e-9]
        precision = sum(r.correct for r in above) / len(above) if above else None
        thresholds.append(AtThreshold(t, len(above), len(above) / n, precision))
    bins, ece = reliability([r for r in rows if r.answered])
    return Summary(method, n, sum(r.correct for r in rows) / n, sum(r.in_top_k for r in rows) / n,
                   sum(r.answered for r in rows) / n, thresholds, bins, ece)  # fmt: skip


def reliability(answered: Sequence[Scored], n_bins: int = BINS) -> tuple[list[Bin], float | None]:
    """Equal-width confidence bins of the answered rows, and their expected calibration error."""
    confidences, correct = [r.confidence for r in answered], [r.correct for r in answered]
    bins = [Bin(*b) for b in calibration_bins(confidences, correct, n_bins)]
    return bins, calibration_error(confidences, correct, n_bins)


def evaluate(
    mappings: Sequence[Answer], gold: Sequence[str | None], ontology: str, gold_resolved: int = 0
) -> Evaluation:
    """Score mappings against current gold IDs (None: row not scored)."""
    if len(mappings) != len(gold):
        raise ValueError("one gold ID per mapping")
    scored = [score(m, g) for m, g in zip(mappings, gold, strict=True) if g is not None]
    methods = sorted(
        {s.method for s in scored}, key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS)
    )
    by_method = [summarize(m, [s for s in scored if s.method == m]) for m in methods]
    return Evaluation(ontology, len(gold), len(scored), gold_resolved, len(gold) - len(scored),
                      summarize("all", scored), by_method)  # fmt: skip
