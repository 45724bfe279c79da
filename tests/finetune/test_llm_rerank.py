"""The rerank adapter: queries retrieval never indexed, the gold label as the answer, a fitted weight."""

from __future__ import annotations

import json

from etlnorm.cascade.heldout import heldout_split, string_key
from etlnorm.cascade.llm_tiers import LlmRerankTier
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import current_labels
from etlnorm.config import load_settings
from etlnorm.finetune import METADATA_FILE
from etlnorm.finetune.llm_rerank import label_examples, rerank_queries
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


def test_examples_put_the_loss_on_the_gold_label_and_eos_only(smollm) -> None:
    tok = smollm.tokenizer
    rows = label_examples(tok, "hp", [("fits", "HP:1"), ("wobbly gait", "HP:2"), ("unlabelled", "HP:3")],
                          {"HP:1": "Seizure", "HP:2": "Gait ataxia", "HP:3": None})  # fmt: skip
    assert len(rows) == 2  # a gold without a label teaches nothing
    for (ids, labels), (query, label) in zip(rows, (("fits", "Seizure"), ("wobbly gait", "Gait ataxia")), strict=True):
        answer = [t for t in labels if t != -100]
        assert tok.decode(answer[:-1]) == label and answer[-1] == tok.eos_token_id
        assert tok.decode(ids[: len(ids) - len(answer)]) == render(tok, label_message("hp", query))


def test_rerank_adapter_is_saved_measured_and_run_by_the_rerank_tier(hp_rerank, engine) -> None:
    info, scores, lm = hp_rerank
    meta = json.loads((info.folder / METADATA_FILE).read_text())
    assert (info.folder / "adapter_config.json").is_file()
    assert meta["task"] == "rerank" and meta["top_k"] == 5 and meta["ontology"] == "hp"
    assert meta["heldout"] == {"protocol": "synonym", "seed": 13}
    assert meta["data"]["queries"] + meta["data"]["dev_queries"] > RERANK_QUERIES
    losses = meta["metrics"]["epoch_loss"]
    assert meta["metrics"]["steps"] > 20 and losses[-1] < 3.0
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


# Measured with this fixture (300 training synonyms, 200 held-out queries, 2 CPU cores): retrieval's
# order 0.450, reranked 0.490 (+0.040) at weight 0.20. The floor keeps half of that gain.
MARGIN = 0.02
