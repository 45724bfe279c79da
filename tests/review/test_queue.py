"""The review queue's SQL on a real run: what is queued and why, pending decisions, term-only apply."""

from __future__ import annotations

from sqlalchemy import text

from etlnorm.config import load_settings
from etlnorm.ontology.curation import curate
from etlnorm.review.queue import find_target, list_targets, pending_decisions, review_queue, target_histogram
from etlnorm.warehouse.records import list_runs
from etlnorm.warehouse.run import run_table
from tests.review.conftest import HOSTILE, NEGATED, SEIZURES, TABLE, TERMS, TWITCH, WOBBLY, rows_of

ATAXIA = "HP:0001251"


def queue(engine, target):
    s = load_settings()
    return {i.term: i for i in review_queue(engine, target, s.review_below, s.min_confidence)}


def count(engine, term: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM review.notes WHERE term = :t"), {"t": term}).scalar()


def test_queue_holds_abstentions_by_rows_with_candidates_reasons_and_examples(engine, review_target):
    items = queue(engine, review_target)
    assert set(items) == {WOBBLY, TWITCH, HOSTILE, NEGATED}  # the exact label is not queued
    assert [i.rows for i in items.values()] == sorted((i.rows for i in items.values()), reverse=True)
    assert all(i.rows == count(engine, t) for t, i in items.items())
    wobbly = items[WOBBLY]
    assert wobbly.method == "none" and wobbly.id is None and wobbly.cached
    assert wobbly.reasons == [f"abstained: confidence {wobbly.confidence:.2f} is below min_confidence 0.85"]
    assert len(wobbly.choices) == 5 and all(c.id.startswith("HP:") and c.label for c in wobbly.choices)
    assert any(c.definition for c in wobbly.choices)  # definitions come from the OBO file's def: lines
    assert wobbly.choices[0].score == max(c.score for c in wobbly.choices)
    assert 1 <= len(wobbly.examples) <= 3 and set(wobbly.examples[0]) == {"id", "patient_id"}
    assert items[NEGATED].reasons == ["negated: the term denies the finding"]


def test_weak_and_obsolete_answers_are_queued_with_their_reason(engine, review_target):
    with engine.begin() as conn:
        obsolete = conn.execute(text("SELECT id FROM etlnorm.term WHERE ontology = 'hp' AND obsolete"
                                     " AND replaced_by IS NULL ORDER BY id LIMIT 1")).scalar()  # fmt: skip
        conn.execute(text("UPDATE review.notes SET term_hp_method = 'retrieval', term_hp_confidence = 0.9"
                          " WHERE term = :t"), {"t": SEIZURES})  # fmt: skip
    assert queue(engine, review_target)[SEIZURES].reasons == ["low confidence: 0.90 by retrieval (queued below 0.95)"]
    with engine.begin() as conn:
        conn.execute(text("UPDATE review.notes SET term_hp_id = :i, term_hp_method = 'exact', term_hp_confidence = 1"
                          " WHERE term = :t"), {"t": SEIZURES, "i": obsolete})  # fmt: skip
    item = queue(engine, review_target)[SEIZURES]
    assert item.reasons == [f"obsolete target: {obsolete} is obsolete in the loaded release"]
    assert item.choices[0].id == obsolete and item.choices[0].current


def test_a_decision_is_pending_until_applied_to_that_term_only(engine, review_target):
    others = {t: rows_of(engine, t) for t in TERMS if t != WOBBLY}
    assert curate(engine, "hp", WOBBLY, "set-id", ATAXIA, curator="ada") == ATAXIA
    [pending] = pending_decisions(engine, review_target)
    n = count(engine, WOBBLY)
    assert (pending.term, pending.decision, pending.writes, pending.curator) == (WOBBLY, "set-id", ATAXIA, "ada")
    assert pending.rows == pending.changing == n
    assert WOBBLY not in queue(engine, review_target)

    report = run_table(TABLE, "term", "hp", terms=[WOBBLY])
    assert report.stats.rows_updated == n and report.stats.distinct_terms == 1 and report.ranges == 1  # one UPDATE
    assert rows_of(engine, WOBBLY) == {(ATAXIA, "curated", 1.0)}
    assert {t: rows_of(engine, t) for t in others} == others  # no other row was touched
    assert pending_decisions(engine, review_target) == []
    run = list_runs(engine, 1)[0]
    assert run.only_terms == [WOBBLY] and run.key_column == "id" and run.flow_run_id is None
    target = find_target(list_targets(engine), TABLE, "term", "hp", "term_hp")
    assert target.rows == 600 and target.methods["curated"] == n  # coverage is still the whole table's


def test_a_rejected_candidate_is_marked_once_recomputed(engine, review_target):
    top = queue(engine, review_target)[TWITCH].choices[0].id
    curate(engine, "hp", TWITCH, "reject", top, curator="bo")
    [pending] = pending_decisions(engine, review_target)  # its cached answer is gone: pending, though no row changes
    assert (pending.term, pending.writes, pending.changing) == (TWITCH, None, 0)
    run_table(TABLE, "term", "hp", terms=[TWITCH])
    item = queue(engine, review_target)[TWITCH]
    assert item.cached and pending_decisions(engine, review_target) == []
    assert [c.rejected for c in item.choices if c.id == top] == [True]


def test_histogram_counts_every_row_with_a_confidence(engine, review_target):
    buckets = target_histogram(load_settings(), review_target)
    with engine.connect() as conn:
        scored = conn.execute(text("SELECT count(*) FROM review.notes WHERE term_hp_confidence IS NOT NULL")).scalar()
    assert len(buckets) == 10 and sum(b.rows for b in buckets) == scored
    assert buckets[-1].mapped == count(engine, SEIZURES)
