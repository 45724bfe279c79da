"""Route choice: the most accurate route within the per-term cost, and never an untuned model tier."""

from __future__ import annotations

from etlnorm.config import load_settings
from etlnorm.tuning.measure import RouteScore, candidates, choose, with_models


def _score(name: str, acc: float, ms: float) -> RouteScore:
    return RouteScore(name, (name,), 100, acc, acc, ms)


def test_choose_the_most_accurate_that_fits_ties_to_the_cheaper() -> None:
    scores = [_score("cheap", 0.50, 2.0), _score("better", 0.60, 20.0), _score("best", 0.70, 400.0)]
    assert choose(scores, 50.0).name == "better"  # "best" costs more than allowed
    assert choose(scores, 500.0).name == "best"
    assert choose([_score("a", 0.6, 30.0), _score("b", 0.6, 10.0)], 50.0).name == "b"
    assert choose(scores, 1.0).name == "cheap"  # nothing fits: the cheapest


def test_candidates_add_a_model_tier_only_with_its_trained_model(tmp_path) -> None:
    settings = load_settings()
    plain = candidates("hp", settings)
    assert [c.route for c in plain] == [("lexical", "retrieval"), ("lexical", "fuzzy", "retrieval")]
    assert not any({"llm", "rerank", "crossencoder"} & set(c.route) for c in plain)
    with_adapter = candidates("hp", settings, rerank_adapter=str(tmp_path))
    assert with_adapter[-1].route == ("lexical", "fuzzy", "retrieval", "rerank")
    tuned = with_models(settings, "hp", with_adapter[-1], min_confidence=0.0)
    assert tuned.llm_rerank_adapters["hp"] == str(tmp_path) and tuned.min_confidence == 0.0
    genes = candidates("hgnc", settings.model_copy(update={"llm_adapters": {"hgnc": str(tmp_path)},
                                                           "reranker_models": {"hgnc": str(tmp_path)}}))  # fmt: skip
    assert {c.name for c in genes} >= {"lexical+llm+retrieval", "+crossencoder"}
