"""`etlnorm run` against a real PostgreSQL: fill, rerun, resume after SIGKILL, hostile names, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from psycopg import sql
from sqlalchemy import create_engine, text

from etlnorm.config import load_settings
from etlnorm.db.engine import init_db, raw
from etlnorm.errors import TableError
from etlnorm.warehouse.catalog import split_name
from etlnorm.warehouse.phases import (
    LockLostError,
    RunLockedError,
    key_ranges,
    normalize_batch,
    pending_terms,
    plan_run,
    prepare_table,
    run_lock,
    update_range,
)
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms
from etlnorm.warehouse.views import create_table_view
from tests.conftest import SMALL_HP, write_obo
from tests.test_cli import assert_one_line_error, etlnorm


@pytest.fixture(scope="module")
def terms(engine, hp) -> list[str]:
    return distinct_terms(engine, "hp", 400, seed=11)


def scalar(engine, query: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def checksum(engine, table: str) -> str:
    schema, name = split_name(table)
    with engine.connect() as conn:
        return raw(conn).execute(
            sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {} t").format(sql.Identifier(schema, name))
        ).fetchone()[0]


def test_run_fills_then_reruns_touch_nothing_then_only_new_rows(engine, terms):
    create_annotation_table(engine, "etl.basic", terms[:300], rows=3000, seed=1)
    first = run_table("etl.basic", "term", "hp")
    assert first.stats.rows_updated == 3000
    assert first.stats.new_terms == first.stats.distinct_terms > 200
    types = dict(engine.connect().execute(text(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema='etl' AND table_name='basic'"
        " AND column_name LIKE 'term_hp_%'")).all())  # fmt: skip
    assert types == {"term_hp_id": "text", "term_hp_label": "text", "term_hp_confidence": "real",
                     "term_hp_method": "text"}  # fmt: skip
    assert scalar(engine, "SELECT count(*) FROM etl.basic WHERE term_hp_method IS NULL") == 0
    # 2,454 rows measured (82 %): the rest abstain below min_confidence, mostly non-EXACT synonym hits (0.8).
    assert scalar(engine, "SELECT count(*) FROM etl.basic WHERE term_hp_id IS NOT NULL") > 2400
    assert scalar(engine, "SELECT count(*) FROM etl.basic WHERE term_hp_id IS NULL AND term_hp_method"
                          " NOT IN ('none', 'empty', 'negated', 'multiple')") == 0
    # Empty and NULL cells get NULL outputs with method 'empty'.
    assert scalar(engine, "SELECT count(*) FROM etl.basic WHERE (term IS NULL OR term = '')"
                          " AND (term_hp_method <> 'empty' OR term_hp_id IS NOT NULL OR term_hp_confidence IS NOT NULL)") == 0

    second = run_table("etl.basic", "term", "hp")
    assert (second.stats.rows_updated, second.stats.new_terms) == (0, 0)
    assert second.stats.cache_hits == first.stats.distinct_terms

    new_terms = terms[300:320]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO etl.basic (id, patient_id, term) SELECT 100000 + g, 1, t"
                          " FROM unnest(CAST(:t AS text[])) WITH ORDINALITY AS u(t, g)"), {"t": new_terms})  # fmt: skip
    third = run_table("etl.basic", "term", "hp")
    assert third.stats.rows_updated == len(new_terms)
    assert third.stats.new_terms == len(set(new_terms))
    assert scalar(engine, "SELECT count(*) FROM etl.basic WHERE term_hp_method IS NULL") == 0

    runs = etlnorm("runs")
    assert runs.returncode == 0 and "etl.basic.term" in runs.stdout


def test_answers_of_other_content_are_recomputed_but_the_exact_matches_the_release_keeps(engine, terms):
    create_annotation_table(engine, "etl.stale", terms[:50], rows=500, seed=2)
    run_table("etl.stale", "term", "hp")
    present = sorted(set(terms[:10]) & set(_column(engine, "etl.stale")))
    with engine.begin() as conn:  # as if computed on another release's content
        conn.execute(text("UPDATE etlnorm.mapping SET fingerprint = 'sha256:other' WHERE ontology = 'hp'"
                          " AND term = ANY (CAST(:t AS text[]))"), {"t": present})  # fmt: skip
        exact = conn.execute(text("SELECT count(*) FROM etlnorm.mapping WHERE ontology = 'hp' AND term = ANY"
                                  " (CAST(:t AS text[])) AND method IN ('exact', 'synonym')"), {"t": present}).scalar()  # fmt: skip
    assert scalar(engine, "SELECT count(*) FROM etlnorm.stale_mapping WHERE term = ANY (CAST(:t AS text[]))",
                  t=present) == len(present) > exact > 0  # fmt: skip
    again = run_table("etl.stale", "term", "hp")
    # The same lexicon still gives every exact match: kept; every other answer is recomputed.
    assert (again.stats.carried_over, again.stats.new_terms) == (exact, len(present) - exact)
    assert again.stats.rows_updated == 0  # the same content gives the same answers
    assert scalar(engine, "SELECT count(*) FROM etlnorm.stale_mapping") == 0


def test_a_changed_answer_setting_recomputes_every_term(engine, terms):
    create_annotation_table(engine, "etl.producer", terms[:30], rows=100, seed=21)
    first = run_table("etl.producer", "term", "hp")
    assert run_table("etl.producer", "term", "hp").stats.new_terms == 0
    stricter = load_settings().model_copy(update={"min_confidence": 0.95})
    again = run_table("etl.producer", "term", "hp", settings=stricter)
    assert again.stats.new_terms == again.stats.distinct_terms == first.stats.distinct_terms
    assert scalar(engine, "SELECT count(*) FROM etl.producer WHERE term_hp_confidence < 0.9499 AND term_hp_id IS NOT NULL"
                          " AND term_hp_method <> 'curated'") == 0  # fmt: skip


def _column(engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text(f"SELECT DISTINCT term FROM {table} WHERE term IS NOT NULL"))]  # noqa: S608 - test-owned name


def test_sigkill_during_update_then_rerun_equals_uninterrupted_run(engine, terms, database_url):
    create_annotation_table(engine, "etl.killed", terms[:400], rows=200_000, seed=3)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS etl.reference"))
        conn.execute(text("CREATE TABLE etl.reference (LIKE etl.killed INCLUDING ALL)"))
        conn.execute(text("INSERT INTO etl.reference SELECT * FROM etl.killed"))
    env = {**os.environ, "ETLNORM_UPDATE_BATCH_ROWS": "1000"}
    proc = subprocess.Popen([sys.executable, "-m", "etlnorm", "run", "--table", "etl.killed", "--column", "term",
                             "--ontology", "hp"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    filled = 0
    while time.monotonic() < deadline and proc.poll() is None:
        filled = scalar(engine, "SELECT count(*) FROM etl.killed WHERE term_hp_method IS NOT NULL") if scalar(
            engine, "SELECT count(*) FROM information_schema.columns WHERE table_name='killed'"
            " AND column_name='term_hp_method'") else 0  # fmt: skip
        if filled > 20_000:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 0 < filled < 200_000
    assert scalar(engine, "SELECT count(*) FROM etl.killed WHERE term_hp_method IS NULL") > 0
    # Every row is whole: either all four outputs written or none.
    assert scalar(engine, "SELECT count(*) FROM etl.killed WHERE term_hp_method IS NULL AND"
                          " (term_hp_id IS NOT NULL OR term_hp_label IS NOT NULL OR term_hp_confidence IS NOT NULL)") == 0

    resumed = run_table("etl.killed", "term", "hp")
    assert 0 < resumed.stats.rows_updated < 200_000
    run_table("etl.reference", "term", "hp")
    assert checksum(engine, "etl.killed") == checksum(engine, "etl.reference")
    statuses = scalar(engine, "SELECT string_agg(status, ',' ORDER BY started_at) FROM etlnorm.run"
                              " WHERE table_name = 'etl.killed'")  # fmt: skip
    assert statuses == "interrupted,completed"


def _tables(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted(conn.execute(text(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN"
            " ('pg_catalog', 'information_schema')")).all())  # fmt: skip


def test_hostile_names_work_quoted_or_fail_clearly(engine, terms):
    with engine.begin() as conn:
        cur = raw(conn).cursor()
        cur.execute('CREATE SCHEMA IF NOT EXISTS "Weird Schema"')
        cur.execute('CREATE TABLE IF NOT EXISTS etl.y (id int PRIMARY KEY)')
        cur.execute('DROP TABLE IF EXISTS "Weird Schema"."x; DROP TABLE etl.y"')
        cur.execute('CREATE TABLE "Weird Schema"."x; DROP TABLE etl.y" (k int PRIMARY KEY, "Térm ""quoted""" text)')
        cur.execute('INSERT INTO "Weird Schema"."x; DROP TABLE etl.y" SELECT g, %s FROM generate_series(1, 3) g',
                    (terms[0],))  # fmt: skip
    before = _tables(engine)
    summary = run_table('"Weird Schema"."x; DROP TABLE etl.y"', 'Térm "quoted"', "hp", prefix="Out'put")
    assert summary.stats.rows_updated == 3
    assert _tables(engine) == before
    with engine.connect() as conn:
        methods = conn.execute(text('SELECT DISTINCT "Out\'put_method" FROM "Weird Schema"."x; DROP TABLE etl.y"')).all()
    assert methods and methods[0][0] in ("exact", "synonym", "retrieval", "none")
    for bad in ("etl.y; DROP TABLE etl.y", "nope.nope", 'etl."unclosed', "a.b.c", ""):
        with pytest.raises(TableError):
            run_table(bad, "term", "hp")
    assert _tables(engine) == before


