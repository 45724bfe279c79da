"""SQL installed by `etlnorm db init`: lookup(), word_key() parity with Python, views."""

from __future__ import annotations

from sqlalchemy import text

from etlnorm.cascade.textnorm import word_key
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms
from tests.test_cli import etlnorm


def test_sql_word_key_matches_python(engine, hp):
    samples = distinct_terms(engine, "hp", 3000, seed=5) + ["Café au lait spots", "β-thalassemia", "TNF-α", "  "]
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT t, etlnorm.word_key(t) FROM unnest(CAST(:t AS text[])) t"),
                            {"t": samples}).all()  # fmt: skip
    mismatches = [(t, k, word_key(t)) for t, k in keys if k != word_key(t)]
    assert mismatches == []


def test_lookup_view_create_and_coverage(engine, hp):
    create_annotation_table(engine, "etl.viewed", ["Seizures", "low set ears", "Cerebral palsy"], rows=30, seed=6)
    run_table("etl.viewed", "term", "hp")
    with engine.connect() as conn:
        exact = conn.execute(text("SELECT id, method FROM etlnorm.lookup('Seizures', 'hp')")).one()
        variant = conn.execute(text("SELECT id FROM etlnorm.lookup('SEIZURE!', 'hp')")).scalar()
        unknown = conn.execute(text("SELECT count(*) FROM etlnorm.lookup('never cached text', 'hp')")).scalar()
        coverage = conn.execute(text("SELECT rows, mapped FROM etlnorm.coverage WHERE table_name = 'etl.viewed'")).one()
    assert exact == ("HP:0001250", "exact")
    assert variant == "HP:0001250"  # not cached as spelled: found through the normalized key
    assert unknown == 0
    assert coverage[0] == 30 and coverage[1] >= 25

    done = etlnorm("view", "create", "--table", "etl.viewed", "--column", "term", "--ontology", "hp")
    assert done.returncode == 0, done.stderr
    with engine.begin() as conn:
        row = conn.execute(text("SELECT term_hp_current_label, term_hp_obsolete FROM etl.viewed_term_hp_v"
                                " WHERE term = 'Seizures' LIMIT 1")).one()  # fmt: skip
        assert tuple(row) == ("Seizure", False)
        # An ID that is obsolete in the loaded release shows as such.
        obsolete = conn.execute(text("SELECT id FROM etlnorm.term WHERE ontology='hp' AND obsolete LIMIT 1")).scalar()
        conn.execute(text("UPDATE etl.viewed SET term_hp_id = :o WHERE term = 'Cerebral palsy'"), {"o": obsolete})
        flag = conn.execute(text("SELECT DISTINCT term_hp_obsolete FROM etl.viewed_term_hp_v"
                                 " WHERE term = 'Cerebral palsy'")).scalar()  # fmt: skip
    assert flag is True
    review = etlnorm("runs")
    assert review.returncode == 0
