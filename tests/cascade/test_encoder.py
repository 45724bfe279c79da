"""The encoder: each string the network cannot tell apart encoded once, and the device it picks."""

from __future__ import annotations

import logging

import numpy as np
import torch

from etlnorm.cascade.encoder import load_encoder, pick_device


def test_strings_the_model_cannot_tell_apart_are_encoded_once():
    encoder = load_encoder(None)
    assert encoder.lowercases  # all-MiniLM-L6-v2's tokenizer lowercases
    before = encoder.encoded
    vectors = encoder.encode(["Seizure", "seizure", "  Seizure ", "SEIZURE", "Ataxia", "Seizure"])
    assert encoder.encoded - before == 2
    assert np.allclose(vectors[:4], vectors[0]) and np.allclose(vectors[5], vectors[0])
    alone = encoder.encode(["Ataxia"])
    assert np.allclose(vectors[4], alone[0], atol=1e-6)  # the same vector as encoded on its own


def test_device_auto_picks_the_cpu_here_quietly_and_obeys_a_setting(caplog):
    with caplog.at_level(logging.WARNING):
        assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
        encoder = load_encoder(None, 256, "auto")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert encoder.device == pick_device("auto") and str(encoder.model.device).startswith(encoder.device)
    assert pick_device("cpu") == "cpu" and pick_device("cuda:1") == "cuda:1"