def test_odd_terms_never_fail_the_run(engine):
    odd = [None, "", "   ", "x" * 10_000, "seizures\x07\x01", "🙂🙂", "Ωmega-3 ∆ ☃", "ＳＥＩＺＵＲＥＳ", "\u200bseizure"]
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS etl.odd"))
        conn.execute(text("CREATE TABLE etl.odd (id int PRIMARY KEY, term text)"))
        conn.execute(text("INSERT INTO etl.odd SELECT g, (CAST(:t AS text[]))[g] FROM generate_series(1, :n) g"),
                     {"t": odd, "n": len(odd)})  # fmt: skip
    summary = run_table("etl.odd", "term", "hp")
    assert summary.stats.rows_updated == len(odd)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, term_hp_method FROM etl.odd")).all())
    assert rows[1] == rows[2] == rows[3] == "empty"
    assert rows[4] in ("none", "retrieval") and rows[6] == "none"
    assert rows[8] == "exact"  # full-width letters are NFKC-folded


def test_bad_targets_are_one_line_errors(engine, hp):
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS etl.nokey"))
        conn.execute(text("CREATE TABLE etl.nokey (n int, term text, code int)"))
        conn.execute(text("INSERT INTO etl.nokey VALUES (1, 'Seizure', 1)"))
    assert_one_line_error(etlnorm("run", "--table", "etl.missing", "--column", "term", "--ontology", "hp"),
                          "no table 'etl.missing'")  # fmt: skip
    assert_one_line_error(etlnorm("run", "--table", "etl.nokey", "--column", "nope", "--ontology", "hp"),
                          "has no column 'nope'")  # fmt: skip
    assert_one_line_error(etlnorm("run", "--table", "etl.nokey", "--column", "code", "--ontology", "hp"),
                          "not text")  # fmt: skip
    assert_one_line_error(etlnorm("run", "--table", "etl.nokey", "--column", "term", "--ontology", "hp"),
                          "--key")  # fmt: skip
    assert_one_line_error(etlnorm("run", "--table", "etl.nokey", "--column", "term", "--ontology", "mesh"),
                          "unknown ontology")  # fmt: skip
    done = etlnorm("run", "--table", "etl.nokey", "--column", "term", "--ontology", "hp", "--key", "n")
    assert done.returncode == 0, done.stderr
    assert scalar(engine, "SELECT term_hp_id FROM etl.nokey") == "HP:0001250"


