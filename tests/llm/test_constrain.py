"""Constrained decoding: every answer is an existing, current ID of the ontology, whatever the input."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from etlnorm.llm.constrain import id_token_sequences, trie_for
from etlnorm.llm.generate import generate
from etlnorm.llm.prompts import build_prompt
from etlnorm.ontology.store import current_terms

GARBAGE = ["", " ", "asdkjh qwe zzz", "😀🧬🦠", "x" * 10_000, "NULL", "DROP TABLE etlnorm.term;", "\x00\t\n", "{term}"]


def _current(engine, ontology: str, ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id FROM etlnorm.term WHERE ontology = :o AND NOT obsolete AND id = ANY(:ids)"),
            {"o": ontology, "ids": ids},
        )
        return {r[0] for r in rows}


@pytest.fixture(scope="module")
def hp_trie(smollm, engine, hp):
    start = time.perf_counter()
    trie = trie_for(smollm, engine, "hp")
    trie.build_seconds = time.perf_counter() - start
    return trie


def test_trie_is_fast_cached_and_covers_every_current_id(smollm, engine, hp_trie) -> None:
    assert hp_trie.build_seconds < 20  # ~2.5 s measured for 19k HPO IDs on one free core
    assert trie_for(smollm, engine, "hp") is hp_trie  # cached per (model, ontology, release)
    ids = [i for i, _ in current_terms(engine, "hp")]
    assert len(hp_trie.labels) == len(ids)
    seqs = id_token_sequences(smollm.tokenizer, ids[:50])
    assert all(hp_trie.complete(s) == i for i, s in zip(ids, seqs, strict=False))


def test_ids_are_tokenized_as_they_follow_the_prompt(smollm) -> None:
    tok = smollm.tokenizer
    prompt = build_prompt(tok, "hp", "Webbed neck")
    in_context = tok(prompt + "HP:0000465", add_special_tokens=False).input_ids
    alone = id_token_sequences(tok, ["HP:0000465"])[0]
    assert in_context[-len(alone) :] == alone
    assert tok(prompt, add_special_tokens=False).input_ids == in_context[: -len(alone)]


def test_constrained_answers_are_current_ids_for_every_input(smollm, engine, hp, hp_trie) -> None:
    labels = [label for _, label in current_terms(engine, "hp")[::500] if label][:24]
    terms = labels + GARBAGE
    prompts = [build_prompt(smollm.tokenizer, "hp", t) for t in terms]
    out = generate(smollm, prompts, ontology="hp", batch_size=16, constraint=hp_trie)
    assert len(out) == len(terms)
    ids = [a.text for a in out]
    assert all(a.finished for a in out)
    assert all(hp_trie.complete(a.token_ids) == a.text for a in out)
    assert set(ids) <= _current(engine, "hp", ids)  # checked against the database, not the trie
    # Raw (not renormalized) sequence probability: a forced HPO number is very unlikely to this model.
    assert all(a.logprob < 0 for a in out)


def test_constrained_gene_symbols(smollm, engine, hgnc) -> None:
    trie = trie_for(smollm, engine, "hgnc")
    assert len(trie.labels) > 40_000
    names = ["tumor protein p53", "breast cancer 1", "insulin", "qwerty uiop", ""]
    prompts = [build_prompt(smollm.tokenizer, "hgnc", n) for n in names]
    out = generate(smollm, prompts, ontology="hgnc", batch_size=8, constraint=trie)
    symbols = [a.text for a in out]
    assert set(symbols) <= _current(engine, "hgnc", symbols)
    print("constrained HGNC answers:", dict(zip(names, symbols, strict=True)))
