"""The LLM as a reranker: score retrieved candidates by the model's likelihood given the term.

Scoring a short list is a task a small model can do where free generation of numeric IDs fails
(the paper: GO/HPO IDs are not lexicalized). Each candidate is scored by the mean per-token
log-likelihood of an answer given a prompt (mean, not sum, so long labels are not penalized);
scores become [0, 1] by a softmax over one term's candidates.

``by`` picks the answer: ``"label"`` (prompt asks for the term's name, answer is the candidate
label: what ``etlnorm finetune --task rerank`` trains), ``"id"`` (the paper's ID prompt, answer is
the candidate ID) or ``"both"`` (average of the two). With the base SmolLM2-135M, ``label`` ranked
the gold first far more often than ``id`` on the fixed HPO set of tests/llm/test_rerank.py (see
that test for the measured rates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

import torch

from etlnorm.llm.generate import MAX_PROMPT_TOKENS, Prefix, pad
from etlnorm.llm.model import LanguageModel
from etlnorm.llm.prompts import ONTOLOGY_NAMES, build_prompt, clean_term, render

By = Literal["label", "id", "both"]
MAX_ANSWER_TOKENS = 48


class Choice(Protocol):
    """What the reranker reads of a candidate: its ID and, when it has one, its label."""

    @property
    def id(self) -> str: ...

    @property
    def label(self) -> str | None: ...


class Ranked(NamedTuple):
    """A candidate as the reranker scored it."""

    id: str
    label: str | None
    score: float


def label_message(ontology: str, term: str) -> str:
    """The question whose answer is a term name (for label scoring)."""
    name = ONTOLOGY_NAMES.get(ontology, ontology.upper())
    return f"What is the {name} term name for {clean_term(term)}?"


def answer_loglik(
    lm: LanguageModel, pairs: Sequence[tuple[str, str]], *, ontology: str | None = None, batch_size: int = 32
) -> list[float]:
    """Mean log-probability per token of each answer (EOS included) after its prompt, batched.

    The prompts' shared start (chat template and question) is computed once (``generate.Prefix``),
    each prompt once per batch, and its answers over its cache (``mean_answer_logprob``).
    """
    seqs = answer_sequences(lm, pairs)
    # By prompt, then answer length: a batch holds whole candidate lists, each prompt read once.
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i][0]), seqs[i][0], len(seqs[i][1])))
    out = [0.0] * len(seqs)
    with lm.for_ontology(ontology) as model, torch.inference_mode():
        prefix = Prefix.of(model, [p for p, _ in seqs], lm.device)  # prompts only: answers start after it
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start : start + batch_size]
            scores = mean_answer_logprob(model, prefix, [seqs[i] for i in batch], lm.tokenizer.pad_token_id, lm.device)
            for i, score in zip(batch, scores.tolist(), strict=True):
                out[i] = float(score)
    return out


def answer_sequences(lm: LanguageModel, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(prompt tokens, answer tokens + EOS) per (prompt, answer) text pair, both cut to their limits."""
    if not pairs:
        return []
    tok = lm.tokenizer
    prompts = tok([p for p, _ in pairs], add_special_tokens=False).input_ids
    answers = tok([a for _, a in pairs], add_special_tokens=False).input_ids
    return [(p[-MAX_PROMPT_TOKENS:], a[:MAX_ANSWER_TOKENS] + [lm.eos_token_id]) for p, a in zip(prompts, answers, strict=True)]


