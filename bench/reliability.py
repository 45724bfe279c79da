"""A fault and fuzz campaign against a real PostgreSQL: prints cases tried, faults survived, rows lost.

    python bench/reliability.py [--rows 1000000] [--distinct 20000] [--skip-soak]

Needs an etlnorm database (ETLNORM_DATABASE_URL) with hp loaded; it creates schema ``rel`` and its
tables. Every case ends with a check of the whole table: a row is *lost* when its four outputs
differ from what an uninterrupted run writes (the cached answer of its term; method 'empty' for
blank cells), so a half-written row, a skipped row and a row written from another answer all count.

Cases:
- hostile identifiers (quotes, semicolons, SQL keywords, spaces, Unicode, 63 bytes) as schema,
  table and column names, through the library, the CLI and the view builder; DDL is logged by an
  event trigger and every other table is checksummed, so a statement outside the target is counted;
- faults mid-run: SIGKILL of the CLI during the update, the run's backend terminated during its COPY
  into the cache, every backend terminated during the update (a restart as the clients see it, lock
  session included), the lock's session terminated during normalize, a full disk under the index
  folder; each followed by a rerun;
- concurrency: two runs on one column (the second refused clearly, or waiting with --wait) and two
  runs on different columns of one table at once;
- a soak: ``--rows`` rows / ``--distinct`` distinct terms, then 10 % of the rows given other terms
  and the run repeated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from psycopg import sql
from sqlalchemy import text

from etlnorm.config import load_settings
from etlnorm.db.engine import raw, ready_engine
from etlnorm.errors import EtlnormError
from etlnorm.warehouse.catalog import output_columns, split_name
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms

HOSTILE = ['x"; DROP TABLE rel.canary; --', "Robert'); DELETE FROM rel.canary; --", "select", "a b.c",
           "Ünïcødé ✓", "tab\tname", "n" * 63, 'q"uote']  # fmt: skip
SCHEMA = "rel"


class Campaign:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.cases = self.survived = self.lost = 0
        self.outside = 0

    def case(self, name: str, body: Callable[[], int]) -> None:
        """Run one case; ``body`` returns the rows lost (and raises if the fault was not survived)."""
        self.cases += 1
        start = time.perf_counter()
        try:
            lost = body()
        except Exception as exc:  # a case that breaks is reported, and the campaign goes on
            print(f"  {name:<62} NOT SURVIVED: {type(exc).__name__}: {exc}"[:200])
            return
        self.lost += lost
        self.survived += lost == 0
        print(f"  {name:<62} rows lost {lost:>3}  ({time.perf_counter() - start:.0f} s)")


def lost_rows(engine, table: str, column: str = "term", prefix: str | None = None) -> int:
    """Rows whose outputs differ from an uninterrupted run's: the cached answer of their term."""
    schema, name = split_name(table)
    o = {k: sql.Identifier(v) for k, v in output_columns(prefix or f"{column}_hp").items()}
    query = sql.SQL(
        "SELECT count(*) FROM {tbl} t LEFT JOIN etlnorm.mapping m ON m.ontology = 'hp' AND m.term_md5 = md5(t.{col})::uuid"
        " WHERE (t.{id}, t.{label}, t.{confidence}, t.{method}) IS DISTINCT FROM"
        " (CASE WHEN t.{col} IS NULL OR btrim(t.{col}) = '' THEN (NULL::text, NULL::text, NULL::real, 'empty'::text)"
        "  ELSE (m.id, m.label, m.confidence, m.method) END)"
    ).format(tbl=sql.Identifier(schema, name) if schema else sql.Identifier(name), col=sql.Identifier(column), **o)
    with engine.connect() as conn:
        return int(raw(conn).execute(query).fetchone()[0])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "etlnorm", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(engine, query: str, params: dict | None = None, timeout: float = 300) -> list:
    """Poll ``query`` until it returns rows (pids, counts ...); [] at the timeout."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(text(query), params or {}).scalars().all()
            conn.commit()
            if rows and rows[0]:
                return rows
            time.sleep(0.005)
    return []


def terminate(engine, pids: list[int]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(pg_terminate_backend(p)) FROM unnest(CAST(:p AS int[])) p"),
                                {"p": pids}).scalar())  # fmt: skip


def hostile_identifiers(c: Campaign, terms: list[str]) -> None:
    engine = c.engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS rel.canary (id int PRIMARY KEY, v text)"))
        conn.execute(text("INSERT INTO rel.canary VALUES (1, 'keep') ON CONFLICT DO NOTHING"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS rel.ddl_log (tag text, identity text)"))
        conn.execute(text(
            "CREATE OR REPLACE FUNCTION rel.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ DECLARE r record;"
            " BEGIN FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP"
            " INSERT INTO rel.ddl_log VALUES (r.command_tag, r.object_identity); END LOOP; END $$"))  # fmt: skip
        conn.execute(text("DROP EVENT TRIGGER IF EXISTS rel_ddl"))
        conn.execute(text("CREATE EVENT TRIGGER rel_ddl ON ddl_command_end EXECUTE FUNCTION rel.log_ddl()"))

    def others() -> dict[str, str]:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname"
                                       " NOT IN ('pg_catalog', 'information_schema', 'etlnorm', 'hostile')"
                                       " AND tablename <> 'ddl_log'")).scalars().all()  # fmt: skip
            return {t: conn.execute(text(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"  # noqa: S608 - catalog names, quoted by format(%I)
                                         f" FROM {t} x")).scalar() for t in tables}  # fmt: skip

    for name in HOSTILE:
        def body(name: str = name) -> int:
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE rel.ddl_log"))
            before = others()
            ident = sql.Identifier("hostile", name)
            with engine.begin() as conn:
                cur = raw(conn).cursor()
                cur.execute("CREATE SCHEMA IF NOT EXISTS hostile")
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(ident))  # and the view of an earlier pass
                cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} text)").format(ident, sql.Identifier(name)))
                cur.execute(sql.SQL("INSERT INTO {} SELECT g, t FROM unnest(%s::text[]) WITH ORDINALITY u(t, g)")
                            .format(ident), (terms[:30],))  # fmt: skip
            qualified = f'"hostile"."{name.replace(chr(34), chr(34) * 2)}"'
            prefix = "p"  # a derived name of a 63-byte column would be too long: the run says so and names --prefix
            run_table(qualified, name, "hp", prefix=prefix)
            done = subprocess.run([sys.executable, "-m", "etlnorm", "run", "--table", qualified, "--column", name,
                                   "--ontology", "hp", "--prefix", prefix], capture_output=True, text=True)  # fmt: skip
            if done.returncode != 0:
                raise EtlnormError(done.stderr.strip().splitlines()[-1])
            view = subprocess.run([sys.executable, "-m", "etlnorm", "view", "create", "--table", qualified, "--column",
                                   name, "--ontology", "hp", "--prefix", prefix], capture_output=True, text=True)  # fmt: skip
            refused = "63" in view.stderr and "Traceback" not in view.stderr  # a view name too long: a clear refusal
            if view.returncode != 0 and not refused:
                raise EtlnormError(view.stderr.strip().splitlines()[-1])
            with engine.connect() as conn:
                ddl = conn.execute(text("SELECT identity FROM rel.ddl_log")).scalars().all()
            c.outside += sum(1 for i in ddl if not i.startswith(("hostile.", "pg_temp")))
            c.outside += sum(1 for t, v in others().items() if before.get(t) != v)
            return lost_rows(engine, qualified, name, prefix)

        c.case(f"hostile name {name[:30]!r}: library, CLI and view", body)
    with engine.begin() as conn:
        conn.execute(text("DROP EVENT TRIGGER IF EXISTS rel_ddl"))
        c.outside += int(conn.execute(text("SELECT count(*) <> 1 FROM rel.canary WHERE v = 'keep'")).scalar())


def faults(c: Campaign, terms: list[str], home: Path) -> None:
    engine = c.engine

    def sigkill_during_update() -> int:
        create_annotation_table(engine, "rel.kill", terms[:400], rows=200_000, seed=3)
        proc = cli("run", "--table", "rel.kill", "--column", "term", "--ontology", "hp",
                   env={"ETLNORM_UPDATE_BATCH_ROWS": "2000"})  # fmt: skip
        wait_for(engine, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'UPDATE \"rel\".\"kill\" AS t%' LIMIT 1")
        time.sleep(0.3)
        proc.kill()
        proc.wait()
        run_table("rel.kill", "term", "hp")
        return lost_rows(engine, "rel.kill")

    def forced_run_with(table: str, seed: int, victims: str, expect: str) -> int:
        """A --force run of 2,000 terms in batches of 500, the backends ``victims`` selects terminated
        mid-run; the run must fail with ``expect`` in its error, then a rerun resumes."""
        create_annotation_table(engine, table, terms, rows=50_000, seed=seed)
        settings = load_settings().model_copy(update={"normalize_batch_size": 500})
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _capture(errors, run_table, table, "term", "hp", force=True,
                                                          settings=settings))  # fmt: skip
        thread.start()
        terminated = terminate(engine, wait_for(engine, victims, {"t": table}))
        thread.join()
        if not terminated or not errors or expect not in str(errors[0]):
            raise RuntimeError(f"expected an error with {expect!r} after terminating {terminated}, got {errors}")
        run_table(table, "term", "hp")
        return lost_rows(engine, table)

    def backend_terminated_mid_copy() -> int:
        return forced_run_with("rel.copy", 4, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY etlnorm_batch%'",
                               "connection")  # fmt: skip

    def every_backend_terminated_mid_update() -> int:
        create_annotation_table(engine, "rel.restart", terms[:400], rows=200_000, seed=5)
        settings = load_settings().model_copy(update={"update_batch_rows": 5000})
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _capture(errors, run_table, "rel.restart", "term", "hp",
                                                          settings=settings))  # fmt: skip
        thread.start()
        wait_for(engine, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'UPDATE \"rel\".\"restart\" AS t%'")
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                              " AND pid <> pg_backend_pid()"))  # fmt: skip
        thread.join()
        if not errors or "connection" not in str(errors[0]):  # its UPDATE's connection went first
            raise RuntimeError(f"expected a clear lost-connection error, got {errors}")
        run_table("rel.restart", "term", "hp")
        return lost_rows(engine, "rel.restart")

    def lock_session_terminated_mid_normalize() -> int:
        return forced_run_with("rel.lock", 6, "SELECT r.lock_pid FROM etlnorm.run r WHERE r.table_name = :t AND"
                               " r.status = 'running' AND EXISTS (SELECT 1 FROM etlnorm.mapping m WHERE m.run_id = r.run_id)",
                               "lost its lock")  # fmt: skip

    def disk_full_under_the_index() -> int:
        script = ("import resource, signal, sys\nfrom etlnorm.cli import main\n"
                  "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                  "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))\n"
                  "sys.argv = ['etlnorm', 'index', 'build', '--ontology', 'hp']\nmain()\n")  # fmt: skip
        with tempfile.TemporaryDirectory() as scratch:
            env = {**os.environ, "ETLNORM_HOME": scratch}
            (Path(scratch) / "ontologies").symlink_to(home / "ontologies")
            done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
            clear = done.returncode != 0 and "cannot write the hp index" in done.stderr and "Traceback" not in done.stderr
            leftovers = [p for p in (Path(scratch) / "indexes").rglob("*") if p.is_dir() and "-labels" in p.name]
            if not clear or leftovers:
                raise RuntimeError(f"not a clear error or something left: {done.stderr[-300:]} {leftovers}")
        return 0

    def two_runs_on_one_column() -> int:
        create_annotation_table(engine, "rel.same", terms, rows=200_000, seed=7)
        first = cli("run", "--table", "rel.same", "--column", "term", "--ontology", "hp", "--force")  # minutes, not seconds
        wait_for(engine, "SELECT 1 FROM etlnorm.run WHERE table_name = 'rel.same' AND status = 'running'")
        second = subprocess.run([sys.executable, "-m", "etlnorm", "run", "--table", "rel.same", "--column", "term",
                                 "--ontology", "hp"], capture_output=True, text=True)  # fmt: skip
        waiting = cli("run", "--table", "rel.same", "--column", "term", "--ontology", "hp", "--wait")
        if first.wait() != 0 or waiting.wait() != 0:
            raise RuntimeError("a run failed")
        if second.returncode == 0 or "in progress" not in second.stderr:
            raise RuntimeError(f"the second run was not refused clearly: {second.stderr[-200:]}")
        return lost_rows(engine, "rel.same")

    def two_runs_on_two_columns() -> int:
        create_annotation_table(engine, "rel.two", terms[:400], rows=200_000, seed=8)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE rel.two ADD COLUMN other text"))
            conn.execute(text("UPDATE rel.two SET other = reverse(term)"))
        procs = [cli("run", "--table", "rel.two", "--column", col, "--ontology", "hp") for col in ("term", "other")]
        if [p.wait() for p in procs] != [0, 0]:
            raise RuntimeError("a run failed: " + " | ".join(p.stderr.read()[-200:] for p in procs))
        return lost_rows(engine, "rel.two") + lost_rows(engine, "rel.two", "other")

    for name, body in (("SIGKILL of the CLI during the update", sigkill_during_update),
                       ("the run's backend terminated during its COPY into the cache", backend_terminated_mid_copy),
                       ("every backend terminated during the update (a restart)", every_backend_terminated_mid_update),
                       ("the lock's session terminated during normalize", lock_session_terminated_mid_normalize),
                       ("a full disk under the index folder", disk_full_under_the_index),
                       ("two runs on one column (refused, then --wait)", two_runs_on_one_column),
                       ("two runs on two columns of one table at once", two_runs_on_two_columns)):  # fmt: skip
        c.case(name, body)


def soak(c: Campaign, rows: int, distinct: int, seed: int) -> None:
    engine = c.engine
    terms = distinct_terms(engine, "hp", distinct, seed=seed)  # a seed no earlier run used: a cold cache

    def body() -> int:
        create_annotation_table(engine, "rel.soak", terms, rows=rows, seed=9)
        start = time.perf_counter()
        first = run_table("rel.soak", "term", "hp", progress=True)
        cold = time.perf_counter() - start
        with engine.begin() as conn:  # 10 % of the rows get another term: half a new spelling, half another row's
            conn.execute(text("UPDATE rel.soak SET term = CASE WHEN id % 10 = 4 THEN 'recurrent ' || term"
                              " ELSE (SELECT s.term FROM rel.soak s WHERE s.id = rel.soak.id % 1000 + 1) END"
                              " WHERE id % 10 IN (3, 4)"))  # fmt: skip
        start = time.perf_counter()
        second = run_table("rel.soak", "term", "hp", progress=True)
        print(f"    {rows:,} rows: cold run {cold:.0f} s ({first.stats.new_terms:,} terms); after 10 % churn "
              f"{time.perf_counter() - start:.0f} s, {second.stats.rows_updated:,} rows updated, "
              f"{second.stats.new_terms:,} new terms")  # fmt: skip
        return lost_rows(engine, "rel.soak")

    c.case(f"soak: {rows:,} rows / {distinct:,} distinct, then 10 % churn", body)


def _capture(errors: list[BaseException], fn: Callable, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except BaseException as exc:  # the fault under test
        errors.append(exc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--distinct", type=int, default=20_000)
    ap.add_argument("--skip-soak", action="store_true")
    ap.add_argument("--only-soak", action="store_true")
    ap.add_argument("--soak-seed", type=int, default=99, help="seed of the soak's terms (another one: a cold cache)")
    args = ap.parse_args()
    settings = load_settings()
    engine = ready_engine(settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS rel"))
    terms = distinct_terms(engine, "hp", 2000, seed=11)
    campaign = Campaign(engine)
    if not args.only_soak:
        print("hostile identifiers")
        hostile_identifiers(campaign, terms)
        print("faults")
        faults(campaign, terms, settings.home_dir)
    if not args.skip_soak:
        print("soak")
        soak(campaign, args.rows, args.distinct, args.soak_seed)
    print(json.dumps({"cases": campaign.cases, "survived": campaign.survived, "rows_lost": campaign.lost,
                      "statements_outside_target": campaign.outside}))  # fmt: skip


if __name__ == "__main__":
    main()
