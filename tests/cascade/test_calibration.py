"""Isotonic calibration: monotone, within [0, 1], stored per release and configuration, and fitted
self-supervised on held-out strings of a real release."""

from __future__ import annotations

import math

import numpy as np
import pytest

from etlnorm.cascade.calibration import (
    MIN_COUNT,
    Calibration,
    fit_calibration,
    fit_curve,
    fit_heldout,
    load_calibration,
    save_calibration,
)
from etlnorm.cascade.heldout import calibration_set
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.config import load_settings


def _gold(n: int = 400, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    # Scores whose chance of being right rises with the score, plus noise: a realistic, non-monotone sample.
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-3, 3, n)
    correct = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-2 * scores))
    return scores, correct


def test_curve_is_monotone_and_bounded() -> None:
    scores, correct = _gold()
    curve = fit_curve(scores, correct)
    grid = np.linspace(-10, 10, 2001)  # well outside the fitted range too: clipped, not extrapolated
    out = curve(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0 and out.max() <= 1
    assert out[0] < 0.2 and out[-1] > 0.8  # it did learn the trend
    assert curve.n == len(scores)


def test_fitted_precision_matches_observed_rate() -> None:
    scores, correct = _gold(2000)
    curve = fit_curve(scores, correct)
    high = scores > 1.5
    assert abs(float(curve(scores[high]).mean()) - float(correct[high].mean())) < 0.05


def test_save_load_apply_per_method_and_release(tmp_path) -> None:
    s1, c1 = _gold(300, 1)
    s2, c2 = _gold(300, 2)
    rows = [("llm", float(s), bool(c)) for s, c in zip(s1, c1, strict=True)]
    rows += [("rerank", float(s) / 3, bool(c)) for s, c in zip(s2, c2, strict=True)]
    cal = fit_calibration("hp", "hp/releases/2025-01-16", rows, key="routeA")
    path = save_calibration(cal, tmp_path)
    assert path.is_file() and path.parent.name == "hp"
    assert load_calibration(tmp_path, "hp", "hp/releases/2025-01-16", "routeB") is None  # another configuration
    back = load_calibration(tmp_path, "hp", "hp/releases/2025-01-16", "routeA")
    assert isinstance(back, Calibration) and set(back.curves) == {"llm", "rerank"}
    for method in ("llm", "rerank"):
        assert back.apply(method, 0.3) == pytest.approx(cal.apply(method, 0.3))
    assert back.apply("exact", 1.0) == 1.0  # uncalibrated methods pass through
    assert back.key == "routeA" and load_calibration(tmp_path, "hp", "another-release", "routeA") is None
    assert 0 <= back.apply("llm", 2.5) <= 1


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        fit_curve([], [])
    with pytest.raises(ValueError):
        fit_curve([0.1, 0.2], [True])


def test_self_supervised_calibration_on_held_out_hpo_strings(engine, hp, tmp_path) -> None:
    """Curves fitted on one half of held-out HPO strings make the other half's confidence mean
    precision: in every bin of at least 30 answers, observed precision lies within the bin, up to
    two binomial standard errors."""
    strings, queries, gold = calibration_set(engine, "hp", seed=13)
    concepts = {i for i, _ in strings if int(i.split(":")[1]) % 5 == 0}  # a fifth of HPO: a quick index
    view = [(i, s) for i, s in strings if i in concepts]
    chosen = [(q, g) for q, g in zip(queries, gold, strict=True) if g in concepts]
    assert len(chosen) > 700 and not {q.casefold() for q, _ in chosen} & {s.casefold() for _, s in view}
    settings = load_settings().model_copy(update={"min_confidence": 0.0})
    raw = Normalizer("hp", engine, settings, calibrated=False, strings=view)
    calibration, report, path = fit_heldout(raw, [q for q, _ in chosen], [g for _, g in chosen], "k1", tmp_path)
    assert path.is_file() and load_calibration(tmp_path, "hp", raw.release, "k1") is not None
    retrieval = report["retrieval"]
    assert retrieval["own_curve"] and retrieval["scored_on"] >= 200
    assert retrieval["ece_calibrated"] < retrieval["ece_raw"] and retrieval["ece_calibrated"] <= 0.08
    for method, r in report.items():
        for low, high, n, _, precision in r["bins"]:
            if n >= 30:
                slack = 2 * math.sqrt(0.25 / n)
                assert low - slack <= precision <= high + slack, (method, low, n, precision)
    pooled = [calibration.curves[m] for m, r in report.items() if not r["own_curve"] and m in calibration.curves]
    assert all(c is pooled[0] for c in pooled)  # methods under MIN_COUNT answers share the pooled curve
    assert all(r["own_curve"] == (r["fitted_on"] >= MIN_COUNT) for r in report.values())


def test_calibrate_command_without_gold(engine, hp, etlnorm_home) -> None:
    from tests.test_cli import etlnorm

    try:
        done = etlnorm("calibrate", "--ontology", "hp", "--limit", "300")
        assert done.returncode == 0, done.stderr
        assert "ECE calibrated" in done.stdout and "retrieval" in done.stdout and "saved to" in done.stdout
        shipped = Normalizer("hp", engine)
        assert shipped.calibration is not None and "retrieval" in shipped.calibration.curves
        assert Normalizer("hp", engine, route=["lexical", "retrieval"]).calibration is None
    finally:  # other tests of this session expect uncalibrated hp answers
        for path in (etlnorm_home / "calibration").rglob("*.json"):
            path.unlink()
