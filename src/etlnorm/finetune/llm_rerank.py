"""Train the LLM reranker (``etlnorm finetune --task rerank``): read a phrase, say the term's name.

The paper's finding: a small model cannot spell arbitrary numeric IDs it never memorized, but it
reads words. So the adapter learns the *label* a phrase means (``llm.rerank.label_message`` prompt →
a concept's label), and the rerank tier scores retrieval's top candidates by the likelihood of
their labels, combined with retrieval's score: ``weight`` · p + (1 − weight) · score, the weight
fitted on a dev slice as for the cross-encoder (an adapter that replaced retrieval's order would be
worse than none).

Queries are strings of the training part that retrieval has *not* indexed: a seeded sample of
synonyms moved out of the index (``finetune.reranker.dev_split``) and one seeded variant of each; a
share of them is the dev slice. Each training query is a group: the gold label and, as hard
negatives, the labels of the other candidates retrieval returns for it over that index. The loss is
listwise on the very score the tier ranks by (the mean log-likelihood of a label,
``llm.rerank.mean_answer_logprob``): cross-entropy of the softmax over the group with the gold as
target, plus the gold label's own token loss, which keeps the model saying names.

A first design, candidates behind letters with the gold letter as the target (one pass per term),
was dropped after a trial in which SmolLM2-135M learned only the position prior. Saying the label
is the kind of objective the model was pretrained on.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import Engine

from etlnorm.cascade.answer import Candidate
from etlnorm.cascade.crossencoder import combine
from etlnorm.cascade.heldout import string_key
from etlnorm.cascade.retrieval import View
from etlnorm.cascade.variants import variants
from etlnorm.config import Settings
from etlnorm.errors import EtlnormError
from etlnorm.files import write_json
from etlnorm.finetune.config import FinetuneConfig
from etlnorm.finetune.encoder import digest, retrieval_scores
from etlnorm.finetune.reranker import WEIGHTS, RerankerConfig, dev_split
from etlnorm.finetune.train import METADATA_FILE, AdapterInfo, base_model_metadata, save_adapter, train_lora
from etlnorm.llm.generate import Prefix
from etlnorm.llm.model import LanguageModel, rerank_adapter_name
from etlnorm.llm.prompts import clean_term, render
from etlnorm.llm.rerank import answer_sequences, label_message, mean_answer_logprob, rerank

log = logging.getLogger(__name__)

Search = Callable[[list[str], int], list[list[Candidate]]]  # texts, k -> retrieval's candidates
TASK = "rerank"
DEV_SHARE = 0.15  # of the training queries, held back to fit the weight
NEGATIVES = 4  # hard negatives per training query: with the gold, the tier's pool of top_k 5
GROUPS_PER_STEP = 4  # training queries per optimizer step (each a gold and its negatives)


def rerank_queries(strings: View, labels: dict[str, str | None], n: int, seed: int,
                   exclude: Collection[str] = ()) -> tuple[View, list[tuple[str, str]]]:  # fmt: skip
    """(index view, (query, gold) pairs): ``n`` synonyms moved out of ``strings``, plus one seeded
    variant of each; no query spells an ``exclude`` string (held-out queries) or an indexed one."""
    index, picked = dev_split(strings, labels, RerankerConfig(seed=seed, dev_queries=n))
    rng = random.Random(seed)
    queries = list(picked)
    for text, gold in picked:
        made = variants(text, rng)
        if made:
            queries.append((rng.choice(made)[1], gold))
    banned = {string_key(s) for s in exclude} | {string_key(t) for _, t in index}
    return index, [(q, g) for q, g in dict.fromkeys(queries) if string_key(q) not in banned]


@dataclass(frozen=True)
class Group:
    """One training query: its prompt's tokens and candidate labels' tokens (+ EOS), the gold's first."""

    prompt: list[int]
    answers: list[list[int]]


