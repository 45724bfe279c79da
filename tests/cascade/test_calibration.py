"""Isotonic calibration: monotone, within [0, 1], stored per ontology release."""

from __future__ import annotations

import numpy as np
import pytest

from etlnorm.cascade.calibration import (
    Calibration,
    fit_calibration,
    fit_curve,
    load_calibration,
    save_calibration,
)


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
