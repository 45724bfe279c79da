"""The LLM as cascade tiers: generate IDs for undecided terms, rerank retrieved candidates.

Both act on a whole batch of WorkItems at once (the model is only efficient batched) and never
raise for one bad term: a term the model cannot answer stays undecided for the next tier.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy import Engine

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.crossencoder import combine
from etlnorm.cascade.tier import ActsOn
from etlnorm.llm.constrain import trie_for
from etlnorm.llm.generate import generate
from etlnorm.llm.model import LanguageModel
from etlnorm.llm.parse import accepted_id, extract_id, resolve_answers
from etlnorm.llm.prompts import build_prompt, clean_term
from etlnorm.llm.rerank import rerank

log = logging.getLogger(__name__)

Agree = Callable[[str, str], float]  # (term, id) -> similarity of the ID's label/synonyms to the term


@dataclass
class LlmGenerateTier:
    """Ask the model for the ID of every undecided term (method ``llm``).

    ``constrained``: decoding can only spell a current ID (``etlnorm.llm.constrain``); otherwise the
    free text is parsed and resolved in the store, and an ID that does not resolve is dropped.
    ``agree``: optional verification, e.g. embedding similarity of term and the ID's label; an
    answer below ``min_agreement`` is rejected and the item left to the next tier.
    ``confidence`` is the answer's probability under the model (not renormalized; see generate).
    """

    lm: LanguageModel
    engine: Engine
    ontology: str
    constrained: bool = True
    agree: Agree | None = None
    min_agreement: float = 0.5
    batch_size: int = 32
    max_new_tokens: int = 16
    templates: Mapping[str, str] | None = None
    name: ClassVar[str] = "llm"
    acts_on: ClassVar[ActsOn] = ActsOn()

    def __call__(self, items: list[WorkItem]) -> None:
        todo = [it for it in items if clean_term(it.text)]
        if not todo:
            return
        try:
            self._decide(todo)
        except Exception:  # a batch-level failure (model, database) leaves the items to the next tier
            log.exception("LLM generation failed for %d %s terms; left undecided", len(todo), self.ontology)

    def _decide(self, todo: list[WorkItem]) -> None:
        tok = self.lm.tokenizer
        prompts = [build_prompt(tok, self.ontology, it.text, self.templates) for it in todo]
        trie = trie_for(self.lm, self.engine, self.ontology) if self.constrained else None
        answers = generate(self.lm, prompts, ontology=self.ontology, batch_size=self.batch_size,
                           max_new_tokens=self.max_new_tokens, constraint=trie)  # fmt: skip
        if trie is not None:
            found = [trie.complete(a.token_ids) if a.finished else None for a in answers]
            labels = [trie.labels.get(i) if i else None for i in found]
        else:
            raw = [extract_id(a.text, self.ontology) for a in answers]
            resolved = resolve_answers(self.engine, self.ontology, raw)
            found = [accepted_id(resolved.get(r)) if r else None for r in raw]
            labels = [resolved[r].label if f else None for r, f in zip(raw, found, strict=True)]
        for item, answer, ident, label in zip(todo, answers, found, labels, strict=True):
            if ident is None:
                continue
            if self.agree is not None and not self._agrees(item.text, ident):
                continue
            confidence = math.exp(answer.logprob)
            candidate = Candidate(ident, label, confidence)
            item.decision = Answer(item.text, ident, label, confidence, "llm", [candidate])
            if all(c.id != ident for c in item.candidates):
                item.candidates.insert(0, candidate)

    def _agrees(self, term: str, ident: str) -> bool:
        try:
            return float(self.agree(term, ident)) >= self.min_agreement  # type: ignore[misc]
        except Exception:
            log.warning(
                "agreement check failed for %r -> %s; answer rejected", term[:80], ident, exc_info=True
            )
            return False


@dataclass
class LlmRerankTier:
    """Re-order the candidates of retrieval's items by the likelihood of their labels (method
    ``rerank``); with a trained rerank adapter, combined with retrieval's score by its fitted weight.

    Acts on items decided by ``retrieval`` and on undecided items that carry candidates (retrieval
    abstained). The decision changes, with method ``rerank`` and the reranker's softmax score as
    confidence, when the top candidate differs from retrieval's answer or there was none.
    """

    lm: LanguageModel
    ontology: str
    top_k: int = 5
    batch_size: int = 32
    templates: Mapping[str, str] | None = None
    adapter: str | None = None  # the LoRA adapter to run with (None: the ontology's)
    weight: float | None = None  # the trained adapter's: weight · p + (1 − weight) · retrieval score
    name: ClassVar[str] = "rerank"
    acts_on: ClassVar[ActsOn] = ActsOn(decided_by=frozenset({"retrieval"}), needs_candidates=True)

    def __call__(self, items: list[WorkItem]) -> None:
        todo = [it for it in items if clean_term(it.text)]
        if not todo:
            return
        try:
            queries = [(clean_term(it.text), self._candidates(it)) for it in todo]
            ranked = rerank(self.lm, self.ontology, queries, batch_size=self.batch_size, templates=self.templates,
                            adapter=self.adapter)  # fmt: skip
        except Exception:
            log.exception(
                "LLM reranking failed for %d %s terms; retrieval's order kept", len(todo), self.ontology
            )
            return
        for item, (_, shown), order in zip(todo, queries, ranked, strict=True):
            cands = [Candidate(c.id, c.label, c.score) for c in order]
            if self.weight is not None:
                probs = {c.id: c.score for c in order}
                cands = combine(shown, [probs[c.id] for c in shown], self.weight)
            item.candidates = cands
            top = cands[0]
            previous = item.decision
            if previous is None or previous.id != top.id:
                item.decision = Answer(item.text, top.id, top.label, top.score, "rerank", list(cands))
            else:
                previous.candidates = list(cands)

    def _candidates(self, item: WorkItem) -> list[Candidate]:
        cands = item.candidates or (item.decision.candidates if item.decision else [])
        return list(cands[: self.top_k])
