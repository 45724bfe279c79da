"""Batched greedy generation: distinct prompts, length-sorted buckets, a shared prefix computed once.

Sorting by length keeps padding (wasted compute) small within a batch; padding on the left of each
prompt's own part makes every prompt end at the same position so new tokens append in step. Every
prompt starts with the same chat template and question (35 of about 45 tokens for SmolLM2): that
prefix goes through the network once per call, and each batch starts from a copy of its key/value
cache, so only the terms themselves are prefilled per row. Position ids follow the attention mask,
so the padding between prefix and term changes nothing. IDs are a few tokens long, hence a short
``max_new_tokens``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList

from etlnorm.llm.constrain import IdTrie, TrieLogitsProcessor
from etlnorm.llm.model import LanguageModel

MAX_PROMPT_TOKENS = 512  # beyond this the prompt loses its start (system text), never the end


@dataclass(frozen=True, slots=True)
class Generated:
    """One answer: its text, its tokens (EOS excluded) and their log-probability under the model.

    ``logprob`` sums the *raw* model's log-probabilities of the generated tokens, including EOS when
    emitted: under constraints it is not renormalized over the allowed tokens, so a forced answer the
    model did not want keeps a low probability.
    """

    text: str
    token_ids: tuple[int, ...]
    logprob: float
    finished: bool  # ended with EOS (else it ran out of max_new_tokens)


def generate(
    lm: LanguageModel,
    prompts: Sequence[str],
    *,
    ontology: str | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 16,
    constraint: IdTrie | None = None,
) -> list[Generated]:
    """One greedy answer per prompt, in input order; each distinct prompt is generated once.

    ``ontology`` picks the LoRA adapter; ``constraint`` restricts answers to the trie's IDs (and
    then ``max_new_tokens`` is raised to fit the longest ID and its EOS).
    """
    distinct = list(dict.fromkeys(prompts))
    if not distinct:
        return []
    if constraint is not None:
        max_new_tokens = max(max_new_tokens, constraint.max_len + 1)
    tok = lm.tokenizer
    encoded = [ids[-MAX_PROMPT_TOKENS:] for ids in tok(distinct, add_special_tokens=False).input_ids]
    order = sorted(range(len(distinct)), key=lambda i: len(encoded[i]))
    answers: dict[int, Generated] = {}
    with lm.for_ontology(ontology) as model, torch.inference_mode():
        prefix = Prefix.of(model, encoded, lm.device)
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start : start + batch_size]
            for i, answer in zip(batch, _generate_batch(lm, model, prefix, [encoded[i] for i in batch],
                                                         max_new_tokens, constraint), strict=True):  # fmt: skip
                answers[i] = answer
    by_prompt = {distinct[i]: a for i, a in answers.items()}
    return [by_prompt[p] for p in prompts]


def pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device, *, left: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask): sequences right-aligned (``left`` padding, for generation) or
    left-aligned (right padding, for scoring)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            cols = slice(width - len(seq), width) if left else slice(0, len(seq))
            ids[row, cols] = torch.tensor(seq, dtype=torch.long)
            mask[row, cols] = 1
    return ids.to(device), mask.to(device)


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own."""
    if len(sequences) < 2:
        return 0
    shortest = min(len(s) for s in sequences) - 1
    n = 0
    while n < shortest and len({s[n] for s in sequences}) == 1:
        n += 1
    return n


@dataclass
class Prefix:
    """The tokens all prompts of a call share and the network's key/value cache after them."""

    ids: list[int]
    cache: Any  # a transformers Cache, or None when nothing is shared

    MIN_LENGTH = 8  # below this a shared cache saves less than it costs to copy

    @classmethod
    def of(cls, model: Any, sequences: Sequence[Sequence[int]], device: torch.device) -> Prefix:
        n = shared_prefix_length(sequences)
        if n < cls.MIN_LENGTH:
            return cls([], None)
        ids = list(sequences[0][:n])
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1)
        return cls(ids, out.cache)

    def inputs(self, sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device, *, left: bool = True,
               reuse: bool = False) -> tuple[torch.Tensor, torch.Tensor, Any]:  # fmt: skip
        """(input_ids, attention_mask, cache for this batch): prefix + own parts padded on the left
        (generation: every row ends together) or on the right (scoring: positions stay natural).

        ``reuse``: expand this prefix's own cache instead of a copy (a training step computes its
        prefix once, with gradients, which a copy would cut)."""
        n = len(self.ids)
        own_ids, own_mask = pad([s[n:] for s in sequences], pad_id, device, left=left)
        if self.cache is None:
            return own_ids, own_mask, None
        rows = len(sequences)
        head = torch.tensor([self.ids] * rows, dtype=torch.long, device=device)
        cache = self.cache if reuse else copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return (torch.cat([head, own_ids], dim=1), torch.cat([torch.ones_like(head), own_mask], dim=1), cache)


def _generate_batch(
    lm: LanguageModel, model, prefix: Prefix, sequences: list[list[int]], max_new_tokens: int,
    constraint: IdTrie | None,
) -> list[Generated]:
    tok = lm.tokenizer
    input_ids, attention_mask, cache = prefix.inputs(sequences, tok.pad_token_id, lm.device)
    prompt_len = input_ids.shape[1]
    processors = LogitsProcessorList([TrieLogitsProcessor(constraint, prompt_len)] if constraint else [])
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        **({"cache": cache} if cache is not None else {}),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        logits_processor=processors,
        return_dict_in_generate=True,
        output_logits=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=lm.eos_token_id,
    )
    new = out.sequences[:, prompt_len:]
    steps = new.shape[1]
    token_logprobs = torch.zeros(new.shape, dtype=torch.float32)
    for t in range(steps):  # one step at a time: [batch, steps, vocab] at once is hundreds of MB
        logp = torch.log_softmax(out.logits[t].float(), dim=-1)
        token_logprobs[:, t] = logp.gather(1, new[:, t : t + 1]).squeeze(1).cpu()
    results = []
    eos = lm.eos_token_id
    for row, seq in enumerate(new.tolist()):
        n = seq.index(eos) + 1 if eos in seq else len(seq)
        finished = eos in seq
        tokens = tuple(seq[: n - 1] if finished else seq[:n])
        text = tok.decode(list(tokens), skip_special_tokens=True).strip()
        results.append(Generated(text, tokens, float(token_logprobs[row, :n].sum()), finished))
    return results
