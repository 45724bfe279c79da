"""Constrained decoding: a prefix trie over the token sequences of every current ID.

With the trie applied as a logits processor, greedy decoding can only spell an existing,
non-obsolete ID of the ontology followed by EOS. IDs are tokenized as they follow the assistant
prompt (after the chat template's last newline), not in isolation: a tokenizer may merge a leading
space or newline into the first token, and the model only ever sees the in-context form.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import Engine
from transformers import LogitsProcessor

from etlnorm.llm.prompts import render
from etlnorm.ontology.store import current_fingerprint, current_terms

log = logging.getLogger(__name__)

_END = -1  # key of a trie node's complete ID


@dataclass
class IdTrie:
    """Token-id prefix trie of the current IDs of one ontology release."""

    root: dict[int, Any]
    eos_id: int
    max_len: int  # longest ID in tokens (max_new_tokens must cover it plus EOS)
    labels: dict[str, str | None]  # current ID -> label

    def node(self, prefix: Sequence[int]) -> dict[int, Any] | None:
        """The trie node reached by ``prefix``, None when no ID starts that way."""
        node = self.root
        for tok in prefix:
            node = node.get(tok)
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that may follow ``prefix``: ID continuations, and EOS where an ID is complete."""
        node = self.node(prefix)
        if node is None:
            return [self.eos_id]  # off the trie (a finished row being padded): only EOS/pad
        out = [t for t in node if t != _END]
        if _END in node:
            out.append(self.eos_id)
        return out

    def complete(self, tokens: Sequence[int]) -> str | None:
        """The ID spelled by ``tokens`` (EOS excluded), or None when it is not a whole current ID."""
        node = self.node(tokens)
        return None if node is None else node.get(_END)


def id_token_sequences(tokenizer: Any, ids: Sequence[str]) -> list[list[int]]:
    """Each ID's tokens as they come right after the assistant prompt."""
    anchor = render(tokenizer, "x")
    anchor_ids = tokenizer(anchor, add_special_tokens=False).input_ids
    n = len(anchor_ids)
    full = tokenizer([anchor + i for i in ids], add_special_tokens=False).input_ids
    out, merged = [], 0
    for ident, seq in zip(ids, full, strict=True):
        if seq[:n] == anchor_ids:
            out.append(seq[n:])
        else:  # the ID merged with the prompt's last token: the bare spelling is the best we have
            merged += 1
            out.append(tokenizer(ident, add_special_tokens=False).input_ids)
    if merged:
        log.warning("%d of %d IDs merge with the prompt's last token; their bare tokenization is used",
                    merged, len(ids))  # fmt: skip
    return out


def build_trie(tokenizer: Any, terms: Iterable[tuple[str, str | None]]) -> IdTrie:
    """The trie of ``terms`` ((id, label) pairs) for ``tokenizer``."""
    labels = dict(terms)
    ids = list(labels)
    root: dict[int, Any] = {}
    max_len = 0
    for ident, seq in zip(ids, id_token_sequences(tokenizer, ids), strict=True):
        node = root
        for tok in seq:
            node = node.setdefault(tok, {})
        node[_END] = ident
        max_len = max(max_len, len(seq))
    return IdTrie(root=root, eos_id=int(tokenizer.eos_token_id), max_len=max_len, labels=labels)


_TRIES: dict[tuple[str, str, str], IdTrie] = {}
_TRIE_LOCK = threading.Lock()


def loaded_content(engine: Engine, ontology: str) -> str:
    """The content fingerprint of the loaded ontology (cache key of everything built from its IDs)."""
    with engine.connect() as conn:
        return current_fingerprint(conn, ontology)


def trie_for(lm: Any, engine: Engine, ontology: str) -> IdTrie:
    """The trie of the current IDs of ``ontology``, built once per (model, ontology, release content)."""
    key = (lm.key, ontology, loaded_content(engine, ontology))
    with _TRIE_LOCK:
        trie = _TRIES.get(key)
        if trie is None:
            start = time.perf_counter()
            trie = _TRIES[key] = build_trie(lm.tokenizer, current_terms(engine, ontology))
            log.info("constraint trie for %s %s: %d IDs in %.1f s", ontology, key[2], len(trie.labels),
                     time.perf_counter() - start)  # fmt: skip
    return trie


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token that would leave the trie (the generation starts at ``prompt_len``)."""

    def __init__(self, trie: IdTrie, prompt_len: int) -> None:
        self.trie = trie
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, seq in enumerate(input_ids[:, self.prompt_len :].tolist()):
            mask[row, self.trie.allowed(seq)] = 0.0
        return scores + mask
