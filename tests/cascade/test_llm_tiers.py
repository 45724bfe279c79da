"""The LLM as cascade tiers, on real WorkItems, with bad input that must never raise."""

from __future__ import annotations

from sqlalchemy import text

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.llm_tiers import LlmGenerateTier, LlmRerankTier
from etlnorm.cascade.tier import run_tier
from etlnorm.llm.generate import generate
from etlnorm.llm.parse import extract_id
from etlnorm.llm.prompts import build_prompt

BAD = ["", "   ", "😀🧬🦠", "x" * 10_000, "\x00\x01", "asdkjh qwe"]


def _items(texts: list[str]) -> list[WorkItem]:
    return [WorkItem(key=t.strip().lower(), text=t) for t in texts]


def _is_current(engine, ontology: str, ident: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT NOT obsolete FROM etlnorm.term WHERE ontology=:o AND id=:i"),
                                 {"o": ontology, "i": ident}).scalar())  # fmt: skip


def test_constrained_step_decides_with_current_ids_and_skips_decided(smollm, engine, hp) -> None:
    items = _items(["Seizure", "Short stature", *BAD])
    done = WorkItem("webbed neck", "Webbed neck", Answer("Webbed neck", "HP:0000465", "Webbed neck", 1.0, "exact"))
    run_tier(LlmGenerateTier(smollm, engine, "hp", batch_size=8), [*items, done])
    assert done.decision.method == "exact"  # an earlier tier's answer stands
    decided = [it for it in items if it.decision]
    assert {it.text for it in decided} >= {"Seizure", "Short stature", "asdkjh qwe"}
    assert all(items[i].decision is None for i in (2, 3, 6))  # empty / blank / control-only: nothing to ask
    for it in decided:
        d = it.decision
        assert d.method == "llm" and _is_current(engine, "hp", d.id) and 0 < d.confidence <= 1
        assert it.candidates[0].id == d.id


def test_agreement_hook_rejects_disagreeing_answers(smollm, engine, hp) -> None:
    seen: list[tuple[str, str]] = []

    def never(term: str, ident: str) -> float:
        seen.append((term, ident))
        return 0.0

    def broken(term: str, ident: str) -> float:
        raise RuntimeError("encoder down")

    for agree in (never, broken):
        items = _items(["Seizure", "Ataxia"])
        run_tier(LlmGenerateTier(smollm, engine, "hp", agree=agree, min_agreement=0.5), items)
        assert all(it.decision is None for it in items)
    assert [t for t, _ in seen] == ["Seizure", "Ataxia"] and all(i.startswith("HP:") for _, i in seen)
    items = _items(["Seizure"])
    run_tier(LlmGenerateTier(smollm, engine, "hp", agree=lambda t, i: 0.9, min_agreement=0.5), items)
    assert items[0].decision is not None and items[0].decision.method == "llm"


def test_free_step_never_writes_an_invalid_id(smollm, engine, hp) -> None:
    # A prompt under which SmolLM2 restates the number it is given ("The HPO ID is 9999999."): some
    # answers are ID-shaped but never existed. Only what resolves to a current ID may come out.
    templates = {"hp": "The HPO ID is {term}. What is the HPO ID? Answer with the ID only."}
    terms = ["HP:9999999", "HP:0000465", "HP:0000057", *BAD]
    prompts = [build_prompt(smollm.tokenizer, "hp", t, templates) for t in terms]
    raw = [extract_id(a.text, "hp") for a in generate(smollm, prompts, batch_size=8, max_new_tokens=16)]
    items = _items(terms)
    run_tier(LlmGenerateTier(smollm, engine, "hp", constrained=False, templates=templates, max_new_tokens=16), items)
    print("free step:", [(t[:12], r, it.decision and it.decision.id) for t, r, it in zip(terms, raw, items, strict=True)])
    invalid = [i for i, r in enumerate(raw) if r and not _is_current(engine, "hp", r) and not _resolves(engine, r)]
    assert invalid, "this prompt made the model write an ID that does not exist (measured: HP:9999999)"
    for i in invalid:
        assert items[i].decision is None
    for it in items:
        if it.decision is not None:
            assert _is_current(engine, "hp", it.decision.id), it.decision


def _resolves(engine, ident: str) -> bool:
    from etlnorm.ontology.store import resolve

    return resolve(engine, ident, "hp").id is not None


def test_rerank_step_reorders_retrieval_and_marks_changes(smollm, hp) -> None:
    seizure = Candidate("HP:0001250", "Seizure", 0.5)
    wrong = [Candidate("HP:0000465", "Webbed neck", 0.9), Candidate("HP:0004322", "Short stature", 0.7)]
    retrieved = WorkItem("epileptic seizure", "Epileptic seizure",
                         Answer("Epileptic seizure", "HP:0000465", "Webbed neck", 0.9, "retrieval",
                                 [*wrong, seizure]))  # fmt: skip
    abstained = WorkItem("short height", "Short height", None, [*wrong, seizure])
    exact = WorkItem("seizure", "Seizure", Answer("Seizure", "HP:0001250", "Seizure", 1.0, "exact"), wrong)
    bad = [WorkItem(t, t, None, [seizure]) for t in BAD]
    run_tier(LlmRerankTier(smollm, "hp"), [retrieved, abstained, exact, *bad])
    assert exact.decision.method == "exact" and exact.candidates == wrong  # lexical answers are not reranked
    for it in (retrieved, abstained):
        assert sorted(c.id for c in it.candidates) == sorted(c.id for c in [*wrong, seizure])
        assert abs(sum(c.score for c in it.candidates) - 1) < 1e-6
        assert it.decision is not None and it.decision.id == it.candidates[0].id
    print("rerank:", retrieved.candidates[0], abstained.candidates[0])
    assert retrieved.decision.id == "HP:0001250" and retrieved.decision.method == "rerank"
    assert abstained.decision.method == "rerank"
