"""Isotonic calibration: raw tier scores -> observed precision, per method, per ontology release.

A softmax score, a sequence probability and a cosine similarity are not comparable, and none is a
probability of being right. Fitted on a gold set, a monotone map per method turns each into the
precision observed at that score, so one abstain threshold means the same thing for every path.
A map is stored as its isotonic breakpoints (JSON), keyed by the ontology release and by the
normalizer's models (route, encoder and reranker fingerprints, LLM and adapter): curves fitted under
one configuration are never applied under another.

``fit_from_gold`` (``etlnorm calibrate``) runs an uncalibrated, non-abstaining normalizer on gold
terms, so every method's raw scores are seen, marks each answer right or wrong against the resolved
gold ID and fits one curve per method; normalizers of that release and configuration pick the
curves up from ``ETLNORM_HOME/calibration``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sqlalchemy import Engine

from etlnorm.cascade.answer import Answer
from etlnorm.config import Settings
from etlnorm.errors import EtlnormError
from etlnorm.ontology.store import resolve_gold

VERSION = 2  # of the calibration set and the curves' reading: part of every key, so a change refits
MARGIN = ("retrieval", "crossencoder", "rerank")  # ranking tiers: their curve reads the lead over the runner-up
MIN_COUNT = 50  # answers a method needs for a curve of its own (see ``fit_heldout`` for the fallback)
LEXICAL = ("exact", "synonym")  # methods whose raw score is a designed prior (1.0 a unique label, shared among ties)


@dataclass(frozen=True)
class Curve:
    """The isotonic fit as a monotone step function: a score gets the precision of the block it
    falls in (the last breakpoint at or below it). Steps, not the straight lines between blocks:
    float noise of 1e-7 in a score (a term encoded alone or in a batch) then moves no confidence,
    where a steep line between two close breakpoints would move it by 1e-5. Below ``x[0]``, scores
    never seen in fitting, it is never more confident than the raw score itself (a curve fitted
    only on a tier's 0.85 hits says nothing about its 0.425 ties)."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    n: int = 0  # gold rows it was fitted on

    def __call__(self, scores: float | Sequence[float] | np.ndarray) -> np.ndarray:
        raw = np.asarray(scores, dtype=float)
        steps = np.asarray(self.y)[np.clip(np.searchsorted(self.x, raw, side="right") - 1, 0, len(self.y) - 1)]
        return np.clip(np.where(raw < self.x[0], np.minimum(steps, raw), steps), 0.0, 1.0)


@dataclass
class Calibration:
    """The curves of one ontology release, by method (``llm``, ``rerank``, ``retrieval``, ...)."""

    ontology: str
    release: str
    curves: dict[str, Curve] = field(default_factory=dict)
    key: str = ""  # the normalizer configuration it was fitted under (``Normalizer.calibration_key``)
    pooled: Curve | None = None  # for methods without a curve of their own, lexical ones excepted

    def curve(self, method: str) -> Curve | None:
        """The method's own curve, else the pooled one; None for exact and synonym hits without one."""
        return self.curves.get(method) or (None if method in LEXICAL else self.pooled)

    def apply(self, method: str, score: float, others: Sequence[float] = ()) -> float:
        """Estimated precision of an answer of ``method`` with raw ``score`` (``others``: the scores
        of the other candidates): its own curve at ``feature``, else the pooled curve at the score,
        else (exact and synonym hits) the score itself."""
        own = self.curves.get(method)
        if own is not None:
            return float(own(feature(method, score, others)))
        curve = self.curve(method)
        return float(curve(score)) if curve is not None else score


def feature(method: str, score: float, others: Sequence[float] = ()) -> float:
    """What a method's curve reads. A ranking tier's top cosine says little about being right; its
    lead over the best other ID says much more (dense retrieval on held-out HPO synonyms: 0.875
    precision in the most confident tenth by lead, 0.685 by cosine; ``bench/bench_trust.py``).
    Every other method's curve reads its score."""
    return score - max(others, default=0.0) if method in MARGIN else score


def answer_feature(answer: Answer) -> float:
    """``feature`` of an answer: its method, confidence and the other candidates' scores."""
    return feature(answer.method, answer.confidence, _others(answer))


def fit_curve(scores: Sequence[float], correct: Sequence[bool | int]) -> Curve:
    """Isotonic fit of correctness on score; ``y`` within [0, 1], non-decreasing in ``x``."""
    x = np.asarray(scores, dtype=float)
    y = np.asarray(correct, dtype=float)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError("calibration needs as many correctness flags as scores, and at least one")
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True).fit(x, y)
    return Curve(tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)), len(x))