def label_groups(lm: LanguageModel, ontology: str, queries: Sequence[tuple[str, str]], labels: dict[str, str | None],
                 pools: Sequence[Sequence[Candidate]], negatives: int = NEGATIVES) -> list[Group]:  # fmt: skip
    """Per query whose gold has a label: the gold label, then up to ``negatives`` labels of the other
    candidates retrieval returned for it (``pools``, aligned with ``queries``): its hard negatives."""
    sizes, pairs = [], []
    for (query, gold), pool in zip(queries, pools, strict=True):
        if not labels.get(gold):
            continue
        wrong = [c.label for c in pool if c.id != gold and c.label][:negatives]
        prompt = render(lm.tokenizer, label_message(ontology, query))
        pairs += [(prompt, clean_term(text)) for text in [labels[gold], *wrong]]
        sizes.append(1 + len(wrong))
    seqs = iter(answer_sequences(lm, pairs))  # one tokenizer call for every group
    groups = []
    for size in sizes:
        own = [next(seqs) for _ in range(size)]
        groups.append(Group(own[0][0], [a for _, a in own]))
    return groups


def listwise_loss(lm: LanguageModel) -> Callable[[Any, Sequence[Group]], tuple[torch.Tensor, int]]:
    """The step loss of ``train_lora`` over groups: softmax cross-entropy of each group's mean label
    log-likelihoods with the gold as target, plus the gold's negative mean log-likelihood."""

    def loss(model: Any, groups: Sequence[Group]) -> tuple[torch.Tensor, int]:
        seqs = [(g.prompt, a) for g in groups for a in g.answers]
        prefix = Prefix.of(model, [p for p, _ in seqs], lm.device)
        scores = mean_answer_logprob(model, prefix, seqs, lm.tokenizer.pad_token_id, lm.device, reuse=True)
        total, start = scores.new_zeros(()), 0
        for g in groups:
            own = scores[start : start + len(g.answers)]
            total = total + torch.nn.functional.cross_entropy(own.unsqueeze(0), own.new_zeros(1, dtype=torch.long)) - own[0]
            start += len(g.answers)
        return total / len(groups), len(groups)

    return loss


def label_probabilities(lm: LanguageModel, adapter: str | None, ontology: str, terms: Sequence[str],
                        pools: Sequence[Sequence[Candidate]], batch_size: int = 32) -> list[dict[str, float]]:  # fmt: skip
    """Per term, the LLM's probability of each candidate's label (softmax over its pool; {} for none)."""
    queries = [(t, list(p)) for t, p in zip(terms, pools, strict=True) if p]
    scored = iter(rerank(lm, ontology, queries, by="label", adapter=adapter, batch_size=batch_size))
    return [{r.id: r.score for r in next(scored)} if pool else {} for pool in pools]


def reranked(lm: LanguageModel, adapter: str | None, ontology: str, terms: Sequence[str],
             pools: Sequence[Sequence[Candidate]], weight: float, batch_size: int = 32) -> list[list[Candidate]]:  # fmt: skip
    """Each pool re-ordered by ``weight`` · the LLM's label probability + (1 − ``weight``) · retrieval's score."""
    probs = label_probabilities(lm, adapter, ontology, terms, pools, batch_size)
    return [combine(pool, [p[c.id] for c in pool], weight) if pool else [] for pool, p in zip(pools, probs, strict=True)]


def fit_weight(lm: LanguageModel, adapter: str | None, ontology: str, dev: Sequence[tuple[str, str]], search: Search,
               k: int) -> tuple[float, dict[str, float]]:  # fmt: skip
    """The weight with the best dev acc@1 (ties: the smaller, closer to retrieval), and acc@1 at each."""
    terms, gold = [q for q, _ in dev], [g for _, g in dev]
    pools = search(terms, k)
    by_term = label_probabilities(lm, adapter, ontology, terms, pools)
    accuracy = {}
    for w in WEIGHTS:
        hits = [bool(p) and combine(p, [s[c.id] for c in p], w)[0].id == g for p, s, g in zip(pools, by_term, gold, strict=True)]
        accuracy[f"{w:.2f}"] = round(sum(hits) / max(1, len(hits)), 4)
    return max(WEIGHTS, key=lambda w: (accuracy[f"{w:.2f}"], -w)), accuracy