def mean_answer_logprob(model: torch.nn.Module, prefix: Prefix, seqs: Sequence[tuple[list[int], list[int]]],
                        pad_id: int, device: torch.device, *, reuse: bool = False) -> torch.Tensor:  # fmt: skip
    """Per (prompt, answer) row: the mean log-probability of the answer's tokens.

    Two forward passes: each distinct prompt once after the shared prefix (its own part padded on
    the left, so that every prompt ends in the last column, whose logits give each answer's first
    token), then every answer over a copy of its prompt's key/value cache. A term scored against k
    candidates is read once, not k times. Positions follow the attention mask, so padding changes
    nothing. The scoring and the training of the reranker share it, so the adapter learns the very
    score the tier ranks by (``reuse``: train with the prefix's own cache, see ``Prefix.inputs``)."""
    n = len(prefix.ids)
    where = {p: i for i, p in enumerate(dict.fromkeys(tuple(p) for p, _ in seqs))}
    prompts = [list(p) for p in where]
    rows = torch.tensor([where[tuple(p)] for p, _ in seqs], dtype=torch.long, device=device)
    ids, mask, cache = prefix.inputs(prompts, pad_id, device, left=True, reuse=reuse)
    read = model(input_ids=ids[:, n:], attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)[:, n:],
                 cache=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
    cache = read.cache
    cache.batch_select_indices(rows)
    answers, answer_mask = pad([a for _, a in seqs], pad_id, device, left=False)
    start = mask.sum(1, keepdim=True)[rows]  # each answer's first position: its prompt's length
    positions = start + torch.arange(answers.shape[1], device=device)
    logits = model(input_ids=answers, attention_mask=torch.cat([mask[rows], answer_mask], dim=1),
                   position_ids=positions, cache=cache, use_cache=True).logits  # fmt: skip
    # The prompt's last logits predict an answer's first token, the answer's own logits the rest.
    logits = torch.cat([read.logits[:, -1:][rows], logits[:, :-1]], dim=1).float()
    token = torch.log_softmax(logits, dim=-1).gather(2, answers.unsqueeze(2)).squeeze(2)
    weights = answer_mask / answer_mask.sum(1, keepdim=True)
    return (token * weights).sum(dim=1)


def softmax(scores: Sequence[float]) -> list[float]:
    """Scores as probabilities over one candidate list."""
    if not scores:
        return []
    top = max(scores)
    exp = [math.exp(s - top) for s in scores]
    total = sum(exp)
    return [e / total for e in exp]


def rerank(
    lm: LanguageModel,
    ontology: str,
    queries: Sequence[tuple[str, Sequence[Choice]]],
    *,
    by: By = "label",
    batch_size: int = 32,
    templates: Mapping[str, str] | None = None,
    adapter: str | None = None,
) -> list[list[Ranked]]:
    """For each (term, candidates): the candidates best first, ``score`` = softmax of the LLM scores.

    A candidate without a label is scored on its ID under ``by="label"``.
    ``adapter``: the LoRA adapter to run with (default: the ontology's).
    """
    adapter = adapter or ontology
    tok = lm.tokenizer
    pairs: list[tuple[str, str]] = []
    slots: list[list[list[int]]] = []  # per query, per candidate: indices into pairs
    for term, cands in queries:
        id_prompt = build_prompt(tok, ontology, term, templates)
        label_prompt = render(tok, label_message(ontology, term))
        per_query = []
        for cand in cands:
            idx = []
            if by in ("id", "both") or not cand.label:
                idx.append(len(pairs))
                pairs.append((id_prompt, cand.id))
            if by in ("label", "both") and cand.label:
                idx.append(len(pairs))
                pairs.append((label_prompt, cand.label))
            per_query.append(idx)
        slots.append(per_query)
    scores = answer_loglik(lm, pairs, ontology=adapter, batch_size=batch_size)
    return [_ranked(cands, softmax([sum(scores[i] for i in idx) / len(idx) for idx in per_query]))
            for (_, cands), per_query in zip(queries, slots, strict=True)]  # fmt: skip


def _ranked(cands: Sequence[Choice], probs: Sequence[float]) -> list[Ranked]:
    """Candidates best first (stable: ties keep retrieval's order)."""
    ranked = sorted(zip(cands, probs, strict=True), key=lambda cp: -cp[1])
    return [Ranked(c.id, c.label, float(p)) for c, p in ranked]
