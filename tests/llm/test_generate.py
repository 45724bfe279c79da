"""Batched greedy generation with the real SmolLM2 on CPU."""

from __future__ import annotations

import pytest

from etlnorm.llm.generate import generate, pad
from etlnorm.llm.prompts import build_prompt
from etlnorm.ontology.store import current_terms


@pytest.fixture(scope="module")
def hp_labels(hp, engine) -> list[str]:
    terms = current_terms(engine, "hp")
    return [label for _, label in terms[::300] if label][:64]


def test_64_terms_give_64_answers_in_input_order(smollm, hp_labels) -> None:
    assert len(hp_labels) == 64
    prompts = [build_prompt(smollm.tokenizer, "hp", t) for t in hp_labels]
    out = generate(smollm, prompts, ontology="hp", batch_size=32, max_new_tokens=6)
    assert len(out) == 64
    assert all(a.text and a.logprob < 0 and 0 < len(a.token_ids) <= 6 for a in out)
    # Order: the answers for a reversed input are the reversed answers (buckets are re-sorted inside).
    back = generate(smollm, prompts[:8][::-1], ontology="hp", batch_size=3, max_new_tokens=6)
    assert [a.text for a in back] == [a.text for a in out[:8][::-1]]


def test_duplicates_are_generated_once_and_batching_does_not_change_answers(smollm) -> None:
    terms = ["Webbed neck", "Seizure", "Webbed neck", "Short stature", "Seizure"]
    prompts = [build_prompt(smollm.tokenizer, "hp", t) for t in terms]
    batched = generate(smollm, prompts, batch_size=8, max_new_tokens=5)
    assert batched[0] is batched[2] and batched[1] is batched[4]  # one generation per distinct prompt
    alone = [generate(smollm, [p], batch_size=1, max_new_tokens=5)[0] for p in prompts[:2]]
    # Left padding with the attention mask: the same greedy text as one at a time.
    assert [a.text for a in alone] == [a.text for a in batched[:2]]
    assert generate(smollm, [], batch_size=4) == []


def test_pad_aligns_prompt_ends_or_starts() -> None:
    import torch

    ids, mask = pad([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"), left=False)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
