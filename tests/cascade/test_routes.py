"""The cascade with the LLM tier, routed per ontology (real SmolLM2 on CPU, real ontologies)."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import text

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.calibration import answer_feature, calibration_folder, fit_from_gold
from etlnorm.cascade.normalizer import Normalizer, raw_normalizer
from etlnorm.cascade.retrieval import confirm
from etlnorm.config import load_settings
from etlnorm.errors import ConfigError
from tests.cascade.test_calibration import kept_calibration
from tests.test_cli import etlnorm


def current_ids(engine, ontology: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT id FROM etlnorm.term WHERE ontology = :o AND NOT obsolete"),
                                {"o": ontology}).scalars())  # fmt: skip


def routed(route: dict[str, list[str]], **more):
    return load_settings().model_copy(update={"routing": route, **more})


def protein_names(n: int) -> list[str]:
    """UniProt protein names of the paper's withheld genes: not HGNC strings, so not lexical hits."""
    from etlnorm.finetune.paperdata import paper_data_dir

    frame = pl.read_csv(paper_data_dir() / "gene_withheld_600.csv", infer_schema=False)
    return [t.strip() for t in frame["protein_name"].to_list()[:n]]


def test_hgnc_route_exact_then_llm_answers_only_current_agreeing_symbols(engine, hgnc, smollm):
    settings = routed({"hgnc": ["lexical", "llm"]})
    normalizer = Normalizer("hgnc", engine, settings, lm=smollm)
    terms = protein_names(24) + ["tumor protein p53", "zzqx 123", "🙂"]
    mappings = normalizer.normalize(terms)
    assert len(mappings) == len(terms)
    valid = current_ids(engine, "hgnc")
    assert all(m.id is None or m.id in valid for m in mappings)
    assert mappings[24].id == "TP53" and mappings[24].method == "exact"
    methods = {m.method for m in mappings}
    assert methods <= {"exact", "synonym", "llm", "none"}
    for m in mappings:
        if m.method == "llm":  # every LLM answer passed the embedding agreement check
            assert normalizer.agreement(m.term, m.id) >= settings.llm_min_agreement
            assert 0.0 <= m.confidence <= 1.0
    assert "llm" in normalizer.provenance()[0]
    print("hgnc exact->llm methods:", {k: sum(m.method == k for m in mappings) for k in methods})


def test_min_confidence_stops_llm_and_rerank_answers_below_it(engine, hgnc, hp, hp_labels, smollm):
    """The threshold gates every method: an LLM or rerank answer below it is written as ``none``,
    with its confidence and candidates kept."""
    terms = protein_names(24)
    manual = {"auto_calibrate": False, "llm_min_agreement": 0.0}  # raw scores; every constrained answer stands
    llm = Normalizer("hgnc", engine, routed({"hgnc": ["lexical", "llm"]}, min_confidence=0.0, **manual), lm=smollm)
    answered = [m for m in llm.normalize(terms) if m.method == "llm"]
    assert answered, "SmolLM2 answered none of the protein names: nothing to gate"
    bar = max(m.confidence for m in answered) + 1e-3
    gated = Normalizer("hgnc", engine, routed({"hgnc": ["lexical", "llm"]}, min_confidence=bar, **manual), lm=smollm)
    again = {m.term: m for m in gated.normalize([m.term for m in answered])}
    for m in answered:
        stopped = again[m.term]
        assert (stopped.id, stopped.method) == (None, "none")
        assert stopped.confidence == pytest.approx(m.confidence, abs=1e-6) and stopped.candidates
    hp_terms = ["fits that come and go", "eyes far apart"]
    route = {"hp": ["lexical", "retrieval", "rerank"]}
    reranked = Normalizer("hp", engine, routed(route, min_confidence=0.0, **manual), variant="labels", lm=smollm)
    first = reranked.normalize(hp_terms)
    bar = max(m.confidence for m in first) + 1e-3
    strict = Normalizer("hp", engine, routed(route, min_confidence=bar, **manual), variant="labels", lm=smollm)
    for before, after in zip(first, strict.normalize(hp_terms), strict=True):
        assert before.method in ("retrieval", "rerank") and after.method == "none" and after.candidates


