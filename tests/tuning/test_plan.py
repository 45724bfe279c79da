"""`etlnorm tune` with a tiny budget: it measures, stores a route and its calibration, and runs use them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from etlnorm.cascade.calibration import calibration_folder, load_calibration
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.config import load_settings, tuned_path
from etlnorm.tuning.plan import MIN_QUERIES, rerank_queries
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
    assert [s["name"] for s in result["steps"]] == ["index", "rerank adapter", "measure", "calibrate"]
    assert "skipped" in result["steps"][1]["note"]
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