def order_scores(lm: LanguageModel, adapter: str | None, ontology: str, queries: Sequence[str], gold: Sequence[str],
                 search: Search, k: int, weight: float) -> dict[str, dict[str, float]]:  # fmt: skip
    """acc@1 / acc@5 of retrieval's top ``k`` and of the reranked order, with the reranker's terms/s."""
    pools = search(list(queries), k)
    started = time.perf_counter()
    ordered = reranked(lm, adapter, ontology, queries, pools, weight)
    rate = round(len(queries) / max(1e-9, time.perf_counter() - started), 1)
    found = [[[c.id for c in pool] for pool in lists] for lists in (pools, ordered)]
    return {"retrieval": retrieval_scores(queries, gold, found[0]),
            "reranked": {**retrieval_scores(queries, gold, found[1]), "terms_per_s": rate}}  # fmt: skip


def train_rerank_adapter(engine: Engine, settings: Settings, ontology: str, strings: View,
                         test: Sequence[tuple[str, str]], out: Path, *, lm: LanguageModel, config: FinetuneConfig,
                         queries: int = 2000, eval_limit: int | None = 500, seed: int = 13, progress: bool = True,
                         negatives: int = NEGATIVES,
                         extra_metadata: dict[str, Any] | None = None) -> tuple[AdapterInfo, dict[str, Any]]:  # fmt: skip
    """``etlnorm finetune --task rerank``: train on ``strings`` (a split's train part, or the whole
    release), fit the weight on the dev slice, then score retrieval's order against the reranked one
    on (a seeded ``eval_limit`` of) ``test``, recorded in the adapter's metadata."""
    from etlnorm.cascade.normalizer import Normalizer
    from etlnorm.cascade.retrieval import current_labels

    def search_over(view: View) -> Search:
        return Normalizer(ontology, engine, settings, route=["lexical", "fuzzy", "retrieval"], calibrated=False,
                          strings=view).search  # fmt: skip

    k = settings.top_k
    labels = current_labels(engine, ontology)
    index, picked = rerank_queries(strings, labels, queries, seed, [q for q, _ in test])
    dev = random.Random(seed).sample(picked, max(1, round(DEV_SHARE * len(picked))))
    held = set(dev)
    train = [q for q in picked if q not in held]
    search = search_over(index)
    groups = label_groups(lm, ontology, train, labels, search([q for q, _ in train], k + 1), negatives)
    if len(groups) < 2:
        raise EtlnormError(f"only {len(groups)} training queries for the {ontology} reranker")
    trained = train_lora(lm, groups, config, desc=f"fine-tuning the {ontology} reranker", progress=progress,
                         step_loss=listwise_loss(lm), rows_per_step=GROUPS_PER_STEP)  # fmt: skip
    tuned = LanguageModel(trained.model, lm.tokenizer, f"{lm.key}#rerank", lm.device)
    started = time.perf_counter()
    weight, dev_accuracy = fit_weight(tuned, None, ontology, dev, search, k)
    log.info("%s reranker: weight %.2f (dev acc@1 %s at 0, %s at it), fitted in %.0f s", ontology, weight,
             dev_accuracy["0.00"], dev_accuracy[f"{weight:.2f}"], time.perf_counter() - started)  # fmt: skip
    info = save_adapter(trained.model, out, {
        "format": 1,
        "task": TASK,
        "ontology": ontology,
        "base_model": base_model_metadata(lm),
        "top_k": k,
        "weight": weight,
        "dev_acc_at_1_by_weight": dev_accuracy,
        "data": {"queries": len(train), "dev_queries": len(dev), "sha256": digest(train),
                 "negatives": sum(len(g.answers) - 1 for g in groups)},
        "loss": f"listwise over the gold and up to {negatives} of retrieval's candidates, plus the gold's token loss",
        "hyperparameters": {**config.as_dict(), "batch_size_used": trained.batch_size},
        "metrics": trained.metrics,
        **(extra_metadata or {}),
    })  # fmt: skip
    del trained, tuned
    scores: dict[str, Any] = {}
    if test:
        sample = list(test) if not eval_limit or eval_limit >= len(test) else random.Random(seed).sample(list(test), eval_limit)
        lm.load_adapter(rerank_adapter_name(ontology), info.folder)
        scores = order_scores(lm, rerank_adapter_name(ontology), ontology, [q for q, _ in sample], [g for _, g in sample],
                              search_over(strings), k, weight)  # fmt: skip
        info.metadata["heldout_metrics"] = scores
        write_json(info.folder, METADATA_FILE, info.metadata)
    return info, scores