def test_hp_route_retrieval_then_rerank(engine, hp, hp_labels, smollm):
    settings = routed({"hp": ["lexical", "retrieval", "rerank"]}, min_confidence=0.0)
    normalizer = Normalizer("hp", engine, settings, variant="labels", lm=smollm)
    terms = ["fits that come and go", "big head noted at birth", "eyes far apart", "Seizure",
             "child is much shorter than peers"]  # fmt: skip
    mappings = normalizer.normalize(terms)
    valid = current_ids(engine, "hp")
    assert all(m.id in valid for m in mappings)
    assert mappings[3].method == "exact"
    assert {m.method for m in mappings[:3] + mappings[4:]} <= {"retrieval", "rerank"}
    assert all(len(m.candidates) >= 2 for m in mappings if m.method in ("retrieval", "rerank"))


def test_unknown_step_in_routing_is_a_config_error(engine, hp):
    with pytest.raises(ConfigError, match="unknown tiers"):
        Normalizer("hp", engine, routed({"hp": ["lexical", "magic"]})).tiers  # noqa: B018


def test_llm_and_retrieval_agreeing_raises_confidence():
    answer = Answer("fits", "HP:0001250", "Seizure", 0.5, "llm", [Candidate("HP:0001250", "Seizure", 0.5)])
    item = WorkItem("fit", "fits", answer, list(answer.candidates))
    confirm(item, [Candidate("HP:0001250", "Seizure", 0.6), Candidate("HP:0002069", "Bilateral tonic-clonic", 0.5)])
    assert item.decision.method == "llm+retrieval"
    assert item.decision.confidence == pytest.approx(1 - 0.5 * 0.4)
    assert [c.id for c in item.candidates] == ["HP:0001250", "HP:0002069"]
    other = WorkItem("x", "x", Answer("x", "HP:0000001", "All", 0.5, "llm", []), [])
    confirm(other, [Candidate("HP:0001250", "Seizure", 0.9)])
    assert (other.decision.method, other.decision.confidence) == ("llm", 0.5)


def test_calibration_is_fitted_stored_and_applied(engine, hp, hp_labels, etlnorm_home, tmp_path):
    with engine.connect() as conn:
        gold = conn.execute(text(
            "SELECT s.text, s.id FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
            " WHERE s.ontology = 'hp' AND NOT t.obsolete AND s.scope = 'EXACT' ORDER BY md5(s.text) LIMIT 80")).all()  # fmt: skip
    terms = [f"{t.lower()} per chart" for t, _ in gold]  # phrased so that retrieval, not the lexicon, answers
    gold_file = tmp_path / "gold.csv"
    pl.DataFrame({"term": terms, "id": [i for _, i in gold]}).write_csv(gold_file)
    with kept_calibration(Normalizer("hp", engine, load_settings(), variant="labels")):  # the gold file replaces it
        _check_calibration(engine, terms, gold, gold_file)


def _check_calibration(engine, terms, gold, gold_file):
    done = etlnorm("calibrate", "--ontology", "hp", "--input", str(gold_file))
    assert done.returncode == 0, done.stderr
    assert "retrieval" in done.stdout
    normalizer = raw_normalizer("hp")
    calibration, path = fit_from_gold(normalizer, terms, [i for _, i in gold], calibration_folder(load_settings()))
    assert path.is_file()
    curve = calibration.curves["retrieval"]
    ys = [float(curve(x / 20)) for x in range(21)]
    assert all(0.0 <= y <= 1.0 for y in ys) and ys == sorted(ys)
    calibrated = Normalizer("hp", engine, load_settings(), variant="labels")
    assert calibrated.calibration is not None
    # Fitted under the shipped route and retrieval set-up: not applied under another route or without characters.
    manual = load_settings().model_copy(update={"auto_calibrate": False})
    assert Normalizer("hp", engine, manual, variant="labels", route=["lexical", "retrieval"]).calibration is None
    other = manual.model_copy(update={"char_tier": False})
    assert Normalizer("hp", engine, other, variant="labels").calibration is None
    raw = Normalizer("hp", engine, load_settings().model_copy(update={"min_confidence": 0.0}), variant="labels",
                     calibrated=False)  # fmt: skip
    for before, after in zip(raw.normalize(terms[:20]), calibrated.normalize(terms[:20]), strict=True):
        if before.method == "retrieval":
            expected = float(curve(answer_feature(before)))
            assert after.confidence == pytest.approx(expected, abs=1e-6)
            assert (after.method == "none") == (expected < load_settings().min_confidence)


def test_no_default_route_starts_an_untuned_model():
    """The offline LLM knows no IDs untuned: no shipped route has a model tier."""
    from etlnorm.config import Settings

    defaults = Settings.model_fields["routing"].default_factory()
    assert set(defaults) == {"hp", "go", "hgnc"}
    assert not any({"llm", "rerank"} & set(route) for route in defaults.values()), defaults
