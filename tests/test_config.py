"""Where settings come from: env over the TOML file over `etlnorm tune`'s choice over the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etlnorm.config import DEFAULT_ROUTING, describe, load_settings, read_tuned, tuned_path
from etlnorm.errors import ConfigError


def _tune(home: Path, ontology: str, **settings: object) -> None:
    path = tuned_path(home, ontology)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ontology": ontology, "settings": settings}))


def test_tuned_choice_is_the_lowest_priority_and_merges_by_ontology(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ETLNORM_ROUTING", raising=False)
    monkeypatch.setenv("ETLNORM_HOME", str(tmp_path))
    monkeypatch.delenv("ETLNORM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./etlnorm.toml either
    assert load_settings().routing == DEFAULT_ROUTING  # nothing tuned: the built-in routes
    _tune(tmp_path, "hp", routing=["lexical", "fuzzy", "retrieval", "rerank"], llm_rerank_adapters="/a/hp-rerank")
    settings = load_settings()
    assert settings.routing["hp"] == ["lexical", "fuzzy", "retrieval", "rerank"]
    assert settings.routing["go"] == DEFAULT_ROUTING["go"] and settings.routing["hgnc"] == DEFAULT_ROUTING["hgnc"]
    assert settings.llm_rerank_adapters == {"hp": "/a/hp-rerank"}
    rows = {r.name: r for r in describe(settings)}
    assert rows["routing"].source.startswith("tuned") and rows["top_k"].source == "default"

    config = tmp_path / "etlnorm.toml"  # a configured route wins, for its ontology only
    config.write_text('[routing]\nhp = ["lexical", "retrieval"]\n')
    monkeypatch.setenv("ETLNORM_CONFIG", str(config))
    settings = load_settings()
    assert settings.routing["hp"] == ["lexical", "retrieval"] and settings.routing["go"] == DEFAULT_ROUTING["go"]
    assert settings.llm_rerank_adapters == {"hp": "/a/hp-rerank"}
    monkeypatch.setenv("ETLNORM_LLM_RERANK_ADAPTERS", json.dumps({"hp": "/b"}))
    assert load_settings().llm_rerank_adapters == {"hp": "/b"}  # env over tuned
    # The home in force decides which tuned files count.
    assert load_settings(home=tmp_path / "elsewhere").routing["hp"] == ["lexical", "retrieval"]


def test_unreadable_tuned_file_is_a_clear_error(tmp_path, monkeypatch) -> None:
    path = tuned_path(tmp_path, "hp")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable tuned route"):
        read_tuned(tmp_path)
    monkeypatch.setenv("ETLNORM_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="rerun `etlnorm tune` or delete it"):
        load_settings()
