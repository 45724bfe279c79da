"""Prompt wording: the paper's templates, rendered through SmolLM2's chat template."""

from __future__ import annotations

from etlnorm.llm.prompts import (
    ONTOLOGY_NAMES,
    build_prompt,
    clean_term,
    paraphrases,
    template_for,
    user_message,
)


def test_default_wording_is_the_papers() -> None:
    assert template_for("hp") == "What is the HPO identifier for the HPO term {term}?"
    assert template_for("go") == "What is the GO identifier for the GO term {term}?"
    assert template_for("hgnc") == "What is the HGNC identifier for the HGNC term {term}?"
    assert user_message("hp", "Webbed neck") == "What is the HPO identifier for the HPO term Webbed neck?"


def test_five_paraphrases_per_ontology_for_fine_tuning() -> None:
    assert set(ONTOLOGY_NAMES) == {"hp", "go", "hgnc"}
    hgnc = paraphrases("hgnc")
    assert len(hgnc) == 5 and len(set(hgnc)) == 5 and all("{term}" in t for t in hgnc)
    assert hgnc[1] == "The HGNC term {term} has what HGNC identifier? Respond only with the HGNC identifier."
    assert paraphrases("hp")[3] == "What is the ontology identifier for {term} in HPO?"


def test_configured_template_wins_and_odd_terms_are_safe() -> None:
    assert user_message("go", "apoptosis", {"go": "GO id of {term}:"}) == "GO id of apoptosis:"
    # Braces, newlines and control characters in a term neither break formatting nor the prompt.
    assert user_message("hp", "a {x}\nb\x00") == "What is the HPO identifier for the HPO term a {x} b?"
    assert len(clean_term("x" * 10_000)) == 300
    assert clean_term(None) == "" and clean_term("🧬 gene") == "🧬 gene"


def test_chat_template_applied(smollm) -> None:
    prompt = build_prompt(smollm.tokenizer, "hp", "Webbed neck")
    assert "<|im_start|>user\nWhat is the HPO identifier for the HPO term Webbed neck?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