def test_second_concurrent_run_exits_clearly(engine, terms):
    create_annotation_table(engine, "etl.locked", terms[:10], rows=50, seed=4)
    plan = plan_run(load_settings(), "etl.locked", "term", "hp")
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": plan.lock_key})
        with pytest.raises(RunLockedError, match="in progress"):
            run_table("etl.locked", "term", "hp")
        holder.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": plan.lock_key})
    assert run_table("etl.locked", "term", "hp").stats.rows_updated == 50


def test_a_derived_name_over_63_bytes_is_refused_at_plan_time(engine, hp):
    column = "c" * 60  # <column>_hp_id would be 66 bytes: PostgreSQL would truncate it silently
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS etl"))
        conn.execute(text("DROP TABLE IF EXISTS etl.longnames"))
        conn.execute(text(f'CREATE TABLE etl.longnames (id int PRIMARY KEY, "{column}" text)'))
        conn.execute(text("INSERT INTO etl.longnames VALUES (1, 'Seizure')"))
    with pytest.raises(TableError, match=r"_hp_id. would be 66 bytes.*--prefix of at most 52 bytes"):
        plan_run(load_settings(), "etl.longnames", column, "hp")
    assert_one_line_error(etlnorm("run", "--table", "etl.longnames", "--column", column, "--ontology", "hp"),
                          "over PostgreSQL's 63")  # fmt: skip
    assert run_table("etl.longnames", column, "hp", prefix="short").stats.rows_updated == 1
    with pytest.raises(TableError, match="view"):
        create_table_view(engine, "etl.longnames", column, "hp", prefix="p" * 52)


