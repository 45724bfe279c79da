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
from etlnorm.lexical import LexicalStep, Lexicon, dedup_key, load_lexicon
from etlnorm.mapping import Mapping, Step, WorkItem
from etlnorm.retrieval import RetrievalIndex, RetrievalStep, load_index
from etlnorm.store import current_release

log = logging.getLogger(__name__)


class Normalizer:
    """Normalizes terms to current IDs of one ontology release."""

    def __init__(self, ontology: str, engine: Engine | None = None, settings: Settings | None = None,
                 variant: str | None = None, steps: Sequence[Step] | None = None) -> None:  # fmt: skip
        self.settings = settings or load_settings()
        self.engine = engine or ready_engine(self.settings)
        self.ontology = ontology
        self.variant = variant or self.settings.index_variant
        with self.engine.connect() as conn:
            self.release = current_release(conn, ontology)
        self._steps = list(steps) if steps is not None else None

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
    def steps(self) -> list[Step]:
        if self._steps is not None:
            return self._steps
        return [LexicalStep(self.lexicon), LazyStep("retrieval", self._retrieval_step)]

    def _retrieval_step(self) -> Step:
        return RetrievalStep(self.index, self.encoder, self.settings.top_k, self.settings.min_confidence)

    def provenance(self) -> tuple[str, str | None]:
        """(models, adapter) recorded with every cached answer."""
        encoder = self.settings.encoder_model or "all-MiniLM-L6-v2"
        return f"lexical+retrieval[{encoder}:{self.variant}]", None

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
