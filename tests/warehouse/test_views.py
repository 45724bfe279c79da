"""SQL installed by `etlnorm db init`: lookup(), word_key() parity with Python, views."""

from __future__ import annotations

from sqlalchemy import text

from etlnorm.cascade.textnorm import word_key
from etlnorm.config import load_settings
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
        coverage = conn.execute(text("SELECT rows, blank_rows, mapped, mapped_of_nonblank, mapped_of_all"
                                     " FROM etlnorm.coverage WHERE table_name = 'etl.viewed'")).one()  # fmt: skip
        blank = conn.execute(text("SELECT count(*) FROM etl.viewed WHERE coalesce(btrim(term), '') = ''")).scalar()
    assert exact == ("HP:0001250", "exact")
    assert variant == "HP:0001250"  # not cached as spelled: found through the normalized key
    assert unknown == 0
    rows, blank_rows, mapped, of_nonblank, of_all = coverage
    assert rows == 30 and blank_rows == blank and mapped >= 25 - blank
    assert float(of_nonblank) == round(mapped / (rows - blank), 4) and float(of_all) == round(mapped / rows, 4)

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


def test_mapping_review_lists_abstentions_with_their_candidates(engine, hp):
    """Every answer below min_confidence is a 'none' row of mapping_review, candidates attached."""
    terms = ["Seizures", "child is much shorter than peers", "wobbly unsteady walking", "zzqx blorf"]
    create_annotation_table(engine, "etl.reviewed", terms, rows=20, seed=8)
    run_table("etl.reviewed", "term", "hp")
    with engine.connect() as conn:
        review = conn.execute(text("SELECT term, confidence, candidates FROM etlnorm.mapping_review"
                                   " WHERE ontology = 'hp' AND term = ANY(:t)"), {"t": terms}).all()  # fmt: skip
        cached = dict(conn.execute(text("SELECT term, method FROM etlnorm.mapping WHERE ontology = 'hp'"
                                        " AND term = ANY(:t)"), {"t": terms}).all())  # fmt: skip
        stored = conn.execute(text("SELECT candidates FROM etlnorm.mapping WHERE ontology = 'hp'"
                                   " AND term = 'Seizures'")).scalar()  # fmt: skip
    assert cached["Seizures"] == "exact" and stored[0]["id"] == "HP:0001250"
    assert {t for t, _, _ in review} == {t for t, m in cached.items() if m == "none"}
    assert review, "nothing abstained: the review view was not exercised"
    floor = load_settings().min_confidence
    for _, confidence, candidates in review:
        assert confidence < floor
        assert candidates and all({"id", "label", "score"} <= set(c) for c in candidates)


def test_lookup_answers_in_the_current_release_only(engine, hp):
    """A cached ID that is now an alt ID or obsolete with a replacement comes back as today's ID with
    today's label; one obsolete with no replacement comes back as nothing, never as itself."""
    with engine.connect() as conn:
        replaced, current = conn.execute(text(
            "SELECT o.id, r.id FROM etlnorm.term o JOIN etlnorm.term r ON r.ontology = o.ontology AND r.id = o.replaced_by"
            " WHERE o.ontology = 'hp' AND o.obsolete AND NOT r.obsolete ORDER BY o.id LIMIT 1")).one()  # fmt: skip
        gone = conn.execute(text("SELECT id FROM etlnorm.term WHERE ontology = 'hp' AND obsolete AND replaced_by IS NULL"
                                 " ORDER BY id LIMIT 1")).scalar()  # fmt: skip
        alt, alt_current = conn.execute(text("SELECT alt_id, id FROM etlnorm.alt_id WHERE ontology = 'hp' ORDER BY 1 LIMIT 1")).one()
        label = conn.execute(text("SELECT label FROM etlnorm.term WHERE ontology = 'hp' AND id = :i"), {"i": current}).scalar()
    cached = {"zq replaced term": replaced, "zq gone term": gone, "zq alt term": alt}
    with engine.begin() as conn:
        for term, ident in cached.items():  # answers cached under an older release, as a store upgrade leaves them
            conn.execute(text("INSERT INTO etlnorm.mapping (ontology, term_md5, term, norm_term, release, id, label,"
                              " confidence, method) VALUES ('hp', md5(:t)::uuid, :t, :t, 'old', :i, 'old label', 0.9,"
                              " 'retrieval') ON CONFLICT DO NOTHING"), {"t": term, "i": ident})  # fmt: skip
    try:
        with engine.connect() as conn:
            found = {t: conn.execute(text("SELECT id, label FROM etlnorm.lookup(:t, 'hp')"), {"t": t}).all() for t in cached}
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = 'hp' AND term = ANY(:t)"), {"t": list(cached)})
    assert found["zq replaced term"] == [(current, label)]
    assert found["zq alt term"][0][0] == alt_current
    assert found["zq gone term"] == []
