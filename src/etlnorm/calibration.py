"""Fit the confidence calibration of an ontology release from a gold file (``etlnorm calibrate``).

The normalizer runs on the gold terms without calibration and without abstaining, so every
method's raw scores are seen; each answer is marked right or wrong against the resolved gold ID,
and ``etlnorm.llm.calibrate`` fits one isotonic curve per method. Normalizers of that release pick
the curves up from ``ETLNORM_HOME/calibration``; ``confidence`` then means estimated precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from etlnorm.config import Settings, load_settings
from etlnorm.db import ready_engine
from etlnorm.errors import EtlnormError
from etlnorm.evaluate import resolve_gold
from etlnorm.llm.calibrate import Calibration, fit_calibration, save_calibration
from etlnorm.normalizer import Normalizer


def calibration_folder(settings: Settings) -> Path:
    return settings.home_dir / "calibration"


def fit_from_gold(ontology: str, terms: Sequence[str | None], gold: Sequence[str | None],
                  settings: Settings | None = None) -> tuple[Calibration, Path]:  # fmt: skip
    """Fit and store the calibration of the loaded release of ``ontology``; returns it and its path."""
    settings = (settings or load_settings()).model_copy(update={"min_confidence": 0.0})
    engine = ready_engine(settings)
    normalizer = Normalizer(ontology, engine, settings, calibrated=False)
    current, _ = resolve_gold(engine, ontology, gold)
    mappings = normalizer.normalize(terms)
    rows = [(m.method, m.confidence, m.id == g) for m, g in zip(mappings, current, strict=True)
            if g is not None and m.id is not None]  # fmt: skip
    if not rows:
        raise EtlnormError("no gold row was both scorable and answered: nothing to calibrate on")
    calibration = fit_calibration(ontology, normalizer.release, rows)
    return calibration, save_calibration(calibration, calibration_folder(settings))
