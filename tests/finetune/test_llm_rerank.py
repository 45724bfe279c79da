"""The rerank adapter: queries retrieval never indexed, the gold label against retrieval's hard negatives, a fitted weight."""

from __future__ import annotations

import json

import torch

from etlnorm.cascade.answer import Candidate
from etlnorm.cascade.heldout import heldout_split, string_key
from etlnorm.cascade.llm_tiers import LlmRerankTier
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import current_labels
from etlnorm.config import load_settings
from etlnorm.finetune import METADATA_FILE
from etlnorm.finetune.llm_rerank import label_groups, listwise_loss, rerank_queries
from etlnorm.llm.prompts import render
from etlnorm.llm.rerank import label_message
from tests.conftest import RERANK_EVAL, RERANK_QUERIES


def test_training_queries_are_neither_indexed_nor_held_out(engine, hp) -> None:
    split = heldout_split(engine, "hp", "synonym", seed=13)
    labels = current_labels(engine, "hp")
    index, queries = rerank_queries(split.train, labels, 200, seed=13, exclude=[q for q, _ in split.test])
    asked = {string_key(q) for q, _ in queries}
    assert not asked & {string_key(t) for _, t in index}  # retrieval meets them as new strings
    assert not asked & {string_key(q) for q, _ in split.test}  # and never scores on them
    assert set(index) < set(split.train) and len(split.train) - len(index) == 200
    assert 300 < len(queries) <= 400  # the 200 synonyms and (most of) a variant of each
    assert (index, queries) == rerank_queries(split.train, labels, 200, seed=13, exclude=[q for q, _ in split.test])


def test_groups_hold_the_gold_label_first_then_retrievals_other_candidates(smollm) -> None:
    tok = smollm.tokenizer
    labels = {"HP:1": "Seizure", "HP:2": "Gait ataxia", "HP:3": None}
    pools = [[Candidate("HP:9", "Absence seizure", 0.9), Candidate("HP:1", "Seizure", 0.8), Candidate("HP:8", None, 0.7)],
             [Candidate("HP:7", "Ataxia", 0.9)], [Candidate("HP:1", "Seizure", 0.9)]]  # fmt: skip
    groups = label_groups(smollm, "hp", [("fits", "HP:1"), ("wobbly gait", "HP:2"), ("unlabelled", "HP:3")],
                          labels, pools, negatives=4)  # fmt: skip
    assert len(groups) == 2  # a gold without a label teaches nothing
    said = [[tok.decode(a[:-1]) for a in g.answers] for g in groups]
    assert said == [["Seizure", "Absence seizure"], ["Gait ataxia", "Ataxia"]]  # the gold is not its own negative
    assert all(a[-1] == tok.eos_token_id for g in groups for a in g.answers)
    assert tok.decode(groups[0].prompt) == render(tok, label_message("hp", "fits"))


def test_listwise_loss_falls_when_the_gold_label_gains_likelihood(smollm) -> None:
    """The loss the adapter trains on ranks by the tier's own score: swapping the gold and a wrong
    label changes it, and the gold the base model already prefers costs less."""
    labels = {"HP:1": "Seizure", "HP:2": "Xanthelasma of the left eyelid"}
    right = label_groups(smollm, "hp", [("epileptic seizure", "HP:1")], labels, [[Candidate("HP:2", labels["HP:2"], 0.5)]])
    wrong = label_groups(smollm, "hp", [("epileptic seizure", "HP:2")], labels, [[Candidate("HP:1", labels["HP:1"], 0.5)]])
    with torch.no_grad():
        loss_right, n = listwise_loss(smollm)(smollm.model, right)
        loss_wrong, _ = listwise_loss(smollm)(smollm.model, wrong)
    assert n == 1 and float(loss_right) < float(loss_wrong)


def test_rerank_adapter_is_saved_measured_and_run_by_the_rerank_tier(hp_rerank, engine) -> None:
    info, scores, lm = hp_rerank
    meta = json.loads((info.folder / METADATA_FILE).read_text())
    assert (info.folder / "adapter_config.json").is_file()
    assert meta["task"] == "rerank" and meta["top_k"] == 5 and meta["ontology"] == "hp"
    assert meta["heldout"] == {"protocol": "synonym", "seed": 13}
    assert meta["data"]["queries"] + meta["data"]["dev_queries"] > RERANK_QUERIES
    assert meta["metrics"]["steps"] > 20 and meta["metrics"]["loss_last_tenth"] < meta["metrics"]["loss_first_tenth"]
    weight = meta["weight"]
    assert 0.0 <= weight <= 1.0 and meta["dev_acc_at_1_by_weight"][f"{weight:.2f}"] >= meta["dev_acc_at_1_by_weight"]["0.00"]
    assert meta["heldout_metrics"] == scores
    retrieval, reranked = scores["retrieval"], scores["reranked"]
    assert retrieval["n"] == reranked["n"] == RERANK_EVAL
    assert reranked["acc_at_5"] == retrieval["acc_at_5"]  # it reorders the same five candidates
    print("retrieval's order vs reranked, acc@1:", retrieval["acc_at_1"], reranked["acc_at_1"], "weight", weight)
    assert reranked["acc_at_1"] >= retrieval["acc_at_1"] + MARGIN

    settings = load_settings().model_copy(update={"llm_rerank_adapters": {"hp": str(info.folder)}, "min_confidence": 0.0})
    normalizer = Normalizer("hp", engine, settings, route=["lexical", "fuzzy", "retrieval", "rerank"], lm=lm,
                            calibrated=False)  # fmt: skip
    tier = normalizer._rerank_tier()
    assert (tier.adapter, tier.weight) == ("hp-rerank", weight)  # type: ignore[attr-defined]
    queries = [q for q, _ in heldout_split(engine, "hp", "synonym", seed=13).test[:40]]
    assert len(normalizer.normalize(queries)) == 40
    # The adapter's order alone (weight 1) overrules retrieval on some terms: the tier runs it.
    alone = LlmRerankTier(lm, "hp", adapter="hp-rerank", weight=1.0)
    pure = Normalizer("hp", engine, settings, tiers=[normalizer.retrieval, alone], calibrated=False)
    answers = pure.normalize(queries)
    assert sum(a.method == "rerank" for a in answers) >= 4
    assert all(len(a.candidates) <= 5 for a in answers if a.method == "rerank")


# Measured with this fixture (300 training synonyms, 2 hard negatives each, 200 held-out queries,
# 2 CPU cores, each prompt read once per candidate list): retrieval's order 0.460, reranked 0.535
# (+0.075) at weight 0.25 (before the two-pass scoring: 0.450 and 0.495). The floor keeps about half
# of that gain.
MARGIN = 0.035
