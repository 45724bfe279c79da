"""The cascade: each distinct normalized string runs through the tiers once, every answer is verified.

``Normalizer`` keeps the lexicon, encoder and index of one ontology release warm across calls;
``normalize()`` is the one-call front door that reuses a Normalizer per ontology.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property

from sqlalchemy import Engine

from etlnorm.config import Settings, load_settings
from etlnorm.db import ready_engine
from etlnorm.encoder import Encoder, load_encoder
from etlnorm.errors import ConfigError
from etlnorm.lexical import LexicalStep, Lexicon, dedup_key, load_lexicon
from etlnorm.llm.calibrate import load_calibration
from etlnorm.llm.model import LanguageModel, load_from_settings
from etlnorm.llm.steps import LlmGenerateStep, LlmRerankStep
from etlnorm.mapping import Mapping, Step, WorkItem
from etlnorm.retrieval import RetrievalIndex, RetrievalStep, load_index
from etlnorm.store import current_release

log = logging.getLogger(__name__)

STEP_NAMES = ("exact", "llm", "retrieval", "rerank")
LEXICAL = ("exact", "synonym")


class Normalizer:
    """Normalizes terms to current IDs of one ontology release."""

    def __init__(self, ontology: str, engine: Engine | None = None, settings: Settings | None = None,
                 variant: str | None = None, steps: Sequence[Step] | None = None, lm: LanguageModel | None = None,
                 calibrated: bool = True) -> None:  # fmt: skip
        self.settings = settings or load_settings()
        self.engine = engine or ready_engine(self.settings)
        self.ontology = ontology
        self.variant = variant or self.settings.index_variant
        with self.engine.connect() as conn:
            self.release = current_release(conn, ontology)
        self._steps = list(steps) if steps is not None else None
        self._lm = lm
        self.calibration = (
            load_calibration(self.settings.home_dir / "calibration", ontology, self.release) if calibrated else None
        )

    @cached_property
    def lexicon(self) -> Lexicon:
        return load_lexicon(self.engine, self.ontology)

    @cached_property
    def encoder(self) -> Encoder:
        return load_encoder(self.settings.encoder_model, self.settings.encode_batch_size)

    @cached_property
    def index(self) -> RetrievalIndex:
        return load_index(self.engine, self.ontology, self.encoder, self.settings.home_dir, self.variant)

    @cached_property
    def lm(self) -> LanguageModel:
        """The LLM of the llm/rerank steps: given, or loaded once from the ``llm_*`` settings."""
        return self._lm if self._lm is not None else load_from_settings(self.settings)

    @property
    def route(self) -> list[str]:
        """Step names for this ontology: ``settings.routing``, else exact then retrieval."""
        route = self.settings.routing.get(self.ontology, ["exact", "retrieval"])
        unknown = set(route) - set(STEP_NAMES)
        if unknown:
            raise ConfigError(f"routing for {self.ontology}: unknown steps {sorted(unknown)}; use {STEP_NAMES}")
        return route

    @cached_property
    def steps(self) -> list[Step]:
        if self._steps is not None:
            return self._steps
        factories: dict[str, Callable[[], Step]] = {
            "retrieval": self._retrieval_step, "llm": self._llm_step, "rerank": self._rerank_step,
        }  # fmt: skip
        return [LexicalStep(self.lexicon) if name == "exact" else LazyStep(name, factories[name]) for name in self.route]

    def _retrieval_step(self) -> Step:
        # With a calibration the abstain threshold applies to calibrated confidence, in _verify.
        threshold = 0.0 if self.calibration else self.settings.min_confidence
        return RetrievalStep(self.index, self.encoder, self.settings.top_k, threshold)

    def _llm_step(self) -> Step:
        s = self.settings
        return LlmGenerateStep(self.lm, self.engine, self.ontology, constrained=s.llm_constrained,
                               agree=self.agreement, min_agreement=s.llm_min_agreement, batch_size=s.llm_batch_size,
                               max_new_tokens=s.llm_max_new_tokens, templates=s.llm_prompts or None)  # fmt: skip

    def _rerank_step(self) -> Step:
        s = self.settings
        return LlmRerankStep(self.lm, self.ontology, top_k=s.top_k, batch_size=s.llm_batch_size,
                             templates=s.llm_prompts or None)  # fmt: skip

    def agreement(self, term: str, ident: str) -> float:
        """Cosine of the term and the ID's label (or the ID itself, for symbols): does an LLM answer fit?"""
        label = self.lexicon.labels.get(ident)
        texts = [term, ident] + ([label] if label else [])
        vectors = self.encoder.encode(texts)
        return float(max(vectors[1:] @ vectors[0]))

    def provenance(self) -> tuple[str, str | None]:
        """(models, adapter) recorded with every cached answer."""
        encoder = self.settings.encoder_model or "all-MiniLM-L6-v2"
        parts = [f"{name}[{encoder}:{self.variant}]" if name == "retrieval" else name for name in self.route]
        adapter = None
        if {"llm", "rerank"} & set(self.route):
            parts.append(f"lm={self.settings.llm_model or 'SmolLM2-135M-Instruct'}")
            adapter = self.settings.llm_adapters.get(self.ontology)
        return "+".join(parts), adapter

    def key(self, term: str) -> str:
        """The normalized string under which a term is computed and cached."""
        return dedup_key(term, self.lexicon.has_symbols)

    def normalize(self, terms: Sequence[str | None]) -> list[Mapping]:
        """One Mapping per input, in order; each distinct key is computed once."""
        keys = [self.key(t) if isinstance(t, str) else "" for t in terms]
        items: dict[str, WorkItem] = {}
        for term, key in zip(terms, keys, strict=True):
            if key and key not in items:
                items[key] = WorkItem(key, term.strip())  # type: ignore[union-attr]
        self.run_steps(list(items.values()))
        results = []
        for term, key in zip(terms, keys, strict=True):
            if not key:  # blank input is "empty"; input with no letters or digits (emoji, symbols) is "none"
                blank = not isinstance(term, str) or not term.strip()
                results.append(Mapping(term, None, None, 0.0, "empty" if blank else "none"))
            else:
                results.append(replace(items[key].decision, term=term))  # type: ignore[type-var]
        return results

    def run_steps(self, items: list[WorkItem]) -> None:
        """Run the cascade over distinct items, then verify and fill the abstentions."""
        for step in self.steps:
            _run_isolated(step, items)
        for item in items:
            self._verify(item)

    def _verify(self, item: WorkItem) -> None:
        """Every ID written is current; an answer that is not becomes an abstention."""
        decision = item.decision
        if decision is not None and decision.id not in self.lexicon.labels:
            log.warning("%s step proposed %r, not a current %s ID: dropped", decision.method, decision.id, self.ontology)
            decision = None
        if decision is None:
            top = item.candidates[0].score if item.candidates else 0.0
            decision = Mapping(item.text, None, None, top, "none", item.candidates)
        if self.calibration is not None and decision.id is not None:
            decision.confidence = self.calibration.apply(decision.method, decision.confidence)
            if decision.method not in LEXICAL and decision.confidence < self.settings.min_confidence:
                decision = Mapping(item.text, None, None, decision.confidence, "none", item.candidates)
        decision.confidence = min(1.0, max(0.0, float(decision.confidence)))
        item.decision = decision


