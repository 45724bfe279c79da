"""The budgeted preparation behind ``etlnorm tune``, and the choice it stores.

Steps run in the order they pay off, each only if what is left of the budget covers its estimate:

1. the release's retrieval index (always: every route needs it);
2. the sentence encoder fine-tuned on the split's train part (``finetune.encoder``, on held-out HPO
   synonyms the largest gain of all, bench/RESULTS-heldout.md), sized to the time left less its
   index build, unless one trained on the same split is configured;
3. a rerank adapter for the LLM (``finetune.llm_rerank``), sized to the time left, its hard negatives
   from the best retrieval at hand (the fine-tuned encoder's when step 2 made one), unless one
   trained on the same split is configured;
4. the candidate routes measured on the split's held-out queries (and on a gold file), with and
   without the fine-tuned encoder;
5. the chosen route calibrated on the release (``Normalizer.prepare``).

The choice goes to ``HOME/tuned/<ontology>.json``; ``etlnorm.config`` reads it as the lowest-priority
source, so ``etlnorm run`` uses it unless a configured route says otherwise.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from etlnorm.cascade.heldout import heldout_split
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import current_labels
from etlnorm.config import Settings, tuned_path
from etlnorm.errors import EtlnormError
from etlnorm.files import write_json
from etlnorm.finetune.config import FinetuneConfig
from etlnorm.finetune.encoder import EncoderConfig, check_not_trained_on, finetune_encoder, training_pairs
from etlnorm.finetune.llm_rerank import train_rerank_adapter
from etlnorm.llm.model import LanguageModel, pick_device
from etlnorm.tuning.measure import RouteScore, candidates, choose, measure, with_models

log = logging.getLogger(__name__)

# Training groups (a query, its gold label and 4 hard negatives) per second of SmolLM2-135M on the
# 2-core development machine (the adapter metrics of the tune run in bench/RESULTS-llm.md: 2,762
# groups in 1,546 s), a GPU's a guess at 15x; and how many groups a training query makes (itself and a variant, less
# the dev slice).
GROUPS_PER_S = {"cpu": 1.8, "cuda": 26.0}
GROUPS_PER_QUERY = 1.7
MIN_QUERIES = 100  # fewer training queries teach the adapter nothing worth measuring
MAX_QUERIES = 4000
TRAIN_SHARE = 0.6  # of the time left after the index: the rest measures and calibrates
# Encoder fine-tuning pairs per second (67,368 pairs in 1,453 s on the 2-core machine,
# bench/RESULTS-heldout.md; a GPU's a guess at 30x) and strings encoded per second by an index build
# (the int8 encoder: 41,491 in 31.6 s, bench/RESULTS-encoder.md).
PAIRS_PER_S = {"cpu": 46.0, "cuda": 1400.0}
STRINGS_PER_S = {"cpu": 1300.0, "cuda": 5000.0}
MIN_PAIRS = 2000  # fewer pairs move the encoder too little to be worth a second index
ENCODER_SHARE = 0.4  # of the time left after the index: the encoder pays more than the adapter


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
    n = int(seconds * TRAIN_SHARE * GROUPS_PER_S.get(device, GROUPS_PER_S["cpu"]) / GROUPS_PER_QUERY)
    return min(n, MAX_QUERIES) if n >= MIN_QUERIES else 0


def encoder_pairs(seconds: float, strings: int, device: str, available: int) -> int:
    """Encoder training pairs that fit in ``seconds`` on ``device``, after re-encoding ``strings``
    for the new encoder's index, out of the ``available`` ones (0: too few to be worth it; a small
    release is worth all of its pairs)."""
    left = seconds * ENCODER_SHARE - strings / STRINGS_PER_S.get(device, STRINGS_PER_S["cpu"])
    n = min(available, int(left * PAIRS_PER_S.get(device, PAIRS_PER_S["cpu"])))
    return n if n >= min(MIN_PAIRS, available) and n >= 2 else 0


def tune(engine: Engine, settings: Settings, ontology: str, budget_minutes: float, *,
         load_lm: Callable[[], LanguageModel], gold: Sequence[tuple[str, str]] = (), protocol: str = "synonym",
         seed: int = 13, limit: int = 300, train_adapter: bool = True, train_encoder: bool = True) -> TuneReport:  # fmt: skip
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
    heldout = {"protocol": protocol, "seed": seed}
    encoder = _encoder_step(engine, settings, ontology, split, report, deadline, heldout, train_encoder)
    best = with_encoder(settings, ontology, encoder) if encoder else settings
    adapter = settings.llm_rerank_adapters.get(ontology)
    if adapter:
        check_not_trained_on(adapter, ontology, protocol, seed)
    lm: LanguageModel | None = None
    queries = rerank_queries(deadline - time.monotonic(), pick_device(settings.llm_device).type)
    if not adapter and train_adapter and queries:
        lm = load_lm()
        folder = settings.home_dir / "adapters" / f"{ontology}-rerank-{protocol}-s{seed}"

        def train() -> str:
            info, _ = train_rerank_adapter(engine, best, ontology, split.train, [], folder, lm=lm,
                                           config=FinetuneConfig(epochs=1, seed=seed), queries=queries, seed=seed,
                                           extra_metadata={"release": split.release, "content": default.fingerprint,
                                                           "heldout": heldout,
                                                           "encoder": best.encoder_for(ontology)})  # fmt: skip
            m = info.metadata
            return f"{m['data']['queries']} queries, {m['metrics']['steps']} steps, weight {m['weight']:.2f}: {folder}"

        _timed(report, "rerank adapter", train)
        adapter = str(folder)
    elif not adapter:
        report.steps.append(Step("rerank adapter", 0.0, "skipped: the budget left fits fewer than "
                                 f"{MIN_QUERIES} training queries" if train_adapter else "skipped: not asked"))  # fmt: skip
    routes = candidates(ontology, settings, adapter, encoder)
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


def with_encoder(settings: Settings, ontology: str, folder: str) -> Settings:
    """``settings`` with ``folder`` as the encoder of ``ontology``."""
    return settings.model_copy(update={"encoder_models": {**settings.encoder_models, ontology: folder}})


def _encoder_step(engine: Engine, settings: Settings, ontology: str, split: Any, report: TuneReport, deadline: float,
                  heldout: dict[str, Any], train: bool) -> str | None:  # fmt: skip
    """An encoder fine-tuned now on the split's train part, when asked and the budget fits it; None
    when not, or when one is configured (checked against the split: routes already use it)."""
    configured = settings.encoder_models.get(ontology)
    if configured:
        check_not_trained_on(configured, ontology, heldout["protocol"], heldout["seed"])
        report.steps.append(Step("encoder", 0.0, f"configured: {configured}"))
        return None
    device = "cuda" if pick_device(settings.encoder_device).type == "cuda" else "cpu"
    labels, exclude = current_labels(engine, ontology), [q for q, _ in split.test]
    config = EncoderConfig(seed=heldout["seed"])
    available = len(training_pairs(split.train, labels, config, exclude)) if train else 0
    pairs = encoder_pairs(deadline - time.monotonic(), len(split.train), device, available)
    if not pairs:
        report.steps.append(Step("encoder", 0.0, "skipped: " + (
            f"the budget left fits fewer than {MIN_PAIRS} pairs and a new index" if train else "not asked")))  # fmt: skip
        return None
    folder = settings.home_dir / "encoders" / f"{ontology}-{heldout['protocol']}-s{heldout['seed']}-tuned"

    def train_encoder() -> str:
        finetune_encoder(split.train, labels, folder, ontology=ontology, base=settings.encoder_model,
                         config=replace(config, max_pairs=pairs), device=device, exclude=exclude,
                         extra_metadata={"release": split.release, "heldout": heldout})  # fmt: skip
        tuned = with_encoder(settings, ontology, str(folder))
        index = Normalizer(ontology, engine, tuned, route=["lexical", "fuzzy", "retrieval"], calibrated=False).index
        return f"{pairs} of {available} pairs, its index of {len(index.ids)} strings built: {folder}"

    _timed(report, "encoder", train_encoder)
    return str(folder)


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
