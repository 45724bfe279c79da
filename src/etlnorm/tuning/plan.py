"""The budgeted preparation behind ``etlnorm tune``, and the choice it stores.

Steps run in the order they pay off, each only if what is left of the budget covers its estimate:

1. the release's retrieval index (always: every route needs it);
2. a rerank adapter for the LLM (``finetune.llm_rerank``), sized to the time left, unless one trained on
   the same split is configured;
3. the candidate routes measured on the split's held-out queries (and on a gold file);
4. the chosen route calibrated on the release (``Normalizer.prepare``).

The choice goes to ``HOME/tuned/<ontology>.json``; ``etlnorm.config`` reads it as the lowest-priority
source, so ``etlnorm run`` uses it unless a configured route says otherwise.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from etlnorm.cascade.heldout import heldout_split
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.config import Settings, tuned_path
from etlnorm.errors import EtlnormError
from etlnorm.files import write_json
from etlnorm.finetune.config import FinetuneConfig
from etlnorm.finetune.encoder import check_not_trained_on
from etlnorm.finetune.llm_rerank import train_rerank_adapter
from etlnorm.llm.model import LanguageModel, pick_device
from etlnorm.tuning.measure import RouteScore, candidates, choose, measure, with_models

log = logging.getLogger(__name__)

# Training examples per second of SmolLM2-135M on the 2-core development machine (the metrics of
# `etlnorm finetune --task rerank`, bench/RESULTS-llm.md), a GPU's a guess at 25x; and how many
# examples a training query makes (itself and a variant, less the dev slice).
EXAMPLES_PER_S = {"cpu": 3.0, "cuda": 75.0}  # cpu: 2,519 examples in 822 s
EXAMPLES_PER_QUERY = 1.7
MIN_QUERIES = 100  # fewer training queries teach the adapter nothing worth measuring
MAX_QUERIES = 4000
TRAIN_SHARE = 0.6  # of the time left after the index: the rest measures and calibrates


@dataclass
class Step:
    name: str
    seconds: float
    note: str


@dataclass
class TuneReport:
    """What ``tune`` did, what it measured and what it kept."""

    ontology: str
    steps: list[Step] = field(default_factory=list)
    heldout: list[RouteScore] = field(default_factory=list)
    gold: list[RouteScore] = field(default_factory=list)
    chosen: RouteScore | None = None
    path: Path | None = None


def _timed(report: TuneReport, name: str, run: Callable[[], str]) -> None:
    started = time.perf_counter()
    note = run()
    report.steps.append(Step(name, round(time.perf_counter() - started, 1), note))
    log.info("tune %s: %s: %s", report.ontology, name, note)


def rerank_queries(seconds: float, device: str) -> int:
    """Training queries that fit in ``seconds`` on ``device`` (0: too few to be worth it)."""
    n = int(seconds * TRAIN_SHARE * EXAMPLES_PER_S.get(device, EXAMPLES_PER_S["cpu"]) / EXAMPLES_PER_QUERY)
    return min(n, MAX_QUERIES) if n >= MIN_QUERIES else 0


def tune(engine: Engine, settings: Settings, ontology: str, budget_minutes: float, *,
         load_lm: Callable[[], LanguageModel], gold: Sequence[tuple[str, str]] = (), protocol: str = "synonym",
         seed: int = 13, limit: int = 300, train_adapter: bool = True) -> TuneReport:  # fmt: skip
    """Prepare ``ontology`` within ``budget_minutes``, measure the routes, store the best.

    ``load_lm`` loads the LLM when a step needs it; ``gold``: (term, id) pairs of the user's, scored on
    the whole release and deciding the choice when given; ``limit``: held-out queries measured.
    """
    deadline = time.monotonic() + 60 * budget_minutes
    report = TuneReport(ontology)
    default = Normalizer(ontology, engine, settings, route=["lexical", "fuzzy", "retrieval"])
    _timed(report, "index", lambda: f"{len(default.index.ids)} strings indexed ({default.release})")
    split = heldout_split(engine, ontology, protocol, seed=seed)
    test = split.test if len(split.test) <= limit else random.Random(seed).sample(split.test, limit)
    adapter = settings.llm_rerank_adapters.get(ontology)
    if adapter:
        check_not_trained_on(adapter, ontology, protocol, seed)
    lm: LanguageModel | None = None
    queries = rerank_queries(deadline - time.monotonic(), pick_device(settings.llm_device).type)
    if not adapter and train_adapter and queries:
        lm = load_lm()
        folder = settings.home_dir / "adapters" / f"{ontology}-rerank-{protocol}-s{seed}"

        def train() -> str:
            info, _ = train_rerank_adapter(engine, settings, ontology, split.train, [], folder, lm=lm,
                                           config=FinetuneConfig(epochs=1, seed=seed), queries=queries, seed=seed,
                                           extra_metadata={"release": split.release, "content": default.fingerprint,
                                                           "heldout": {"protocol": protocol, "seed": seed}})  # fmt: skip
            m = info.metadata
            return f"{m['data']['queries']} queries, {m['metrics']['steps']} steps, weight {m['weight']:.2f}: {folder}"

        _timed(report, "rerank adapter", train)
        adapter = str(folder)
    elif not adapter:
        report.steps.append(Step("rerank adapter", 0.0, "skipped: the budget left fits fewer than "
                                 f"{MIN_QUERIES} training queries" if train_adapter else "skipped: not asked"))  # fmt: skip
    routes = candidates(ontology, settings, adapter)
    if any(c.settings.keys() & {"llm_rerank_adapters", "llm_adapters"} for c in routes) and lm is None:
        lm = load_lm()

    def measure_heldout() -> str:
        report.heldout = measure(engine, settings, ontology, routes, split.train, test, lm)
        return f"{len(routes)} routes on {len(test)} held-out {protocol} queries"

    _timed(report, "measure", measure_heldout)
    if gold:
        def measure_gold() -> str:
            report.gold = measure(engine, settings, ontology, routes, None, gold, lm)
            return f"{len(routes)} routes on {len(gold)} gold terms"

        _timed(report, "measure gold", measure_gold)
    report.chosen = choose(report.gold or report.heldout, settings.tune_max_ms_per_term)
    chosen = next(c for c in routes if c.name == report.chosen.name)
    final = with_models(settings, ontology, chosen)
    _timed(report, "calibrate", lambda: _calibrate(engine, final, ontology, chosen.route, lm))
    if time.monotonic() > deadline:
        log.warning("tune %s ran past its %.0f-minute budget", ontology, budget_minutes)
    report.path = _store(final, ontology, chosen.route, chosen.settings, report, budget_minutes)
    return report


def _calibrate(engine: Engine, settings: Settings, ontology: str, route: Sequence[str], lm: LanguageModel | None) -> str:
    normalizer = Normalizer(ontology, engine, settings, route=list(route), lm=lm)
    normalizer.prepare()
    if normalizer.calibration is None:
        raise EtlnormError(f"{ontology}: the chosen route could not be calibrated")
    return f"methods {', '.join(sorted(normalizer.calibration.curves))}"


def _store(settings: Settings, ontology: str, route: Sequence[str], models: dict[str, Any], report: TuneReport,
           budget_minutes: float) -> Path:  # fmt: skip
    path = tuned_path(settings.home_dir, ontology)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path.parent, path.name, {
        "ontology": ontology,
        "settings": {"routing": list(route), **models},
        "chosen": report.chosen.as_dict() if report.chosen else None,
        "heldout": [s.as_dict() for s in report.heldout],
        "gold": [s.as_dict() for s in report.gold],
        "steps": [vars(s) for s in report.steps],
        "budget_minutes": budget_minutes,
        "max_ms_per_term": settings.tune_max_ms_per_term,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })  # fmt: skip
    return path