def calibration_bins(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10
                     ) -> list[tuple[float, float, int, float, float]]:  # fmt: skip
    """Equal-width confidence bins: (low, high, answers, mean confidence, precision), empty bins left out."""
    groups: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidences):
        groups[min(n_bins - 1, max(0, int(c * n_bins)))].append(i)
    return [(b / n_bins, (b + 1) / n_bins, len(g), sum(confidences[i] for i in g) / len(g),
             sum(bool(correct[i]) for i in g) / len(g)) for b, g in enumerate(groups) if g]  # fmt: skip


def calibration_error(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float | None:
    """Expected calibration error: the answer-weighted gap between each bin's precision and its
    mean confidence; None without answers."""
    if not confidences:
        return None
    bins = calibration_bins(confidences, correct, n_bins)
    return sum(n * abs(p - c) for _, _, n, c, p in bins) / len(confidences)


def fit_calibration(ontology: str, release: str, rows: Iterable[tuple[str, float, bool]], key: str = "") -> Calibration:
    """One curve per method from (method, raw score, answer was correct) rows."""
    by_method: dict[str, tuple[list[float], list[bool]]] = {}
    for method, score, ok in rows:
        xs, ys = by_method.setdefault(method, ([], []))
        xs.append(float(score))
        ys.append(bool(ok))
    return Calibration(ontology, release, {m: fit_curve(xs, ys) for m, (xs, ys) in by_method.items()}, key)


def calibration_path(folder: Path, ontology: str, release: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", release)
    return Path(folder).expanduser() / ontology / f"{safe}-{key or 'any'}.calibration.json"


def save_calibration(calibration: Calibration, folder: Path) -> Path:
    """Write ``folder/<ontology>/<release>-<key>.calibration.json``; returns the path."""
    path = calibration_path(folder, calibration.ontology, calibration.release, calibration.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "ontology": calibration.ontology,
        "release": calibration.release,
        "key": calibration.key,
        "curves": {m: _doc(c) for m, c in calibration.curves.items()},
        "pooled": _doc(calibration.pooled) if calibration.pooled else None,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return path


def load_calibration(folder: Path, ontology: str, release: str, key: str = "") -> Calibration | None:
    """The calibration fitted on this release under this configuration ``key``; None when there is
    none (a new release, encoder, route or adapter needs a new fit)."""
    path = calibration_path(folder, ontology, release, key)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    curves = {m: _curve(c) for m, c in doc["curves"].items()}
    pooled = _curve(doc["pooled"]) if doc.get("pooled") else None
    return Calibration(doc["ontology"], doc["release"], curves, doc.get("key", ""), pooled)


def _doc(curve: Curve) -> dict[str, Any]:
    return {"x": list(curve.x), "y": list(curve.y), "n": curve.n}


def _curve(doc: dict[str, Any]) -> Curve:
    return Curve(tuple(doc["x"]), tuple(doc["y"]), int(doc.get("n", 0)))


def calibration_folder(settings: Settings) -> Path:
    return settings.home_dir / "calibration"


class RawNormalizer(Protocol):
    """What fitting needs of a normalizer: its release and its raw (uncalibrated) answers."""

    engine: Engine
    ontology: str
    release: str

    def normalize(self, terms: Sequence[str | None]) -> list[Answer]: ...

    def calibration_key(self) -> str: ...


def fit_from_gold(normalizer: RawNormalizer, terms: Sequence[str | None], gold: Sequence[str | None],
                  folder: Path) -> tuple[Calibration, Path]:  # fmt: skip
    """Fit and store the calibration of ``normalizer``'s release from gold IDs; returns it and its path.

    ``normalizer`` must be uncalibrated and must not abstain (``min_confidence`` 0), or low raw
    scores would never be seen.
    """
    current, _ = resolve_gold(normalizer.engine, normalizer.ontology, gold)
    answers = normalizer.normalize(terms)
    rows = [(a.method, answer_feature(a), a.id == g) for a, g in zip(answers, current, strict=True)
            if g is not None and a.id is not None]  # fmt: skip
    if not rows:
        raise EtlnormError("no gold row was both scorable and answered: nothing to calibrate on")
    calibration = fit_calibration(normalizer.ontology, normalizer.release, rows, normalizer.calibration_key())
    return calibration, save_calibration(calibration, folder)


def fit_heldout(normalizer: RawNormalizer, queries: Sequence[str], gold: Sequence[str], key: str, folder: Path,
                seed: int = 13) -> tuple[Calibration, dict[str, dict[str, Any]], Path]:  # fmt: skip
    """Self-supervised calibration: run ``normalizer`` (raw, non-abstaining, over strings that
    exclude ``queries``) on held-out strings with known IDs, fit one curve per method on a seeded
    half and report each method's expected calibration error, raw and calibrated, on the other.
    Stored under ``key``: the configuration of the normalizer it is meant for (whose index holds
    every string), not the held-out one's.

    A method with fewer than ``MIN_COUNT`` answers in the fitting half gets no curve of its own:
    exact and synonym hits (rare on held-out strings, by construction) keep their designed
    constants, every other method falls back to the curve pooled over all methods."""
    answers = normalizer.normalize(list(queries))
    rows = [(a, a.id == g) for a, g in zip(answers, gold, strict=True) if a.id is not None]
    if len(rows) < 2:
        raise EtlnormError("fewer than two held-out answers: nothing to calibrate on")
    random.Random(seed).shuffle(rows)
    fit, held = rows[0::2], rows[1::2]
    pooled = fit_curve([a.confidence for a, _ in fit], [ok for _, ok in fit])  # raw scores, every method
    curves = {}
    for method in sorted({a.method for a, _ in fit}):
        mine = [(a, ok) for a, ok in fit if a.method == method]
        if len(mine) >= MIN_COUNT:
            curves[method] = fit_curve([answer_feature(a) for a, _ in mine], [ok for _, ok in mine])
    calibration = Calibration(normalizer.ontology, normalizer.release, curves, key, pooled)
    report: dict[str, dict[str, Any]] = {}
    for method in sorted({a.method for a, _ in rows}):
        test = [(a, ok) for a, ok in held if a.method == method]
        correct = [ok for _, ok in test]
        calibrated = [calibration.apply(method, a.confidence, _others(a)) for a, _ in test]
        report[method] = {
            "fitted_on": sum(a.method == method for a, _ in fit), "curve": _curve_kind(calibration, method),
            "scored_on": len(test), "ece_raw": calibration_error([a.confidence for a, _ in test], correct),
            "ece_calibrated": calibration_error(calibrated, correct), "bins": calibration_bins(calibrated, correct),
        }  # fmt: skip
    return calibration, report, save_calibration(calibration, folder)


def _others(answer: Answer) -> list[float]:
    return [c.score for c in answer.candidates if c.id != answer.id]


def _curve_kind(calibration: Calibration, method: str) -> str:
    """How ``method`` is calibrated: ``own`` curve, the ``pooled`` fallback, or its ``raw`` constants."""
    return "own" if method in calibration.curves else "raw" if calibration.curve(method) is None else "pooled"
