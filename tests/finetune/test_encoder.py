"""Encoder fine-tuning on real HPO pairs: a tiny run writes a model and metadata the normalizer loads,
and no held-out query ever becomes a training pair."""

from __future__ import annotations

import json

import pytest

from etlnorm.cascade.encoder import fingerprint
from etlnorm.cascade.heldout import heldout_split, string_key
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import current_labels
from etlnorm.config import load_settings
from etlnorm.errors import EtlnormError
from etlnorm.finetune.encoder import (
    METADATA_FILE,
    EncoderConfig,
    check_not_trained_on,
    finetune_encoder,
    training_pairs,
    write_metadata,
)


@pytest.fixture(scope="module")
def split(engine, hp):
    return heldout_split(engine, "hp", "synonym", seed=13)


def test_pairs_cover_synonyms_and_variants_but_no_held_out_query(engine, split):
    labels = current_labels(engine, "hp")
    queries = [q for q, _ in split.test]
    pairs = training_pairs(split.train, labels, EncoderConfig(seed=3), exclude=queries)
    banned = {string_key(q) for q in queries}
    assert not [p for p in pairs if string_key(p.anchor) in banned or string_key(p.positive) in banned]
    seizure = [p for p in pairs if p.concept == "HP:0001250"]
    assert any(p.positive == "Seizure" for p in seizure)  # synonym -> label
    assert len({p.anchor for p in seizure}) >= 3  # synonyms and variants of one concept
    again = training_pairs(split.train, labels, EncoderConfig(seed=3), exclude=queries)
    assert again == pairs  # seeded
    # Without the exclusion, some pairs do touch held-out strings (variants can spell them): the guard matters.
    loose = training_pairs(split.train, labels, EncoderConfig(seed=3))
    assert len(loose) >= len(pairs)


def test_a_tiny_fine_tune_writes_a_model_the_normalizer_uses(engine, split, tmp_path):
    labels = current_labels(engine, "hp")
    concepts = sorted({i for i, _ in split.train})[:150]
    view = [(i, s) for i, s in split.train if i in set(concepts)]
    out = tmp_path / "enc"
    config = EncoderConfig(epochs=1, batch_size=16, max_pairs=200, seed=5)
    finetune_encoder(view, labels, out, ontology="hp", config=config, progress=False,
                     extra_metadata={"heldout": {"protocol": "synonym", "seed": 13}})  # fmt: skip
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["pairs"] == 200 and meta["ontology"] == "hp" and meta["base_fingerprint"]
    assert meta["hyperparameters"]["batch_size"] == 16 and meta["strings"] == len(set(view))
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    before = fingerprint(out)
    write_metadata(out, {**meta, "heldout_metrics": {"stock": {"acc_at_1": 0.5}}})
    assert fingerprint(out) == before  # adding figures to the metadata does not make its indexes stale

    settings = load_settings().model_copy(update={"encoder_models": {"hp": str(out)}})
    tuned = Normalizer("hp", engine, settings, strings=view)
    stock = Normalizer("hp", engine, load_settings(), strings=view)
    assert tuned.encoder.path == out and tuned.encoder.fingerprint != stock.encoder.fingerprint
    assert tuned.index.folder != stock.index.folder  # indexes are keyed by the model's fingerprint
    assert str(tuned.encoder.fingerprint) in tuned.provenance()[0]
    a = tuned.normalize(["fits of the hands"])[0]
    assert a.method in ("retrieval", "none") and a.candidates

    check_not_trained_on(str(out), "hp", "synonym", 13)  # its own split: allowed
    with pytest.raises(EtlnormError, match="fine-tune on this split first"):
        check_not_trained_on(str(out), "hp", "concept", 13)
