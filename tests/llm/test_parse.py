"""Unconstrained answers are parsed and resolved; nothing that does not resolve is accepted."""

from __future__ import annotations

from sqlalchemy import text

from etlnorm.llm.parse import accepted_id, extract_id, resolve_answers


def test_extract_id_shapes() -> None:
    assert extract_id("The HPO identifier is HP:0000465.", "hp") == "HP:0000465"
    assert extract_id("hp_0000465", "hp") == "HP:0000465"
    assert extract_id("HP:123", "hp") is None
    assert extract_id("The HPO ID is 0000465.", "hp") == "HP:0000465"  # prefix dropped by the model
    assert extract_id("The HPO ID is 123456.", "hp") is None and extract_id("12345678", "hp") is None
    assert extract_id("GO:0006915 apoptosis", "go") == "GO:0006915"
    assert extract_id("TP53", "hgnc") == "TP53"
    assert extract_id("HGNC:11998", "hgnc") == "HGNC:11998"
    assert extract_id("The HGNC identifier is TP53", "hgnc") is None  # a sentence is not a symbol
    assert extract_id("", "hgnc") is None and extract_id("😀", "hgnc") is None


def test_invalid_obsolete_and_alt_ids(engine, hp) -> None:
    with engine.connect() as conn:
        replaced = conn.execute(
            text("SELECT id, replaced_by FROM etlnorm.term WHERE ontology='hp' AND obsolete AND replaced_by IS NOT NULL "
                 "AND replaced_by IN (SELECT id FROM etlnorm.term WHERE ontology='hp' AND NOT obsolete) LIMIT 1")
        ).one()  # fmt: skip
        dead = conn.execute(
            text("SELECT id FROM etlnorm.term WHERE ontology='hp' AND obsolete AND replaced_by IS NULL LIMIT 1")
        ).scalar_one()
        alt, alt_current = conn.execute(text("SELECT alt_id, id FROM etlnorm.alt_id WHERE ontology='hp' LIMIT 1")).one()
    res = resolve_answers(engine, "hp", ["HP:0000465", "HP:9999999", replaced[0], dead, alt, None])
    assert accepted_id(res["HP:0000465"]) == "HP:0000465"
    assert accepted_id(res["HP:9999999"]) is None
    assert accepted_id(res[replaced[0]]) == replaced[1]
    assert accepted_id(res[dead]) is None
    assert accepted_id(res[alt]) == alt_current

