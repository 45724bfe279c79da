"""Benchmark of the normalize-table Prefect flow: default task runner vs Dask (local 2-worker cluster).

    .venv/bin/python bench/bench_flows.py [--rows 200000] [--distinct 5000] [--batch-size 500] [--update-rows 20000]

A table of ROWS raw phenotype strings (DISTINCT distinct; etlnorm.warehouse.synthetic) is normalized twice
from a cold mapping cache (cache rows of hp deleted and output columns reset before each run):
once with runner="default" (batches one after another in the flow's process) and once with
runner="dask" (a LocalCluster of 2 worker processes, 1 thread each; its start-up and each
worker's normalizer load are part of the measured time). Prefect runs against a temporary
in-process test server. Runs against ETLNORM_DATABASE_URL, or the embedded default; the
retrieval index variant is the setting (ETLNORM_INDEX_VARIANT=labels for the recorded figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # flows/ lives at the repository root

from etlnorm.cascade.encoder import load_encoder  # noqa: E402
from etlnorm.cascade.retrieval import build_index  # noqa: E402
from etlnorm.config import load_settings  # noqa: E402
from etlnorm.db.engine import ready_engine  # noqa: E402
from etlnorm.ontology.registry import read_release  # noqa: E402
from etlnorm.ontology.store import list_ontologies, save_release  # noqa: E402
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms  # noqa: E402

TABLE = "bench.flow_annotations"


def reset(engine: Engine) -> None:
    """Cold start: no cached hp answers, no outputs."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = 'hp'"))
        exists = conn.execute(text("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'bench'"
                                   " AND table_name = 'flow_annotations' AND column_name = 'term_hp_id'")).scalar()  # fmt: skip
        if exists:
            conn.execute(text(f"UPDATE {TABLE} SET term_hp_id = NULL, term_hp_label = NULL,"  # noqa: S608
                              " term_hp_confidence = NULL, term_hp_method = NULL"))  # fmt: skip
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {TABLE}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--distinct", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=500, help="distinct terms per normalize task")
    parser.add_argument("--update-rows", type=int, default=20_000, help="rows per update task")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = load_settings()
    engine = ready_engine(settings)
    if not list_ontologies(engine, "hp"):
        save_release(engine, read_release("hp", None, settings.home_dir / "ontologies"))
    # The index is built once, outside the measured runs (minutes on a CPU the first time).
    encoder = load_encoder(settings.encoder_model, settings.encode_batch_size)
    build_index(engine, "hp", encoder, settings.home_dir, settings.index_variant)
    del encoder
    load_encoder.cache_clear()  # each measured run loads its own encoder, as a fresh worker would
    terms = distinct_terms(engine, "hp", args.distinct, seed=42)
    create_annotation_table(engine, TABLE, terms, args.rows, seed=42)
    print(f"table {TABLE}: {args.rows:,} rows, {len(terms):,} distinct terms; index variant {settings.index_variant};"
          f" {args.batch_size} terms per normalize task, {args.update_rows:,} rows per update task;"
          f" {os.cpu_count()} CPUs")  # fmt: skip

    from prefect.testing.utilities import prefect_test_harness

    from flows.normalize import normalize_table

    results = {}
    with prefect_test_harness(server_startup_timeout=60):
        for runner in ("default", "dask"):
            reset(engine)
            start = time.perf_counter()
            out = normalize_table(TABLE, "term", "hp", batch_size=args.batch_size, runner=runner,
                                  dask_workers=args.workers, update_batch_rows=args.update_rows)  # fmt: skip
            seconds = time.perf_counter() - start
            s = out["stats"]
            phases = ", ".join(f"{k} {v:.1f}s" for k, v in s["timings"].items())
            label = "default runner" if runner == "default" else f"dask runner ({args.workers} local workers)"
            print(f"{label}: {seconds:.1f} s wall, {args.rows / seconds:,.0f} rows/s; {s['new_terms']:,} terms"
                  f" normalized in {len(out['processes'])} process(es), {s['rows_updated']:,} rows updated;"
                  f" phases: {phases}")  # fmt: skip
            results[runner] = seconds
    print(f"speed-up dask / default: {results['default'] / results['dask']:.2f}x")


if __name__ == "__main__":
    main()
