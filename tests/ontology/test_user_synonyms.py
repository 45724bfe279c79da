"""User synonym files: they change the answer for their terms, follow alt IDs, and survive a reload."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from etlnorm.cascade.normalizer import get_normalizer
from etlnorm.ontology.registry import read_release
from etlnorm.ontology.store import save_release
from etlnorm.ontology.user_synonyms import read_synonym_file, user_synonyms
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table
from tests.test_cli import assert_one_line_error, etlnorm

TERM = "zorblax spells"  # no real string is close: before the file, nothing lexical answers it


@pytest.fixture
def clean_user_synonyms(engine):
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM etlnorm.user_synonym WHERE ontology = 'hp'"))
        conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = 'hp' AND term = :t"), {"t": TERM})


def _alt_id_of(engine, ident: str) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT alt_id FROM etlnorm.alt_id WHERE ontology = 'hp' AND id = :i"
                                 " ORDER BY alt_id LIMIT 1"), {"i": ident}).scalar_one()  # fmt: skip


def test_a_synonym_file_changes_the_answer_and_survives_a_reload(engine, hp, hp_labels, etlnorm_home, tmp_path,
                                                                 clean_user_synonyms):  # fmt: skip
    seizure = "HP:0001250"
    alt = _alt_id_of(engine, seizure)  # written with a retired ID: resolved to the current one
    before = get_normalizer("hp", variant="labels").normalize([TERM])[0]
    assert before.id != seizure and before.method not in ("exact", "synonym")
    create_annotation_table(engine, "usersyn.notes", [TERM, "Seizure"], rows=20, seed=3)
    run_table("usersyn.notes", "term", "hp")

    tsv = tmp_path / "site.tsv"
    tsv.write_text(f"term\tid\tscope\n{TERM}\t{alt}\tEXACT\n", encoding="utf-8")
    done = etlnorm("ontology", "synonyms", "add", "--ontology", "hp", "--file", str(tsv))
    assert done.returncode == 0, done.stderr
    assert "1 hp synonyms added" in done.stdout and "recomputed" in done.stdout
    assert [(s.text, s.id) for s in user_synonyms(engine, "hp")] == [(TERM, seizure)]

    after = get_normalizer("hp", variant="labels").normalize([TERM, TERM.upper()])  # warm cache noticed the file
    assert [(a.id, a.method) for a in after] == [(seizure, "synonym")] * 2
    run_table("usersyn.notes", "term", "hp")
    with engine.connect() as conn:
        ids = set(conn.execute(text("SELECT term_hp_id FROM usersyn.notes WHERE term = :t"), {"t": TERM}).scalars())
    assert ids == {seizure}  # the cached answer was dropped and recomputed

    save_release(engine, read_release("hp", "pinned", etlnorm_home / "ontologies"))  # a reload of the release
    again = get_normalizer("hp", variant="labels").normalize([TERM])[0]
    assert (again.id, again.method) == (seizure, "synonym")
    listed = etlnorm("ontology", "synonyms", "list", "--ontology", "hp")
    assert listed.returncode == 0 and TERM in listed.stdout and seizure in listed.stdout


def test_bad_synonym_files_are_refused_whole(engine, hp, tmp_path, clean_user_synonyms):
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text(f"term\tid\n{TERM}\tHP:0001250\nother thing\tHP:9999999\n", encoding="utf-8")
    assert_one_line_error(etlnorm("ontology", "synonyms", "add", "--ontology", "hp", "--file", str(unknown)),
                          "HP:9999999")  # fmt: skip
    assert user_synonyms(engine, "hp") == []  # all or nothing
    no_header = tmp_path / "bare.tsv"
    no_header.write_text(f"{TERM}\tHP:0001250\n", encoding="utf-8")
    assert_one_line_error(etlnorm("ontology", "synonyms", "add", "--ontology", "hp", "--file", str(no_header)),
                          "needs tab-separated columns")  # fmt: skip
    bad_scope = tmp_path / "scope.tsv"
    bad_scope.write_text(f"term\tid\tscope\n{TERM}\tHP:0001250\tSIMILAR\n", encoding="utf-8")
    with pytest.raises(Exception, match="scope 'SIMILAR'"):
        read_synonym_file(bad_scope)
    assert_one_line_error(etlnorm("ontology", "synonyms", "add", "--ontology", "mesh", "--file", str(unknown)),
                          "unknown ontology")  # fmt: skip
