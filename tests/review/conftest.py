"""A normalized table for the review tests: real HPO, a real run, terms that abstain and one that is hostile."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from etlnorm.review.queue import Target, find_target, list_targets
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table

SEIZURES = "Seizures"  # an exact label: never queued
WOBBLY = "wobbly walking"  # lay wording: retrieval's candidates below min_confidence, so an abstention
TWITCH = "zorblax twitch"  # nonsense: an abstention
HOSTILE = "<script>alert('x')</script> fits"  # must show as text
NEGATED = "no seizures"  # negated: method 'negated', no ID
TERMS = [SEIZURES, WOBBLY, TWITCH, HOSTILE, NEGATED]
TABLE = "review.notes"


def reset(engine) -> None:
    """Forget every decision and cached answer of the test terms."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM etlnorm.curation WHERE ontology = 'hp' AND term = ANY(:t)"), {"t": TERMS})
        conn.execute(text("DELETE FROM etlnorm.user_synonym WHERE ontology = 'hp' AND source = 'curation'"))
        conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = 'hp' AND term = ANY(:t)"), {"t": TERMS})


@pytest.fixture
def review_target(engine, hp) -> Target:
    """``review.notes`` (600 rows of the five terms) after a fresh run: a target of the review page."""
    reset(engine)
    create_annotation_table(engine, TABLE, TERMS, rows=600, seed=5)
    run_table(TABLE, "term", "hp")
    yield find_target(list_targets(engine), TABLE, "term", "hp", "term_hp")
    reset(engine)


def rows_of(engine, term: str) -> set[tuple]:
    """The distinct outputs the table's rows of ``term`` hold."""
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT term_hp_id, term_hp_method, term_hp_confidence FROM review.notes"
                                     " WHERE term = :t"), {"t": term}).all())  # fmt: skip
