"""Benchmark of `etlnorm run` on a big table (not a test: prints its figures).

    .venv/bin/python bench/bench_etl.py [--rows 1000000] [--distinct 20000]

A table of ROWS raw phenotype strings (DISTINCT distinct, drawn from HPO labels and synonyms
with realistic variation) is normalized twice: cold (empty mapping cache) and warm (everything
cached, output columns reset). Beside them, the raw speed of one `UPDATE ... FROM` of all rows
from a temp table, the floor a warm run is compared with (target: warm / raw >= 0.5).
Runs against ETLNORM_DATABASE_URL, or the embedded default.
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy import Engine, text

from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.ontology.registry import read_release
from etlnorm.ontology.store import list_ontologies, save_release
from etlnorm.warehouse.run import RunReport, run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms

TABLE = "bench.annotations"


def raw_update_rate(engine: Engine, rows: int) -> float:
    """Rows/s of one UPDATE ... FROM a temp table keyed by id, setting four columns."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE src ON COMMIT DROP AS SELECT id, 'HP:0000001'::text AS a,"
                          " 'label'::text AS b, 0.9::real AS c, 'exact'::text AS d FROM bench.annotations"))  # fmt: skip
        conn.execute(text("ANALYZE src"))
        start = time.perf_counter()
        conn.execute(text("UPDATE bench.annotations t SET term_hp_id = s.a, term_hp_label = s.b,"
                          " term_hp_confidence = s.c, term_hp_method = s.d FROM src s WHERE t.id = s.id"))  # fmt: skip
        seconds = time.perf_counter() - start
    return rows / seconds


def reset_outputs(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE bench.annotations SET term_hp_id = NULL, term_hp_label = NULL,"
                          " term_hp_confidence = NULL, term_hp_method = NULL"))  # fmt: skip
        conn.execute(text("ANALYZE bench.annotations"))


def report(name: str, summary: RunReport, seconds: float, rows: int) -> None:
    s = summary.stats
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in s.timings.items())
    print(f"{name}: {seconds:.1f} s end to end, {rows / seconds:,.0f} rows/s; {s.rows_updated:,} rows updated, "
          f"{s.new_terms:,} terms normalized, {s.cache_hits:,} cache hits; phases: {phases}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=20_000)
    args = parser.parse_args()
    settings = load_settings()
    engine = ready_engine(settings)
    if not list_ontologies(engine, "hp"):
        save_release(engine, read_release("hp", None, settings.home_dir / "ontologies"))
    terms = distinct_terms(engine, "hp", args.distinct, seed=42)
    start = time.perf_counter()
    create_annotation_table(engine, TABLE, terms, args.rows, seed=42)
    print(f"table {TABLE}: {args.rows:,} rows, {len(terms):,} distinct terms, created in "
          f"{time.perf_counter() - start:.1f} s; index variant {settings.index_variant}")  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = 'hp'"))

    start = time.perf_counter()
    cold = run_table(TABLE, "term", "hp", settings=settings)
    report("cold run (empty cache)", cold, time.perf_counter() - start, args.rows)

    reset_outputs(engine)
    start = time.perf_counter()
    warm = run_table(TABLE, "term", "hp", settings=settings)
    warm_seconds = time.perf_counter() - start
    report("warm run (all cached, outputs reset)", warm, warm_seconds, args.rows)

    reset_outputs(engine)
    raw_rate = raw_update_rate(engine, args.rows)
    warm_rate = args.rows / warm_seconds
    print(f"raw UPDATE ... FROM temp table: {raw_rate:,.0f} rows/s")
    print(f"ratio warm run / raw update: {warm_rate / raw_rate:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