def test_a_rerun_that_adds_no_column_is_not_blocked_by_a_reader_holding_row_locks(engine, terms):
    """ALTER TABLE (an ACCESS EXCLUSIVE lock) runs only when an output column is missing, so a
    session holding row locks on the table does not stall a rerun; a run that must add columns
    waits at most lock_timeout and says why."""
    create_annotation_table(engine, "etl.busy", terms[:20], rows=100, seed=12)
    run_table("etl.busy", "term", "hp")
    quick = load_settings().model_copy(update={"lock_timeout": 1.0})
    with engine.connect() as reader:
        reader.execute(text("SELECT * FROM etl.busy WHERE id = (SELECT min(id) FROM etl.busy) FOR UPDATE"))
        start = time.monotonic()
        again = run_table("etl.busy", "term", "hp", settings=quick)
        assert again.stats.rows_updated == 0 and time.monotonic() - start < 60
        with pytest.raises(TableError, match="could not lock etl.busy within 1 s"):
            run_table("etl.busy", "term", "hp", prefix="other", settings=quick)  # must add 4 columns
        reader.rollback()
    assert run_table("etl.busy", "term", "hp", prefix="other").stats.rows_updated == 100


def test_a_lost_lock_session_stops_the_run_before_its_next_write_and_a_rerun_resumes(engine, terms):
    create_annotation_table(engine, "etl.lostlock", terms[:40], rows=200, seed=22)
    plan = plan_run(load_settings(), "etl.lostlock", "term", "hp", force=True)
    pending, _ = pending_terms(plan)
    with pytest.raises(LockLostError, match="lost its lock.*Rerun to resume"):
        with run_lock(plan) as pid:
            prepare_table(plan, pid)
            normalize_batch(plan, pending[:10])  # written: the lock is held
            with engine.connect() as conn:  # the lock's session ends (a restart or an admin would do this)
                assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            normalize_batch(plan, pending[10:])
    assert scalar(engine, "SELECT count(*) FROM etlnorm.mapping WHERE run_id = :r", r=plan.run_id) == 10
    with pytest.raises(LockLostError):
        update_range(plan, *key_ranges(plan)[0])
    assert scalar(engine, "SELECT count(*) FROM etl.lostlock WHERE term_hp_method IS NOT NULL") == 0
    resumed = run_table("etl.lostlock", "term", "hp")
    assert resumed.stats.rows_updated == 200
    assert scalar(engine, "SELECT count(*) FROM etl.lostlock WHERE term_hp_method IS NULL") == 0


