"""`etlnorm run` against a real PostgreSQL: fill, rerun, resume after SIGKILL, hostile names, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from psycopg import sql
from sqlalchemy import text

from etlnorm.config import load_settings
from etlnorm.db.engine import raw
from etlnorm.errors import TableError
from etlnorm.warehouse.catalog import split_name
from etlnorm.warehouse.phases import RunLockedError, plan_run
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms
from etlnorm.warehouse.views import create_table_view
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


def test_a_new_release_makes_cached_mappings_stale(engine, terms):
    create_annotation_table(engine, "etl.stale", terms[:50], rows=500, seed=2)
    run_table("etl.stale", "term", "hp")
    with engine.begin() as conn:
        conn.execute(text("UPDATE etlnorm.mapping SET release = '2000-01-01' WHERE ontology = 'hp'"
                          " AND term = ANY (CAST(:t AS text[]))"), {"t": terms[:5]})  # fmt: skip
    assert scalar(engine, "SELECT count(*) FROM etlnorm.stale_mapping WHERE term = ANY (CAST(:t AS text[]))",
                  t=terms[:5]) == 5  # fmt: skip
    again = run_table("etl.stale", "term", "hp")
    assert again.stats.new_terms == len({t for t in terms[:5]} & set(_column(engine, "etl.stale")))
    assert scalar(engine, "SELECT count(*) FROM etlnorm.stale_mapping") == 0


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