class LazyStep:
    """A step whose heavy parts (a model, an index) load only when some item reaches it."""

    def __init__(self, name: str, factory: Callable[[], Step]) -> None:
        self.name = name
        self._factory = factory
        self._step: Step | None = None

    def __call__(self, items: list[WorkItem]) -> None:
        if all(item.decision is not None for item in items):
            return
        if self._step is None:
            self._step = self._factory()
        self._step(items)


def _run_isolated(step: Step, items: list[WorkItem]) -> None:
    """Run a step on the batch; if it fails, per item, so one bad term cannot fail the others."""
    try:
        step(items)
    except Exception:
        log.exception("%s step failed on a batch of %d; retrying item by item", step.name, len(items))
        for item in items:
            try:
                step([item])
            except Exception as exc:
                log.warning("%s step failed on %r: %s", step.name, item.text[:80], exc)


_normalizers: dict[tuple[str, str, str], Normalizer] = {}


def get_normalizer(ontology: str, variant: str | None = None, settings: Settings | None = None) -> Normalizer:
    """A warm Normalizer per (database, ontology, variant); rebuilt when the release changes."""
    settings = settings or load_settings()
    engine = ready_engine(settings)
    variant = variant or settings.index_variant
    key = (engine.url.render_as_string(), ontology, variant)
    cached = _normalizers.get(key)
    if cached is not None:
        with engine.connect() as conn:
            if current_release(conn, ontology) == cached.release:
                return cached
    _normalizers[key] = Normalizer(ontology, engine, settings, variant)
    return _normalizers[key]


def normalize(terms: Sequence[str | None], ontology: str, variant: str | None = None) -> list[Mapping]:
    """Map each term to the best current ID of ``ontology`` with a confidence and the method used."""
    return get_normalizer(ontology, variant).normalize(terms)
