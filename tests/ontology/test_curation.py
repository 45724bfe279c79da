"""Curation on a real HPO release: set, accept and reject (by command and by plain SQL) survive a
rerun, a --force rerun and a new release (alt ID and obsolete cases), in the table, in lookup()
and in the SSSOM export."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import text

from etlnorm.ontology.curation import curate, curations
from etlnorm.ontology.registry import read_release
from etlnorm.ontology.store import save_release
from etlnorm.warehouse.export import cached_mappings, sssom_rows
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table
from tests.test_cli import assert_one_line_error, etlnorm

WOBBLY, SEIZURES, TWITCH, TYPO = "wobbly walking", "Seizures", "zorblax twitch", "Scleirtis"
ATAXIA, GAIT, SEIZURE, CRYPTORCHIDISM, SCLERITIS = "HP:0001251", "HP:0001288", "HP:0001250", "HP:0000028", "HP:0100532"


@pytest.fixture
def curated_table(engine, hp, etlnorm_home):
    create_annotation_table(engine, "cur.notes", [WOBBLY, SEIZURES, TWITCH, TYPO], rows=200, seed=4)
    yield "cur.notes"
    save_release(engine, read_release("hp", "pinned", etlnorm_home / "ontologies"))  # the real release back
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM etlnorm.curation WHERE ontology = 'hp'"))
        conn.execute(text("DELETE FROM etlnorm.user_synonym WHERE ontology = 'hp' AND source = 'curation'"))
        conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = 'hp' AND term = ANY(:t)"),
                     {"t": [WOBBLY, SEIZURES, TWITCH, TYPO]})  # fmt: skip


def written(engine, table: str) -> dict[str, tuple]:
    assert table == "cur.notes"  # the fixture's own table
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT DISTINCT term, term_hp_id, term_hp_method, term_hp_confidence FROM cur.notes"
                                 " WHERE term IS NOT NULL AND term <> ''")).all()  # fmt: skip
    return {r[0]: tuple(r[1:]) for r in rows}


def looked_up(engine, term: str) -> tuple | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT id, method, confidence FROM etlnorm.lookup(:t, 'hp')"), {"t": term}).first()
    return tuple(row) if row else None


def exported(engine, table: str) -> dict[str, dict]:
    release, mappings = cached_mappings(engine, "hp", table, "term")
    return {r["subject_label"]: r for r in sssom_rows("hp", release, mappings)}


def test_curation_survives_reruns_and_a_new_release(engine, curated_table, etlnorm_home):
    run_table(curated_table, "term", "hp")
    before = written(engine, curated_table)
    assert before[SEIZURES][:2] == (SEIZURE, "exact") and before[TYPO][0] == SCLERITIS
    assert before[WOBBLY][0] != ATAXIA

    assert etlnorm("curate", "set", "--ontology", "hp", "--term", WOBBLY, "--id", ATAXIA).returncode == 0
    done = etlnorm("curate", "reject", "--ontology", "hp", "--term", SEIZURES, "--note", "a test of rejection")
    assert done.returncode == 0 and SEIZURE in done.stdout  # no --id: the cached answer is the one rejected
    assert etlnorm("curate", "accept", "--ontology", "hp", "--term", TYPO, "--as-synonym").returncode == 0
    with engine.begin() as conn:  # a plain SQL insert is a curation too
        conn.execute(text("INSERT INTO etlnorm.curation (ontology, term, decision, id)"
                          " VALUES ('hp', :t, 'set-id', :i)"), {"t": TWITCH, "i": CRYPTORCHIDISM})  # fmt: skip
    # lookup() and the export put the decision first at once, before any rerun.
    assert looked_up(engine, WOBBLY) == (ATAXIA, "curated", 1.0)
    assert exported(engine, curated_table)[WOBBLY]["mapping_justification"] == "semapv:ManualMappingCuration"

    expected = {WOBBLY: (ATAXIA, "curated", 1.0), TWITCH: (CRYPTORCHIDISM, "curated", 1.0),
                TYPO: (SCLERITIS, "curated", 1.0)}  # fmt: skip
    for force in (False, True):
        run_table(curated_table, "term", "hp", force=force)
        now = written(engine, curated_table)
        assert {t: now[t] for t in expected} == expected, force
        assert now[SEIZURES][0] != SEIZURE  # the rejected answer never comes back ...
        assert now[SEIZURES][1] == "none" or now[SEIZURES][2] >= 0.6  # ... the next candidate above threshold, or none
        assert looked_up(engine, SEIZURES) is None or looked_up(engine, SEIZURES)[0] != SEIZURE
    rows = exported(engine, curated_table)
    assert (rows[WOBBLY]["object_id"], rows[WOBBLY]["predicate_id"]) == (ATAXIA, "skos:exactMatch")
    assert rows[SEIZURES]["object_id"] != SEIZURE

    # A new release: Ataxia merged into Gait disturbance (its ID now an alt ID), Cryptorchidism retired.
    real = read_release("hp", "pinned", etlnorm_home / "ontologies")
    terms = [t for t in real.terms if t.id != ATAXIA]
    terms = [dataclasses.replace(t, obsolete=True, replaced_by=None) if t.id == CRYPTORCHIDISM else t for t in terms]
    alt_ids = [(a, GAIT if i == ATAXIA else i) for a, i in real.alt_ids] + [(ATAXIA, GAIT)]
    synonyms = [s for s in real.synonyms if s.id != ATAXIA]
    save_release(engine, dataclasses.replace(real, release="2025-01-16-merged", terms=terms, synonyms=synonyms,
                                             alt_ids=alt_ids), allow_shrink=True)  # fmt: skip
    run_table(curated_table, "term", "hp")
    now = written(engine, curated_table)
    assert now[WOBBLY] == (GAIT, "curated", 1.0)  # followed the alt ID
    assert now[TWITCH][0] is None and now[TWITCH][1] == "none"  # obsolete, no replacement: not written ...
    with engine.connect() as conn:
        review = conn.execute(text("SELECT id, method FROM etlnorm.mapping_review WHERE term = :t"), {"t": TWITCH}).all()
    assert (CRYPTORCHIDISM, "curated (obsolete)") in [tuple(r) for r in review]  # ... but queued for review
    assert looked_up(engine, WOBBLY) == (GAIT, "curated", 1.0)
    assert exported(engine, curated_table)[WOBBLY]["object_id"] == GAIT
    assert curations(engine, "hp", [SEIZURES])[SEIZURES].rejected == {SEIZURE}


def test_bad_curations_are_refused_in_one_line(engine, hp):
    assert_one_line_error(etlnorm("curate", "set", "--ontology", "hp", "--term", "x", "--id", "HP:9999999"),
                          "not a current hp term")  # fmt: skip
    assert_one_line_error(etlnorm("curate", "accept", "--ontology", "hp", "--term", "never cached phrase"),
                          "no cached answer")  # fmt: skip
    assert_one_line_error(etlnorm("curate", "set", "--ontology", "mesh", "--term", "x", "--id", "D1"),
                          "unknown ontology")  # fmt: skip
    with pytest.raises(Exception, match="decision must be one of"):
        curate(engine, "hp", "x", "maybe", "HP:0001250")
    with pytest.raises(Exception, match="empty"):
        curate(engine, "hp", "   ", "set-id", "HP:0001250")
    with pytest.raises(Exception, match="NUL byte"):
        curate(engine, "hp", "Seiz\x00ure", "set-id", "HP:0001250")
    assert curations(engine, "hp", ["Seiz\x00ure", "x" * 5000]) == {}  # such terms cannot be curated: none found
