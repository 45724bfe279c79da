"""The cascade: each distinct normalized string runs through the tiers once, every answer is verified.

``Normalizer`` keeps the lexicon, encoder and index of one ontology release warm across calls;
``normalize()`` is the one-call front door that reuses a Normalizer per ontology.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.calibration import VERSION as CALIBRATION_VERSION
from etlnorm.cascade.calibration import Calibration, calibration_folder, fit_heldout, load_calibration
from etlnorm.cascade.chars import CharIndex
from etlnorm.cascade.crossencoder import POOL, CrossEncoderTier, load_reranker, strings_by_id
from etlnorm.cascade.encoder import Encoder, encoder_for, encoder_stamp, fingerprint
from etlnorm.cascade.fuzzy import FuzzyTier
from etlnorm.cascade.heldout import HeldOut, calibration_set
from etlnorm.cascade.lexical import LexicalTier, Lexicon, dedup_key, load_lexicon
from etlnorm.cascade.llm_tiers import LlmGenerateTier, LlmRerankTier
from etlnorm.cascade.retrieval import (
    RetrievalIndex,
    RetrievalTier,
    View,
    load_index,
    release_strings,
    view_variant,
)
from etlnorm.cascade.tier import LazyTier, Tier, run_tier
from etlnorm.config import Settings, load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.errors import ConfigError, EtlnormError
from etlnorm.files import read_json
from etlnorm.llm.model import (
    ADAPTER_METADATA,
    LanguageModel,
    load_from_settings,
    pick_batch_size,
    rerank_adapter_name,
)
from etlnorm.ontology.curation import Curated, curations
from etlnorm.ontology.store import current_fingerprint, current_release
from etlnorm.ontology.user_synonyms import user_synonyms, user_synonyms_tag

log = logging.getLogger(__name__)

TIER_NAMES = ("lexical", "fuzzy", "llm", "retrieval", "crossencoder", "rerank")
# Settings an answer depends on besides the models: part of every cached answer's producer.
ANSWER_SETTINGS = ("top_k", "min_confidence", "char_alpha", "map_negated", "llm_constrained", "llm_min_agreement",
                   "llm_prompts", "llm_max_new_tokens")  # fmt: skip
LEXICAL_METHODS = ("exact", "synonym")
RENAMED = {"exact": "lexical"}  # route names of earlier releases
INDEX_TIERS = frozenset({"retrieval", "crossencoder", "rerank"})  # tiers that read the retrieval index
LLM_TIERS = frozenset({"llm", "rerank"})  # tiers that run the causal LM


class Normalizer:
    """Normalizes terms to current IDs of one ontology release.

    ``route`` (tier names) overrides ``settings.routing``; ``tiers`` replaces the route with given
    tier objects (tests, benchmarks); ``lm`` is the LLM of the llm/rerank tiers; ``strings`` limits
    the lexicon and the index to these (id, string) pairs (the train part of a held-out protocol).
    """

    def __init__(self, ontology: str, engine: Engine | None = None, settings: Settings | None = None,
                 variant: str | None = None, route: Sequence[str] | None = None,
                 tiers: Sequence[Tier] | None = None, lm: LanguageModel | None = None,
                 calibrated: bool = True, strings: View | None = None) -> None:  # fmt: skip
        self.settings = settings or load_settings()
        self.engine = engine or ready_engine(self.settings)
        self.ontology = ontology
        self.strings = strings
        self.variant = view_variant(strings) if strings is not None else variant or self.settings.index_variant
        self.content = content_tag(self.engine, ontology)
        self.fingerprint = self.content[0]  # the release's content: what machines key by
        with self.engine.connect() as conn:
            self.release = current_release(conn, ontology)  # its label: what people read
        self.route = check_route(ontology, route or self.settings.routing.get(ontology, ["lexical", "fuzzy", "retrieval"]))
        self._tiers = list(tiers) if tiers is not None else None
        self._lm = lm
        self.calibrated = calibrated

    @cached_property
    def calibration(self) -> Calibration | None:
        """The curves fitted for this release and configuration (read on first use). Missing ones are
        fitted here on held-out strings of the view (``self_calibrate``) unless ``auto_calibrate`` is
        off or the tiers were given; when that is impossible (too few EXACT synonyms) confidence
        stays each tier's raw score and a warning says so."""
        if not self.calibrated:
            return None
        found = load_calibration(calibration_folder(self.settings), self.ontology, self.release, self.calibration_key())
        if found is not None or not self.settings.auto_calibrate or self._tiers is not None:
            return found
        try:
            return self.self_calibrate()[0]
        except EtlnormError as exc:
            log.warning("%s: not calibrated (%s); confidence is each tier's raw score", self.ontology, exc)
            return None

    def calibration_split(self, seed: int = 13, limit: int | None = None) -> HeldOut:
        """The held-out strings ``self_calibrate`` fits on (``calibration_size`` of them, fewer with an
        LLM in the route): what an evaluation of this normalizer must not score on."""
        size = limit or (self.settings.llm_calibration_size if self.uses_llm else self.settings.calibration_size)
        return calibration_set(self.engine, self.ontology, self.view, seed, size)

    def self_calibrate(self, seed: int = 13, limit: int | None = None
                       ) -> tuple[Calibration, dict[str, dict[str, Any]], Path]:  # fmt: skip
        """Fit and store this configuration's curves on ``heldout.calibration_set`` of its view: the
        same route, raw and non-abstaining, over the view less the held-out strings (their vectors
        reused from this index); fitted on one half, reported on the other (``fit_heldout``)."""
        self._build_index()
        split = self.calibration_split(seed, limit)
        log.info("calibrating %s on %d held-out strings (once per release and configuration)",
                 self.ontology, len(split.test))  # fmt: skip
        lm = self.lm if self.uses_llm else None
        raw = Normalizer(self.ontology, self.engine, self.settings.model_copy(update={"min_confidence": 0.0}),
                         route=self.route, lm=lm, calibrated=False, strings=split.train)  # fmt: skip
        queries, gold = [q for q, _ in split.test], [g for _, g in split.test]
        return fit_heldout(raw, queries, gold, self.calibration_key(), calibration_folder(self.settings), seed)

    @cached_property
    def lexicon(self) -> Lexicon:
        return load_lexicon(self.engine, self.ontology, self.strings)

    @cached_property
    def encoder(self) -> Encoder:
        return encoder_for(self.settings, self.ontology)

    @cached_property
    def index(self) -> RetrievalIndex:
        return load_index(self.engine, self.ontology, self.encoder, self.settings.home_dir, self.variant,
                          strings=self.strings)  # fmt: skip

    @cached_property
    def view(self) -> list[tuple[str, str]]:
        """The (id, string) pairs the index holds: the view, or the release's plus the user's synonyms."""
        if self.strings is not None:
            return list(self.strings)
        pairs = release_strings(self.engine, self.ontology, self.variant)
        return pairs + [(u.id, u.text) for u in user_synonyms(self.engine, self.ontology)]

    @cached_property
    def chars(self) -> CharIndex:
        """Character n-grams over the index's strings (built in seconds, kept in memory)."""
        return CharIndex.build(self.view, self.lexicon.labels)

    @cached_property
    def strings_by_id(self) -> dict[str, list[str]]:
        return strings_by_id(self.view)

    @cached_property
    def retrieval(self) -> RetrievalTier:
        chars = self.chars if self.settings.char_tier else None
        # The cross-encoder reads a deeper list than the answer keeps; it cuts it back to top_k.
        top_k = max(self.settings.top_k, POOL) if "crossencoder" in self.route else self.settings.top_k
        return RetrievalTier(self.index, self.encoder, top_k, 0.0, chars, self.settings.char_alpha)

    def search(self, texts: list[str], k: int) -> list[list[Candidate]]:
        """Retrieval's top-k candidates of each text (dense, mixed with characters when on)."""
        return self.retrieval.search(texts, k)

    @cached_property
    def lm(self) -> LanguageModel:
        """The LLM of the llm/rerank steps: given, or loaded once from the ``llm_*`` settings."""
        s = self.settings
        untuned = [tier for tier, adapters in (("llm", s.llm_adapters), ("rerank", s.llm_rerank_adapters))
                   if tier in self.route and self.ontology not in adapters]  # fmt: skip
        if self._lm is None and not s.llm_model and untuned:
            log.warning("route of %s has %s but the LLM is the untuned offline SmolLM2-135M, which knows no IDs: "
                        "fine-tune an adapter (etlnorm finetune --task generate|rerank) or set llm_model",
                        self.ontology, " and ".join(untuned))  # fmt: skip
        lm = self._lm if self._lm is not None else load_from_settings(s)
        for name, adapters in ((self.ontology, s.llm_adapters), (rerank_adapter_name(self.ontology), s.llm_rerank_adapters)):
            if self.ontology in adapters:  # a given model gets the configured adapters too (loaded once)
                lm.load_adapter(name, adapters[self.ontology])
        return lm

    @cached_property
    def tiers(self) -> list[Tier]:
        if self._tiers is not None:
            return self._tiers
        builders: dict[str, tuple[type, Callable[[], Tier]]] = {
            "retrieval": (RetrievalTier, self._retrieval_tier), "llm": (LlmGenerateTier, self._llm_tier),
            "rerank": (LlmRerankTier, self._rerank_tier), "crossencoder": (CrossEncoderTier, self._crossencoder_tier),
        }  # fmt: skip
        tiers: list[Tier] = []
        for name in self.route:
            if name == "lexical":
                tiers.append(LexicalTier(self.lexicon, map_negated=self.settings.map_negated))
            elif name == "fuzzy":
                tiers.append(FuzzyTier(self.lexicon))
            else:
                kind, build = builders[name]
                tiers.append(LazyTier(name, kind.acts_on, build))
        return tiers

    def _retrieval_tier(self) -> Tier:
        return self.retrieval

    def _crossencoder_tier(self) -> Tier:
        folder = self.settings.reranker_models.get(self.ontology)
        if folder is None:
            raise ConfigError(f"route of {self.ontology} has crossencoder but reranker_models has no "
                              f"{self.ontology} entry; train one with `etlnorm reranker finetune`")  # fmt: skip
        return CrossEncoderTier(load_reranker(folder), self.strings_by_id, self.settings.top_k, 0.0)

    def _llm_tier(self) -> Tier:
        s = self.settings
        return LlmGenerateTier(self.lm, self.engine, self.ontology, constrained=s.llm_constrained,
                               agree=self.agreement, min_agreement=s.llm_min_agreement,
                               batch_size=pick_batch_size(s.llm_batch_size, self.lm.device),
                               max_new_tokens=s.llm_max_new_tokens, templates=s.llm_prompts or None)  # fmt: skip

    def _rerank_tier(self) -> Tier:
        s = self.settings
        folder = s.llm_rerank_adapters.get(self.ontology)
        weight = float(read_json(folder, ADAPTER_METADATA, "rerank adapter")["weight"]) if folder else None
        return LlmRerankTier(self.lm, self.ontology, top_k=s.top_k,
                             batch_size=pick_batch_size(s.llm_batch_size, self.lm.device),
                             templates=s.llm_prompts or None, weight=weight,
                             adapter=rerank_adapter_name(self.ontology) if folder else None)  # fmt: skip

    def prepare(self) -> None:
        """Build what is persisted and shared (the retrieval index, then the calibration), so
        parallel workers only load it."""
        self._build_index()
        self.calibration  # noqa: B018 - fitting it, when missing, is the point

    @property
    def uses_index(self) -> bool:
        return bool(INDEX_TIERS & set(self.route))

    @property
    def uses_llm(self) -> bool:
        return bool(LLM_TIERS & set(self.route))

    def _build_index(self) -> None:
        if self.uses_index:
            self.index  # noqa: B018 - building is the point

    def agreement(self, term: str, ident: str) -> float:
        """Cosine of the term and the ID's label (or the ID itself, for symbols): does an LLM answer fit?"""
        label = self.lexicon.labels.get(ident)
        texts = [term, ident] + ([label] if label else [])
        vectors = self.encoder.encode(texts)
        return float(max(vectors[1:] @ vectors[0]))

    def provenance(self) -> tuple[str, str | None]:
        """(models, adapter) recorded with every cached answer."""
        encoder = encoder_stamp(self.settings, self.ontology)  # without loading it
        chars = "+chars" if self.settings.char_tier else ""
        parts = [f"{name}[{encoder}:{self.variant}{chars}]" if name == "retrieval" else name for name in self.route]
        reranker = self.settings.reranker_models.get(self.ontology)
        if "crossencoder" in self.route and reranker and Path(reranker).expanduser().is_dir():
            parts.append(f"reranker={fingerprint(Path(reranker).expanduser())}")
        adapter = None
        if self.uses_llm:
            parts.append(f"lm={self.settings.llm_model or 'SmolLM2-135M-Instruct'}")
            folders = [adapters.get(self.ontology) for tier, adapters in
                       (("llm", self.settings.llm_adapters), ("rerank", self.settings.llm_rerank_adapters))
                       if tier in self.route]  # fmt: skip
            adapter = "+".join(f for f in folders if f) or None
        return "+".join(parts), adapter

    def calibration_key(self) -> str:
        """Names the configuration raw scores depend on (release content, route, index variant,
        encoder weights, reranker, LLM, adapter, user synonyms): a calibration fitted under another
        one is not applied."""
        models, adapter = self.provenance()
        return hashlib.sha256(f"{models}|{adapter}|{self.content}|{CALIBRATION_VERSION}".encode()).hexdigest()[:12]

    def producer(self) -> str:
        """Fingerprint of what computes this normalizer's answers apart from the release content:
        route, models (encoder weights), adapters, user synonyms and the settings answers depend on.
        A cached mapping is reused only under the same producer and the same content."""
        models, adapter = self.provenance()
        knobs = self.settings.model_dump_json(include=set(ANSWER_SETTINGS))
        return hashlib.sha256(f"{models}|{adapter}|{self.content[1]}|{knobs}|{CALIBRATION_VERSION}".encode()).hexdigest()[:16]

    def lexical_ids(self, terms: Sequence[str]) -> list[str | None]:
        """The ID the lexical tier alone gives each term (None: no exact match), from this release's
        lexicon: a cached exact match it still gives is an answer the new release left as it was."""
        items = [WorkItem(self.key(t), t.strip()) for t in terms]
        LexicalTier(self.lexicon, map_negated=self.settings.map_negated)(items)
        return [i.decision.id if i.decision is not None and i.decision.method in LEXICAL_METHODS else None
                for i in items]  # fmt: skip

    def key(self, term: str) -> str:
        """The normalized string under which a term is computed and cached."""
        return dedup_key(term, self.lexicon.has_symbols)

    def normalize(self, terms: Sequence[str | None]) -> list[Answer]:
        """One Answer per input, in order; each distinct key is computed once, alone: its answer
        does not depend on the other terms of the batch."""
        keys = [self.key(t) if isinstance(t, str) else "" for t in terms]
        items: dict[str, WorkItem] = {}
        for term, key in zip(terms, keys, strict=True):
            if key and key not in items:
                items[key] = WorkItem(key, term.strip())  # type: ignore[union-attr]
        self.run_tiers(list(items.values()))
        curated = curations(self.engine, self.ontology, [t for t, k in zip(terms, keys, strict=True) if k])
        results = []
        for term, key in zip(terms, keys, strict=True):
            if not key:  # blank input is "empty"; input with no letters or digits (emoji, symbols) is "none"
                blank = not isinstance(term, str) or not term.strip()
                results.append(Answer(term, None, None, 0.0, "empty" if blank else "none"))
                continue
            answer = replace(items[key].decision, term=term)  # type: ignore[type-var]
            results.append(self._curated(answer, curated[term]) if term in curated else answer)
        return results

    def _curated(self, answer: Answer, curation: Curated) -> Answer:
        """A person's decision over the cascade's: the curated ID (method ``curated``, confidence 1),
        or, when the answer was rejected, the next candidate above ``min_confidence`` or none."""
        if curation.positive:
            if curation.id is None:  # curated ID obsolete with no replacement: never written silently
                return Answer(answer.term, None, None, 0.0, "none", answer.candidates)
            return Answer(answer.term, curation.id, curation.label, 1.0, "curated", answer.candidates)
        if answer.id not in curation.rejected:
            return answer
        for cand in answer.candidates:
            if cand.id not in curation.rejected and cand.score >= self.settings.min_confidence:
                return Answer(answer.term, cand.id, cand.label, cand.score, answer.method, answer.candidates)
        return Answer(answer.term, None, None, 0.0, "none", answer.candidates)

    def run_tiers(self, items: list[WorkItem]) -> None:
        """Run the cascade over distinct items, each tier on the items it acts on, then verify
        and fill the abstentions."""
        for tier in self.tiers:
            run_tier(tier, items)
        for item in items:
            self._verify(item)

    def _verify(self, item: WorkItem) -> None:
        """Every ID written is current and at or above ``min_confidence``, whatever the method; the
        rest become abstentions (``none``) that keep their candidates. Confidence and candidate
        scores are calibrated first (the decision's method's curve), so a ``none`` carries the
        confidence its answer would have had, on the same scale."""
        decision = item.decision
        if decision is not None and decision.id is not None and decision.id not in self.lexicon.labels:
            log.warning("%s tier proposed %r, not a current %s ID: dropped", decision.method, decision.id, self.ontology)
            decision = None
        if decision is None:  # candidates without a decision come from retrieval (the LLM failed, say)
            top = item.candidates[0].score if item.candidates else 0.0
            decision = Answer(item.text, None, None, top, "none", item.candidates)
            method = "retrieval"
        else:
            method = decision.method
        if self.calibration is not None:
            cal, cands = self.calibration, decision.candidates
            ident = decision.id or (cands[0].id if cands else None)
            decision.confidence = cal.apply(method, decision.confidence, [c.score for c in cands if c.id != ident])
            decision.candidates = [replace(c, score=cal.apply(method, c.score, [o.score for o in cands if o.id != c.id]))
                                   for c in cands]  # fmt: skip
        decision.confidence = min(1.0, max(0.0, float(decision.confidence)))
        if decision.id is not None and decision.confidence < self.settings.min_confidence:
            decision = Answer(item.text, None, None, decision.confidence, "none", decision.candidates)
        if item.negated and decision.id is not None:  # map_negated: the ID of the denied finding, flagged
            decision.method = "negated"
        item.decision = decision


