"""Schema migrations: versioned DDL files, ``etlnorm.schema_version``, upgrades in place."""

from __future__ import annotations

from importlib import resources

from sqlalchemy import create_engine, text

from etlnorm.db.engine import init_db, pending_migrations, raw, sql_files

BEFORE_VERSIONING = 5  # 001-005: the schema etlnorm created before etlnorm.schema_version existed


def test_a_database_of_the_previous_schema_is_upgraded_in_place_with_its_data(scratch_url):
    engine = create_engine(scratch_url)
    folder = resources.files("etlnorm") / "sql"
    with engine.begin() as conn:
        for name in sql_files()[:BEFORE_VERSIONING]:
            raw(conn).execute((folder / name).read_text(encoding="utf-8"))
        conn.execute(text("INSERT INTO etlnorm.ontology (name, release, source, n_terms, n_obsolete, n_synonyms,"
                          " n_alt_ids) VALUES ('hp', '2024-01-01', 'a file', 1, 0, 0, 0)"))  # fmt: skip
        conn.execute(text("INSERT INTO etlnorm.term (ontology, id, label) VALUES ('hp', 'HP:0001250', 'Seizure')"))
        conn.execute(text("INSERT INTO etlnorm.mapping (ontology, term_md5, term, norm_term, release, id, label,"
                          " confidence, method) VALUES ('hp', md5('fits')::uuid, 'fits', 'fit', '2024-01-01',"
                          " 'HP:0001250', 'Seizure', 0.9, 'retrieval')"))  # fmt: skip
        assert conn.execute(text("SELECT to_regclass('etlnorm.schema_version')")).scalar() is None

    with engine.connect() as conn:
        assert pending_migrations(conn) == sql_files()  # no record: every (idempotent) file applies
    applied = init_db(engine)
    assert applied == sql_files()

    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version, name FROM etlnorm.schema_version ORDER BY 1")).all()
        kept = conn.execute(text("SELECT term, id, confidence, method, fingerprint FROM etlnorm.mapping")).all()
        fingerprint, computed = conn.execute(
            text("SELECT fingerprint, etlnorm.content_fingerprint(name) FROM etlnorm.ontology")).one()
        assert conn.execute(text("SELECT count(*) FROM etlnorm.term")).scalar() == 1
        assert pending_migrations(conn) == []
    assert [name for _, name in versions] == sql_files()
    assert [v for v, _ in versions] == list(range(1, len(sql_files()) + 1))
    # The data is kept; the old cached answer has no content fingerprint, so the next run recomputes it once.
    assert kept == [("fits", "HP:0001250", 0.9, "retrieval", None)]
    assert fingerprint == computed and fingerprint.startswith("sha256:")
    assert init_db(engine) == []  # up to date: nothing applied twice
    engine.dispose()


def test_a_changed_migration_is_applied_again_with_every_later_one(scratch_url):
    engine = create_engine(scratch_url)
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE etlnorm.schema_version SET checksum = 'edited' WHERE version = 5"))
        assert pending_migrations(conn) == sql_files()[4:]
    assert init_db(engine) == sql_files()[4:]
    with engine.connect() as conn:
        assert pending_migrations(conn) == []
    engine.dispose()
