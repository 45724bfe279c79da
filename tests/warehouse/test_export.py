"""SSSOM export: the cached answers of a real run, written with sssom-py, read back and validated."""

from __future__ import annotations

import pytest
from sssom.parsers import parse_sssom_table
from sssom.validators import validate

from etlnorm.errors import TableError
from etlnorm.warehouse.export import NO_TERM, cached_mappings, sssom_rows
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table
from tests.test_cli import etlnorm

TERMS = ["Seizures", "Seizure", "low set ears", "Scleirtis", "no seizures", "mild wobbly walking sometimes"]


@pytest.fixture(scope="module")
def exported(engine, hp, tmp_path_factory):
    create_annotation_table(engine, "etl.shared", TERMS, rows=200, seed=3)  # every term drawn
    run_table("etl.shared", "term", "hp")
    path = tmp_path_factory.mktemp("sssom") / "hp.sssom.tsv"
    done = etlnorm("export", "sssom", "--ontology", "hp", "--table", "etl.shared", "--column", "term",
                   "--out", str(path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path, done.stdout


def test_the_file_round_trips_through_sssom_py_and_validates(exported):
    path, stdout = exported
    msdf = parse_sssom_table(path)
    validate(msdf, fail_on_error=True)  # raises on any schema or prefix error
    frame = msdf.df.set_index("subject_label")
    assert set(frame.index) == set(TERMS) and f"{len(TERMS)} terms" in stdout
    assert msdf.converter.expand("HP:0001250") == "http://purl.obolibrary.org/obo/HP_0001250"
    seizures = frame.loc["Seizures"]
    assert (seizures.object_id, seizures.object_label) == ("HP:0001250", "Seizure")
    assert seizures.predicate_id == "skos:exactMatch" and seizures.mapping_justification == "semapv:LexicalMatching"
    assert seizures.subject_type == "rdfs literal" and seizures.mapping_cardinality == "n:1"  # two terms, one ID
    typo = frame.loc["Scleirtis"]
    assert typo.object_id == "HP:0100532" and typo.predicate_id == "skos:closeMatch"
    assert typo.mapping_justification == "semapv:LexicalSimilarityThresholdMatching"
    negated = frame.loc["no seizures"]
    assert negated.object_id == NO_TERM and negated.mapping_cardinality == "1:0"
    assert "2025-01-16" in set(frame.object_source_version.dropna())


def test_min_confidence_turns_weak_answers_into_no_term_found(engine, exported):
    release, mappings = cached_mappings(engine, "hp", "etl.shared", "term")
    strict = {r["subject_label"]: r for r in sssom_rows("hp", release, mappings, min_confidence=1.01)}
    assert {r["object_id"] for r in strict.values()} == {NO_TERM}
    assert all(r["mapping_cardinality"] == "1:0" for r in strict.values())


def test_names_are_looked_up_not_trusted(engine, hp):
    with pytest.raises(TableError):
        cached_mappings(engine, "hp", 'etl.shared"; DROP TABLE etl.shared; --', "term")
    with pytest.raises(TableError):
        cached_mappings(engine, "hp", "etl.shared", "no_such_column")
    bad = etlnorm("export", "sssom", "--ontology", "nope", "--out", "/tmp/never.tsv")
    assert bad.returncode != 0 and "unknown ontology" in bad.stderr
