"""`etlnorm tune` with a tiny budget: it measures, stores a route and its calibration, and runs use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from etlnorm.cascade.calibration import calibration_folder, load_calibration
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.config import load_settings, tuned_path
from etlnorm.db.engine import init_db
from etlnorm.ontology.registry import fetch_source, spec_for
from etlnorm.tuning.plan import MIN_PAIRS, MIN_QUERIES, encoder_pairs, rerank_queries
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms
from tests.test_cli import etlnorm


@pytest.fixture
def untuned_env(monkeypatch, etlnorm_home):
    """The session's routing override removed (it would win over the tuned route); the tuned file
    removed afterwards so later tests see the shipped routes."""
    monkeypatch.delenv("ETLNORM_ROUTING", raising=False)
    yield
    tuned_path(etlnorm_home, "hp").unlink(missing_ok=True)


def test_tune_stores_a_measured_route_that_run_then_uses(engine, hp, untuned_env, etlnorm_home) -> None:
    done = etlnorm("tune", "--ontology", "hp", "--budget-minutes", "1", "--limit", "80", "--no-adapter", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    names = [r["name"] for r in result["heldout"]]
    assert names == ["lexical+retrieval", "lexical+fuzzy+retrieval"]  # no model tier without its model
    assert all(r["queries"] == 80 and 0.2 < r["acc_at_1"] <= r["acc_at_5"] <= 1 for r in result["heldout"])
    chosen = result["chosen"]
    best = max(result["heldout"], key=lambda r: (r["acc_at_1"], -r["ms_per_term"]))
    assert chosen["name"] == best["name"]  # the budget of 50 ms/term fits both plain routes
    assert [s["name"] for s in result["steps"]] == ["index", "encoder", "rerank adapter", "measure", "calibrate"]
    assert all("skipped" in s["note"] for s in result["steps"][1:3])  # a minute fits neither model
    stored = json.loads(tuned_path(etlnorm_home, "hp").read_text())
    assert stored["settings"]["routing"] == chosen["route"]

    settings = load_settings()
    assert settings.routing["hp"] == chosen["route"]  # the tuned route is now the hp default
    normalizer = Normalizer("hp", engine, settings)
    assert normalizer.route == chosen["route"]
    assert load_calibration(calibration_folder(settings), "hp", normalizer.release,
                            normalizer.calibration_key()) is not None  # calibrated by tune itself  # fmt: skip

    terms = distinct_terms(engine, "hp", 60, seed=77)
    create_annotation_table(engine, "etl.tuned", terms, rows=120, seed=2)
    report = run_table("etl.tuned", "term", "hp", force=True, settings=settings)
    assert report.stats.rows_updated == 120
    with engine.connect() as conn:
        models = set(conn.execute(text("SELECT DISTINCT m.model FROM etlnorm.mapping m JOIN etl.tuned t"
                                       " ON m.term = t.term AND m.ontology = 'hp'")).scalars())  # fmt: skip
    prefix = "+".join(chosen["route"][:-1]) + "+retrieval["
    assert models and all(m.startswith(prefix) for m in models), models


def test_the_adapter_step_is_sized_to_the_budget() -> None:
    assert rerank_queries(10, "cpu") == 0  # a few seconds teach nothing: skipped
    assert rerank_queries(600, "cpu") >= MIN_QUERIES
    assert rerank_queries(600, "cuda") > rerank_queries(600, "cpu")
    assert rerank_queries(10**6, "cpu") == 4000  # capped


def hp_slice(cache: Path, terms: int) -> str:
    """The first ``terms`` stanzas of the pinned HPO release (real labels and synonyms), as an OBO text."""
    path = fetch_source(spec_for("hp"), "pinned", cache, timeout=30).path
    head, *stanzas = Path(path).read_text().split("\n[Term]\n")
    kept = [s.split("\n[Typedef]\n")[0] for s in stanzas[:terms]]
    return "".join(f"\n[Term]\n{s}" for s in kept) + "\n"


def test_tune_fine_tunes_the_encoder_when_the_budget_fits_and_measures_both(scratch_url, tmp_path, etlnorm_home) -> None:
    """On a 600-term slice of HPO a 4-minute budget fits the split's encoder pairs: tune trains the
    encoder, builds its index, measures the routes with and without it on the same queries and
    stores whichever wins, with the encoder it needs."""
    from sqlalchemy import create_engine

    from etlnorm.finetune.encoder import read_metadata
    from etlnorm.ontology.update import update_release
    from etlnorm.tuning.plan import tune
    from tests.conftest import write_obo

    engine = create_engine(scratch_url)
    settings = load_settings().model_copy(update={"home": tmp_path / "home"})
    init_db(engine)
    update_release(engine, settings, "hp", write_obo(tmp_path, "2025-01-16", hp_slice(etlnorm_home / "ontologies", 600)))
    report = tune(engine, settings, "hp", 4.0, load_lm=lambda: pytest.fail("no LLM step was asked for"), limit=60,
                  train_adapter=False)  # fmt: skip
    steps = {s.name: s for s in report.steps}
    assert list(steps) == ["index", "encoder", "rerank adapter", "measure", "calibrate"]
    folder = settings.home_dir / "encoders" / "hp-synonym-s13-tuned"
    meta = read_metadata(folder)
    assert meta["heldout"] == {"protocol": "synonym", "seed": 13} and meta["pairs"] >= 200
    assert steps["encoder"].note.startswith(f"{meta['pairs']} of ")
    names = [r.name for r in report.heldout]
    assert names == ["lexical+retrieval", "lexical+fuzzy+retrieval", "lexical+fuzzy+retrieval (tuned encoder)"]
    stock, tuned = report.heldout[1], report.heldout[2]
    assert stock.queries == tuned.queries == 60 and stock.route == tuned.route
    print("stock vs tuned encoder, acc@1:", stock.acc_at_1, tuned.acc_at_1)
    stored = json.loads(report.path.read_text())
    assert stored["chosen"]["name"] == report.chosen.name
    assert ("encoder_models" in stored["settings"]) == (report.chosen.name == tuned.name)
    if report.chosen.name == tuned.name:
        assert stored["settings"]["encoder_models"] == str(folder)
    engine.dispose()


def test_the_encoder_step_is_sized_to_the_budget_less_its_new_index() -> None:
    assert encoder_pairs(60, 37_000, "cpu", 67_000) == 0  # a minute does not even re-encode the strings
    assert MIN_PAIRS <= encoder_pairs(3600, 37_000, "cpu", 67_000) < 67_000
    assert encoder_pairs(10**6, 37_000, "cpu", 67_000) == 67_000  # all there are
    assert encoder_pairs(600, 3_000, "cpu", 500) == 500  # a small release is worth all its pairs
    assert encoder_pairs(600, 37_000, "cuda", 10**6) > encoder_pairs(600, 37_000, "cpu", 10**6)
