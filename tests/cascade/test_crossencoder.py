"""The crossencoder tier's parts: which string of a candidate it reads, how its probability is
combined with retrieval's score, and that it re-orders only what it was given."""

from __future__ import annotations

import pytest
import torch

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.crossencoder import (
    CrossEncoderTier,
    Reranker,
    combine,
    pair_strings,
    score_candidates,
    strings_by_id,
)
from etlnorm.cascade.encoder import default_model_path


@pytest.fixture(scope="module")
def untrained():
    """MiniLM's weights with a fresh (seeded) one-logit head: real, and not trained to rank."""
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    return CrossEncoder(str(default_model_path()), num_labels=1, device="cpu", local_files_only=True)


def test_reads_the_string_closest_in_spelling_to_the_term():
    strings = ["Seizure", "Epileptic seizure", "Seizures", "Fits"]
    assert pair_strings("fits", strings, "Seizure") == ["Fits"]
    assert pair_strings("epileptic seizures", strings, "Seizure", n=2)[0] == "Epileptic seizure"
    assert pair_strings("anything", [], "Seizure") == ["Seizure"]  # the label when it is all there is
    assert pair_strings("x", ["Seizure"], "Seizure", n=3) == ["Seizure"]  # no string twice


def test_combination_is_a_weighted_mean_and_sorts_best_first():
    cands = [Candidate("A", "a", 0.9), Candidate("B", "b", 0.5)]
    assert [c.id for c in combine(cands, [0.1, 0.9], 0.0)] == ["A", "B"]  # weight 0: retrieval's order
    flipped = combine(cands, [0.1, 0.9], 1.0)
    assert [c.id for c in flipped] == ["B", "A"] and flipped[0].score == pytest.approx(0.9)
    half = {c.id: c.score for c in combine(cands, [0.1, 0.9], 0.5)}
    assert half == pytest.approx({"A": 0.5, "B": 0.7})


def test_scores_every_candidate_in_one_batch(untrained):
    reranker = Reranker(untrained, 1.0, default_model_path())
    pools = [[Candidate("HP:1", "Seizure", 0.8), Candidate("HP:2", "Ataxia", 0.7)], [Candidate("HP:2", "Ataxia", 0.6)]]
    strings = strings_by_id([("HP:1", "Seizure"), ("HP:1", "Fits"), ("HP:2", "Ataxia")])
    probs = score_candidates(reranker, ["fits", "unsteady gait"], pools, strings)
    assert [len(p) for p in probs] == [2, 1] and all(0.0 <= x <= 1.0 for row in probs for x in row)
    alone = score_candidates(reranker, ["unsteady gait"], pools[1:], strings)
    assert alone[0] == pytest.approx(probs[1], abs=1e-5)  # a term's score does not depend on its batch


def test_tier_reorders_retrieval_and_abstains_below_the_threshold(untrained):
    strings = strings_by_id([("HP:1", "Seizure"), ("HP:2", "Ataxia"), ("HP:3", "Tremor")])
    pool = [Candidate("HP:1", "Seizure", 0.70), Candidate("HP:2", "Ataxia", 0.69), Candidate("HP:3", "Tremor", 0.1)]
    decided = WorkItem("fits", "fits", Answer("fits", "HP:1", "Seizure", 0.7, "retrieval", pool), list(pool))
    keep = CrossEncoderTier(Reranker(untrained, 0.0, default_model_path()), strings, top_k=2, min_confidence=0.6)
    keep([decided])
    assert decided.decision.method == "crossencoder" and decided.decision.id == "HP:1"  # weight 0: same order
    assert [c.id for c in decided.candidates] == ["HP:1", "HP:2"]  # cut back to top_k

    probs = score_candidates(Reranker(untrained, 1.0, default_model_path()), ["fits"], [pool], strings)[0]
    favourite = pool[max(range(3), key=probs.__getitem__)].id
    item = WorkItem("fits", "fits", None, list(pool))
    CrossEncoderTier(Reranker(untrained, 1.0, default_model_path()), strings, top_k=3, min_confidence=0.0)([item])
    assert item.decision.id == favourite  # weight 1: the reranker's own order

    shy = WorkItem("fits", "fits", None, list(pool))
    CrossEncoderTier(Reranker(untrained, 0.0, default_model_path()), strings, min_confidence=0.95)([shy])
    assert shy.decision is None and shy.candidates  # abstains, candidates kept for the record