def check_route(ontology: str, route: Sequence[str]) -> list[str]:
    """Tier names, in order; names of earlier releases are read as today's, unknown ones refused."""
    renamed = [RENAMED.get(name, name) for name in route]
    if renamed != list(route):
        log.warning("routing for %s: %s is now spelled %s", ontology, list(route), renamed)
    unknown = sorted(set(renamed) - set(TIER_NAMES))
    if unknown:
        raise ConfigError(f"routing for {ontology}: unknown tiers {unknown}; use {TIER_NAMES}")
    return renamed


_normalizers: dict[tuple[str, str, str], Normalizer] = {}


def get_normalizer(ontology: str, variant: str | None = None, settings: Settings | None = None) -> Normalizer:
    """A warm Normalizer per (database, ontology, variant); rebuilt when the settings, the release's
    content or the user's synonyms change."""
    settings = settings or load_settings()
    engine = ready_engine(settings)
    variant = variant or settings.index_variant
    key = (engine.url.render_as_string(), ontology, variant)
    cached = _normalizers.get(key)
    if cached is not None and cached.settings == settings and content_tag(engine, ontology) == cached.content:
        return cached
    _normalizers[key] = Normalizer(ontology, engine, settings, variant)
    return _normalizers[key]


def content_tag(engine: Engine, ontology: str) -> tuple[str, str]:
    """What a warm normalizer's answers depend on in the database: the release's content fingerprint
    and the user synonyms."""
    with engine.connect() as conn:
        fingerprint = current_fingerprint(conn, ontology)
    return fingerprint, user_synonyms_tag(engine, ontology)


def raw_normalizer(ontology: str, settings: Settings | None = None, variant: str | None = None) -> Normalizer:
    """A normalizer that neither calibrates nor abstains: every method's raw scores, for fitting."""
    settings = (settings or load_settings()).model_copy(update={"min_confidence": 0.0})
    return Normalizer(ontology, None, settings, variant, calibrated=False)


def normalize(terms: Sequence[str | None], ontology: str, variant: str | None = None) -> list[Answer]:
    """Map each term to the best current ID of ``ontology`` with a confidence and the method used."""
    return get_normalizer(ontology, variant).normalize(terms)
