"""The LLM reranker on a small fixed HPO set: synonyms as queries, the gold term among look-alikes.

The set is built from the database deterministically: 24 current HPO terms with an EXACT synonym
unlike their label (taken in md5 order), the synonym as the query, and as candidates the gold term
plus 4 current terms sharing the gold label's longest word (also in md5 order), gold placed last.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from sqlalchemy import text

from etlnorm.cascade.answer import Candidate
from etlnorm.llm.generate import Prefix
from etlnorm.llm.prompts import render
from etlnorm.llm.rerank import answer_sequences, label_message, mean_answer_logprob, rerank, softmax


def _h(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


@pytest.fixture(scope="module")
def fixed_set(engine, hp) -> list[tuple[str, str, list[Candidate]]]:
    with engine.connect() as conn:
        terms = conn.execute(text("SELECT id, label FROM etlnorm.term WHERE ontology='hp' AND NOT obsolete")).all()
        syns = conn.execute(
            text("SELECT s.id, s.text FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id) "
                 "WHERE s.ontology='hp' AND s.scope='EXACT' AND NOT t.obsolete")
        ).all()  # fmt: skip
    labels = dict(terms)
    by_word: dict[str, list[str]] = {}
    for ident, label in terms:
        for w in set((label or "").lower().split()):
            by_word.setdefault(w, []).append(ident)
    out = []
    for ident, syn in sorted(syns, key=lambda r: _h(r[0] + r[1])):
        label = labels[ident]
        if not label or syn.lower() == label.lower() or len(label) > 60:
            continue
        word = max(label.lower().split(), key=len)
        others = sorted((i for i in by_word.get(word, []) if i != ident), key=lambda i: _h(ident + i))[:4]
        if len(others) < 4:
            continue
        cands = [Candidate(i, labels[i], 0.0) for i in others] + [Candidate(ident, label, 0.0)]
        out.append((syn, ident, cands))
        if len(out) == 24:
            break
    return out


def _top1(lm, fixed_set, by: str) -> float:
    ranked = rerank(lm, "hp", [(q, c) for q, _, c in fixed_set], by=by, batch_size=40)
    for r, (_, _, cands) in zip(ranked, fixed_set, strict=True):
        assert {c.id for c in r} == {c.id for c in cands}
        assert abs(sum(c.score for c in r) - 1) < 1e-6 and all(0 <= c.score <= 1 for c in r)
        assert [c.score for c in r] == sorted((c.score for c in r), reverse=True)
    return sum(r[0].id == gold for r, (_, gold, _) in zip(ranked, fixed_set, strict=True)) / len(fixed_set)


def test_reranker_finds_gold_among_candidates(smollm, fixed_set) -> None:
    assert len(fixed_set) == 24
    rate = _top1(smollm, fixed_set, "label")
    print("rerank top-1 (by label) on 24 HPO synonyms, 5 candidates (chance 0.20):", rate)
    # Measured with SmolLM2-135M Q4_1 on CPU, fp32: label 14/24 = 0.58, id 8/24 = 0.33 (hence the
    # label default; bench/bench_llm.py --rerank repeats the comparison). The floor (11/24) sits below
    # the measured rate and well above chance, so a reranker that ignores its input fails it.
    assert rate >= 11 / 24


def test_each_prompt_read_once_scores_as_a_whole_forward_pass_per_row(smollm) -> None:
    """Four terms of different lengths against five labels, rows shuffled: the two-pass score (each
    prompt once, its answers over its cache) equals the answer's mean log-probability from one plain
    forward pass over that row's prompt and answer."""
    labels = ["Seizure", "Abnormality of the cardiovascular system", "Low-set ears", "Ataxic gait", "Short stature"]
    terms = ["fits of convulsions", "heart anomaly", "ears placed low on the head", "unsteady walk"]
    seqs = answer_sequences(smollm, [(render(smollm.tokenizer, label_message("hp", t)), label)
                                     for t in terms for label in labels])  # fmt: skip
    seqs = seqs[7:] + seqs[:7]
    with torch.inference_mode():
        prefix = Prefix.of(smollm.model, [p for p, _ in seqs], smollm.device)
        scores = mean_answer_logprob(smollm.model, prefix, seqs, smollm.tokenizer.pad_token_id, smollm.device)
        whole = []
        for prompt, answer in seqs:
            logp = torch.log_softmax(smollm.model(input_ids=torch.tensor([prompt + answer])).logits[0].float(), -1)
            whole.append(sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(answer)) / len(answer))
    assert len(prefix.ids) >= Prefix.MIN_LENGTH
    assert torch.allclose(scores, torch.tensor(whole), atol=1e-4), (scores, whole)


def test_softmax_bounds() -> None:
    p = softmax([-1.0, -2.0, -30.0])
    assert abs(sum(p) - 1) < 1e-9 and p[0] > p[1] > p[2] > 0
    assert softmax([]) == []
