"""Isotonic calibration: monotone, within [0, 1], stored per release and configuration, and fitted
self-supervised on held-out strings of a real release."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from etlnorm.cascade.calibration import (
    LEXICAL,
    MIN_COUNT,
    Calibration,
    calibration_folder,
    calibration_path,
    fit_calibration,
    fit_curve,
    fit_heldout,
    load_calibration,
    save_calibration,
)
from etlnorm.cascade.heldout import calibration_set
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import release_strings
from etlnorm.config import load_settings


@contextmanager
def kept_calibration(normalizer: Normalizer) -> Iterator[Path]:
    """Restore the stored calibration of ``normalizer``'s configuration (or its absence) afterwards:
    the session's other tests use the self-calibration, not what a test fitted in between."""
    path = calibration_path(calibration_folder(normalizer.settings), normalizer.ontology, normalizer.release,
                            normalizer.calibration_key())  # fmt: skip
    before = path.read_bytes() if path.is_file() else None
    try:
        yield path
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)


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


def test_scores_below_the_fitted_range_are_never_raised() -> None:
    """A curve fitted only on a tier's 0.85 hits (all right) says nothing about its 0.425 ties."""
    curve = fit_curve([0.85] * 40, [True] * 39 + [False])
    assert float(curve(0.85)) == pytest.approx(0.975)
    assert float(curve(0.425)) == pytest.approx(0.425) and float(curve(0.95)) == pytest.approx(0.975)


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
    split = calibration_set(engine, "hp", release_strings(engine, "hp", "all"), seed=13)
    concepts = {i for i, _ in split.train if int(i.split(":")[1]) % 5 == 0}  # a fifth of HPO: a quick index
    view = [(i, s) for i, s in split.train if i in concepts]
    chosen = [(q, g) for q, g in split.test if g in concepts]
    assert len(chosen) > 500 and not {q.casefold() for q, _ in chosen} & {s.casefold() for _, s in view}
    held = split.counts["test"]  # held-out synonyms; then a variant of every other one, and of as many labels
    assert split.counts["variants"] > 0.4 * held and split.counts["label_variants"] > 0.4 * held
    assert len(split.test) == held + split.counts["variants"] + split.counts["label_variants"]
    settings = load_settings().model_copy(update={"min_confidence": 0.0})
    raw = Normalizer("hp", engine, settings, calibrated=False, strings=view)
    calibration, report, path = fit_heldout(raw, [q for q, _ in chosen], [g for _, g in chosen], "k1", tmp_path)
    assert path.is_file() and load_calibration(tmp_path, "hp", raw.release, "k1") is not None
    retrieval = report["retrieval"]
    assert retrieval["curve"] == "own" and retrieval["scored_on"] >= 200
    assert retrieval["ece_calibrated"] < retrieval["ece_raw"] and retrieval["ece_calibrated"] <= 0.05
    for method, r in report.items():
        for low, high, n, _, precision in r["bins"]:
            if n >= 30:
                slack = 2 * math.sqrt(0.25 / n)
                assert low - slack <= precision <= high + slack, (method, low, n, precision)
    for method, r in report.items():  # the documented fallback below MIN_COUNT answers
        expected = "own" if r["fitted_on"] >= MIN_COUNT else "raw" if method in LEXICAL else "pooled"
        assert r["curve"] == expected, (method, r)
    assert calibration.curve("llm") is calibration.pooled  # a method never seen gets the pooled curve
    fallback = Calibration("hp", raw.release, {}, "k", calibration.pooled)
    assert fallback.apply("synonym", 0.95) == 0.95  # a lexical one without a curve keeps its constant
    assert fallback.apply("llm", 0.7) == pytest.approx(float(calibration.pooled(0.7)))


def test_calibration_is_set_from_inside_the_view(engine, hp) -> None:
    """A normalizer that is itself a held-out protocol's train part is calibrated on its own
    strings: none of the protocol's test queries is ever a calibration query or train string."""
    from etlnorm.cascade.heldout import heldout_split, string_key

    outer = heldout_split(engine, "hp", "synonym", seed=13)
    inner = calibration_set(engine, "hp", outer.train, seed=13, limit=500)
    tested = {string_key(q) for q, _ in outer.test}
    assert not tested & {string_key(s) for _, s in inner.train}
    # A label's variant can spell another held-out synonym ("Ragged-red muscle fibres"): rare, and the
    # evaluation drops those queries (bench/bench_trust.py).
    assert len(tested & {string_key(q) for q, _ in inner.test}) <= 0.005 * len(inner.test)
    assert set(inner.train) < set(outer.train) and len(inner.test) > 500
    labels_only = calibration_set(engine, "hp", release_strings(engine, "hp", "labels"), seed=13, limit=100)
    assert len(labels_only.test) > 100  # no synonym in the view: a share of the release's is held out


def test_calibration_key_names_the_configuration(engine, hp, tmp_path) -> None:
    """A calibration made under one encoder, route or adapter is not applied under another."""
    from etlnorm.cascade.encoder import default_model_path

    other = tmp_path / "encoder"
    other.mkdir()
    for file in default_model_path().iterdir():
        (other / file.name).symlink_to(file, target_is_directory=file.is_dir())
    (other / "README.md").unlink(missing_ok=True)
    (other / "README.md").write_text("re-tuned")  # another model folder: another fingerprint
    base = load_settings().model_copy(update={"home": tmp_path, "auto_calibrate": False})
    variants = {
        "base": Normalizer("hp", engine, base),
        "route": Normalizer("hp", engine, base, route=["lexical", "retrieval"]),
        "encoder": Normalizer("hp", engine, base.model_copy(update={"encoder_models": {"hp": str(other)}})),
        "llm": Normalizer("hp", engine, base, route=["lexical", "llm", "retrieval"]),
        "adapter": Normalizer("hp", engine, base.model_copy(update={"llm_adapters": {"hp": str(tmp_path)}}),
                              route=["lexical", "llm", "retrieval"]),
    }  # fmt: skip
    keys = {name: n.calibration_key() for name, n in variants.items()}
    assert len(set(keys.values())) == len(keys), keys
    fitted = fit_calibration("hp", variants["base"].release, [("retrieval", 0.5, True)] * 3, keys["base"])
    save_calibration(fitted, tmp_path / "calibration")
    assert variants["base"].calibration is not None
    assert all(n.calibration is None for name, n in variants.items() if name != "base")


def test_calibrate_command_without_gold(engine, hp, etlnorm_home) -> None:
    from tests.test_cli import etlnorm

    shipped = Normalizer("hp", engine, load_settings().model_copy(update={"auto_calibrate": False}))
    with kept_calibration(shipped):  # a 300-string fit must not stand in for the one other tests use
        done = etlnorm("calibrate", "--ontology", "hp", "--limit", "300")
        assert done.returncode == 0, done.stderr
        assert "ECE calibrated" in done.stdout and "retrieval" in done.stdout and "saved to" in done.stdout
        assert shipped.calibration is not None and "retrieval" in shipped.calibration.curves
