"""Reranker training on real HPO pairs: a tiny run writes a cross-encoder and metadata the
crossencoder tier loads, and neither held-out nor dev queries ever become training examples."""

from __future__ import annotations

import json

import pytest

from etlnorm.cascade.crossencoder import METADATA_FILE, POOL, open_reranker
from etlnorm.cascade.heldout import heldout_split, string_key
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import current_labels
from etlnorm.config import load_settings
from etlnorm.errors import EtlnormError
from etlnorm.finetune.encoder import check_not_trained_on
from etlnorm.finetune.reranker import WEIGHTS, RerankerConfig, dev_split, finetune_reranker, reranker_examples

CONFIG = RerankerConfig(batch_size=16, max_queries=240, dev_queries=30, seed=5)
ROUTE = ["lexical", "fuzzy", "retrieval"]


@pytest.fixture(scope="module")
def view(engine, hp):
    """The synonym split's train part for 150 concepts that have synonyms, and its held-out queries."""
    split = heldout_split(engine, "hp", "synonym", seed=13)
    counts: dict[str, int] = {}
    for ident, _ in split.train:
        counts[ident] = counts.get(ident, 0) + 1
    concepts = set(sorted(i for i, n in counts.items() if n >= 3)[:150])
    return [(i, s) for i, s in split.train if i in concepts], [q for q, _ in split.test]


@pytest.fixture(scope="module")
def trained(engine, view, tmp_path_factory):
    strings, held_out = view
    labels = current_labels(engine, "hp")
    train, dev = dev_split(strings, labels, CONFIG)
    miner = Normalizer("hp", engine, route=ROUTE, calibrated=False, strings=train)
    out = tmp_path_factory.mktemp("reranker")
    finetune_reranker(train, dev, labels, out, ontology="hp", search=miner.search, config=CONFIG, progress=False,
                      exclude=held_out, extra_metadata={"heldout": {"protocol": "synonym", "seed": 13}})  # fmt: skip
    return out, train, dev, miner


def test_dev_slice_is_synonyms_moved_out_of_the_training_strings(engine, view):
    strings, _ = view
    labels = current_labels(engine, "hp")
    train, dev = dev_split(strings, labels, CONFIG)
    assert len(dev) == CONFIG.dev_queries and len(train) + len(dev) == len(strings)
    assert all(labels[g] != q for q, g in dev)  # never a label
    assert not {(g, q) for q, g in dev} & set(train)
    assert {g for _, g in dev} <= {i for i, _ in train}  # every dev concept keeps a string in the index
    assert dev_split(strings, labels, CONFIG) == (train, dev)  # seeded


def test_examples_touch_no_held_out_or_dev_query_and_carry_hard_negatives(engine, view, trained):
    _, held_out = view
    _, train, dev, miner = trained
    examples, pairs = reranker_examples(train, dev, current_labels(engine, "hp"), miner.search, CONFIG, held_out)
    banned = {string_key(q) for q in [*held_out, *(q for q, _ in dev)]}
    texts = examples["query"] + examples["text"]
    assert texts and not [t for t in texts if string_key(t) in banned]
    assert len(pairs) == CONFIG.max_queries
    positives, negatives = examples["label"].count(1.0), examples["label"].count(0.0)
    assert positives == len(pairs) and negatives == CONFIG.negatives * len(pairs)
    # A negative is another concept of the query's own retrieved list, never one of its gold's strings.
    gold_strings = {p.anchor: {s for i, s in train if i == p.concept} for p in pairs}
    for query, text, label in zip(examples["query"], examples["text"], examples["label"], strict=True):
        if label == 0.0:
            assert text not in gold_strings[query]


def test_a_tiny_run_writes_a_reranker_the_crossencoder_tier_uses(engine, view, trained):
    out, train, dev, _ = trained
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["examples"] == (1 + CONFIG.negatives) * CONFIG.max_queries and meta["base_fingerprint"]
    assert meta["weight"] in WEIGHTS and len(meta["dev_acc_at_1_by_weight"]) == len(WEIGHTS)
    assert meta["dev_queries"] == len(dev) and meta["hyperparameters"]["negatives"] == CONFIG.negatives
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    assert open_reranker(out).weight == meta["weight"]

    settings = load_settings().model_copy(update={"reranker_models": {"hp": str(out)}, "min_confidence": 0.0})
    normalizer = Normalizer("hp", engine, settings, route=[*ROUTE, "crossencoder"], calibrated=False, strings=train)
    assert normalizer.retrieval.top_k == POOL  # the tier reads retrieval's top 20 ...
    query, gold = dev[0]
    answer = normalizer.normalize([query])[0]
    assert answer.method == "crossencoder" and len(answer.candidates) == settings.top_k  # ... and keeps top_k
    assert "reranker=" in normalizer.provenance()[0]
    exact = normalizer.normalize([normalizer.lexicon.labels[gold]])[0]
    assert exact.method == "exact"  # terms a lexical tier decided are never reranked

    check_not_trained_on(str(out), "hp", "synonym", 13)
    with pytest.raises(EtlnormError, match="fine-tune on this split first"):
        check_not_trained_on(str(out), "hp", "concept", 13)


def test_the_route_names_a_reranker_it_has_not_got(engine, hp, caplog):
    settings = load_settings().model_copy(update={"reranker_models": {}})
    normalizer = Normalizer("hp", engine, settings, route=[*ROUTE, "crossencoder"])
    answer = normalizer.normalize(["Seizure"])[0]
    assert answer.id == "HP:0001250"  # lexical still answers
    normalizer.normalize(["fits that come and go at night"])
    assert "reranker_models has no hp entry" in caplog.text