def test_the_lock_and_the_run_record_name_the_same_target(engine, terms):
    """Two prefixes on one column are two targets: both may run; a rerun of one interrupts only its own."""
    create_annotation_table(engine, "etl.targets", terms[:10], rows=20, seed=23)
    settings = load_settings()
    first, other = (plan_run(settings, "etl.targets", "term", "hp", prefix=p) for p in ("one", "two"))
    assert first.lock_key != other.lock_key
    with run_lock(first) as pid_one, run_lock(other) as pid_two:  # both held at once
        prepare_table(first, pid_one)
        prepare_table(other, pid_two)
        again = plan_run(settings, "etl.targets", "term", "hp", prefix="one")
    with run_lock(again) as pid:
        prepare_table(again, pid)
    statuses = dict(engine.connect().execute(text("SELECT run_id, status FROM etlnorm.run WHERE table_name ="
                                                  " 'etl.targets'")).all())  # fmt: skip
    assert (statuses[first.run_id], statuses[other.run_id], statuses[again.run_id]) == (
        "interrupted", "running", "running")


RELEASE_1 = SMALL_HP + """
[Term]
id: HP:0000369
name: Low-set ears

[Term]
id: HP:0001251
name: Ataxia

[Term]
id: HP:0002000
name: Short columella
"""
# The next release: a new label for one term (same words), one term obsoleted, one new term.
RELEASE_2 = RELEASE_1.replace("name: Low-set ears", "name: Low set ears").replace(
    "name: Ataxia", "name: Ataxia\nis_obsolete: true") + "\n[Term]\nid: HP:0009999\nname: Frequent seizures\n"


def test_a_new_release_recomputes_only_what_it_could_change(scratch_url, tmp_path):
    """Kept: exact matches still given, to a current ID (with today's label). Recomputed: the match
    of a now obsolete term, and every non-exact answer. The result equals a --force rerun."""
    from etlnorm.ontology.update import update_release

    settings = load_settings(database_url=scratch_url, routing={"hp": ["lexical", "fuzzy"]}, auto_calibrate=False)
    engine = create_engine(scratch_url)
    init_db(engine)
    update_release(engine, settings, "hp", write_obo(tmp_path, "2024-01-01", RELEASE_1))
    rows = ["Seizure", "Seizures", "Low-set ears", "Ataxia", "Seizurre", "Short columella"]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id int PRIMARY KEY, term text)"))
        conn.execute(text("INSERT INTO notes SELECT g, t FROM unnest(CAST(:t AS text[])) WITH ORDINALITY u(t, g)"),
                     {"t": rows})  # fmt: skip
    first = run_table("notes", "term", "hp", settings=settings)
    assert first.stats.new_terms == 6
    assert dict(engine.connect().execute(text("SELECT term, term_hp_method FROM notes")).all())["Seizurre"] == "fuzzy"

    update_release(engine, settings, "hp", write_obo(tmp_path, "2025-01-01", RELEASE_2))
    second = run_table("notes", "term", "hp", settings=settings)
    assert (second.stats.carried_over, second.stats.new_terms) == (4, 2)  # Ataxia (obsolete) and the fuzzy match
    answers = {t: (i, label, m) for t, i, label, m in engine.connect().execute(
        text("SELECT term, term_hp_id, term_hp_label, term_hp_method FROM notes")).all()}  # fmt: skip
    assert answers["Low-set ears"] == ("HP:0000369", "Low set ears", "exact")
    assert answers["Ataxia"][0] is None

    def outputs():
        return sorted(engine.connect().execute(text("SELECT term, term_hp_id, term_hp_label, term_hp_method FROM notes")).all())

    before = outputs()
    assert run_table("notes", "term", "hp", settings=settings, force=True).stats.new_terms == 6
    assert outputs() == before
    engine.dispose()
