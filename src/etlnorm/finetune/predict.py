"""The model's answers for a list of terms: free text (the paper's protocol) or trie-constrained.

``adapter`` is the ontology name whose LoRA adapter should be active, or None for the bare base
model (``LanguageModel.for_ontology`` disables every adapter for an ontology without one).
"""

from __future__ import annotations

from collections.abc import Sequence

from etlnorm.llm.constrain import IdTrie
from etlnorm.llm.generate import generate
from etlnorm.llm.model import LanguageModel
from etlnorm.llm.parse import extract_id
from etlnorm.llm.prompts import build_prompt

NO_ADAPTER = "\x00base"  # an ontology name no adapter is ever loaded under


def free_answers(lm: LanguageModel, ontology: str, terms: Sequence[str], *, adapter: str | None,
                 batch_size: int = 32, max_new_tokens: int = 16) -> list[tuple[str, str | None]]:  # fmt: skip
    """(generated text, ID found in it by ``extract_id``) per term, greedy, the paper's first wording."""
    tok = lm.tokenizer
    prompts = [build_prompt(tok, ontology, t) for t in terms]
    answers = generate(lm, prompts, ontology=adapter or NO_ADAPTER, batch_size=batch_size,
                       max_new_tokens=max_new_tokens)  # fmt: skip
    return [(a.text, extract_id(a.text, ontology)) for a in answers]


def constrained_answers(lm: LanguageModel, ontology: str, terms: Sequence[str], trie: IdTrie, *,
                        adapter: str | None, batch_size: int = 32) -> list[str | None]:  # fmt: skip
    """The current ID the constrained decoder spells per term (None if it ran out of tokens)."""
    tok = lm.tokenizer
    prompts = [build_prompt(tok, ontology, t) for t in terms]
    answers = generate(lm, prompts, ontology=adapter or NO_ADAPTER, batch_size=batch_size, constraint=trie)
    return [trie.complete(a.token_ids) if a.finished else None for a in answers]


def exact_match(found: Sequence[str | None], gold: Sequence[str]) -> list[bool]:
    """The paper's score: the extracted ID equals the gold string exactly."""
    return [f is not None and f == g for f, g in zip(found, gold, strict=True)]
