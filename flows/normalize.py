"""``normalize-table``: one warehouse column, each library phase a Prefect task.

plan → (advisory lock held by this flow for the whole run) → prepare → subflow ``normalize-table-batches``
on the chosen task runner [pending terms → normalize batches (normalize + cache, one task each) →
key ranges → update ranges (one task each)] → coverage → confidence histogram → run record → artifact.

``runner="dask"`` runs the batch tasks on a Dask cluster (``dask_address``, or a local cluster of
``dask_workers`` processes); every worker process loads the normalizer (lexicon, encoder, index) once,
through ``etlnorm.cascade.normalizer.get_normalizer``'s per-process cache.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

import cloudpickle
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from etlnorm.warehouse import phases as etl
from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.warehouse.phases import Bucket, RunPlan
from etlnorm.cascade.normalizer import get_normalizer
from etlnorm.warehouse.records import RunStats, finish_run

try:  # imported as flows.normalize (tests, bench) or as a script by a Prefect worker (entrypoint)
    from flows.retry import RETRIES, RETRY_DELAYS, transient_db_error
except ImportError:  # pragma: no cover - entrypoint loaded with only flows/ on sys.path
    from retry import RETRIES, RETRY_DELAYS, transient_db_error  # type: ignore[no-redef]

# Dask workers unpickle the tasks: ship this module's code by value, so a worker needs only etlnorm
# installed, whatever name the module was loaded under (a Prefect entrypoint loads it as a script).
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules[transient_db_error.__module__])

RUNNERS = ("default", "dask")
DB_TASK = dict(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=transient_db_error,
               cache_policy=NO_CACHE)  # fmt: skip


def _engine():
    return ready_engine(load_settings())


@task(name="plan", **DB_TASK)
def plan_task(table: str, column: str, ontology: str, key: str | None, prefix: str | None, force: bool) -> RunPlan:
    plan = etl.plan_run(_engine(), table, column, ontology, key, prefix, force)
    get_run_logger().info("run %s: %s.%s against %s %s (outputs %s_*)", plan.run_id, plan.table.qualified,
                          column, ontology, plan.release, plan.prefix)  # fmt: skip
    return plan


@task(name="prepare", **DB_TASK)
def prepare_task(plan: RunPlan) -> None:
    etl.prepare_table(_engine(), plan)


@task(name="pending-terms", **DB_TASK)
def pending_task(plan: RunPlan) -> tuple[list[str], int]:
    pending, distinct = etl.pending_terms(_engine(), plan)
    get_run_logger().info("%d distinct terms, %d to normalize, %d cached", distinct, len(pending),
                          distinct - len(pending))  # fmt: skip
    return pending, distinct


@task(name="ensure-index", **DB_TASK)
def ensure_index_task(plan: RunPlan) -> None:
    """Build the retrieval index once, here, before worker processes would each try to."""
    from etlnorm.cascade.encoder import load_encoder
    from etlnorm.cascade.retrieval import build_index

    settings = load_settings()
    encoder = load_encoder(settings.encoder_model, settings.encode_batch_size)
    folder, built = build_index(_engine(), plan.ontology, encoder, settings.home_dir, settings.index_variant,
                                progress=False)  # fmt: skip
    get_run_logger().info("retrieval index %s: %s", "built" if built else "present", folder)


@task(name="normalize-batch", **DB_TASK)
def normalize_batch(plan: RunPlan, terms: list[str]) -> dict[str, Any]:
    """normalize() one batch of distinct terms and upsert the answers into the mapping cache."""
    start = time.perf_counter()
    normalizer = get_normalizer(plan.ontology, settings=load_settings())  # warm per process
    mappings = normalizer.normalize(terms)
    cached = etl.cache_mappings(_engine(), plan, normalizer, terms, mappings)
    seconds = round(time.perf_counter() - start, 3)
    get_run_logger().info("normalized %d terms in %.2f s (pid %d)", len(terms), seconds, os.getpid())
    return {"terms": len(terms), "cached": cached, "seconds": seconds, "pid": os.getpid(),
            "normalizer": id(normalizer), "methods": dict(Counter(m.method for m in mappings))}  # fmt: skip


@task(name="key-ranges", **DB_TASK)
def key_ranges_task(plan: RunPlan, rows_per_range: int) -> list[tuple[Any, Any]]:
    ranges = etl.key_ranges(_engine(), plan, rows_per_range)
    get_run_logger().info("%d key ranges of about %d rows", len(ranges), rows_per_range)
    return ranges


@task(name="update-range", **DB_TASK)
def update_range_task(plan: RunPlan, low: Any, high: Any) -> int:
    updated = etl.update_range(_engine(), plan, low, high)
    get_run_logger().info("keys %s..%s: %d rows updated", low, high, updated)
    return updated


@task(name="coverage", **DB_TASK)
def coverage_task(plan: RunPlan) -> RunStats:
    stats = RunStats()
    etl.measure_coverage(_engine(), plan, stats)
    return stats


@task(name="confidence-histogram", **DB_TASK)
def histogram_task(plan: RunPlan) -> list[Bucket]:
    return etl.confidence_histogram(_engine(), plan)


@task(name="finish-run", **DB_TASK)
def finish_task(plan: RunPlan, stats: RunStats, error: str | None = None) -> None:
    finish_run(_engine(), plan.run_id, stats, error=error)


def make_task_runner(runner: str, dask_address: str | None = None, dask_workers: int = 2) -> TaskRunner:
    """``default``: Prefect's thread-pool runner, one batch at a time in the flow's process (as ``etlnorm run``);
    ``dask``: a DaskTaskRunner on ``dask_address``, or on a local cluster of ``dask_workers`` processes."""
    if runner == "default":
        return ThreadPoolTaskRunner(max_workers=1)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})  # fmt: skip
    raise ValueError(f"runner must be one of {RUNNERS}, not {runner!r}")


@flow(name="normalize-table-batches")
def normalize_batches(plan: RunPlan, batch_size: int, rows_per_range: int, ensure_index: bool = False) -> dict[str, Any]:
    """The parallel part of a run, on whichever task runner the parent chose."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    pending, distinct = pending_task(plan)
    timings["select"] = round(time.perf_counter() - start, 3)
    batches: list[dict[str, Any]] = []
    if pending:
        start = time.perf_counter()
        if ensure_index:
            ensure_index_task(plan)
        chunks = [list(chunk) for chunk in etl.batches(pending, batch_size)]
        futures = normalize_batch.map(unmapped(plan), chunks)
        wait(futures)
        batches = futures.result()  # raises if a batch failed after its retries
        timings["normalize"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    ranges = key_ranges_task(plan, rows_per_range)
    timings["ranges"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    updates = update_range_task.map(unmapped(plan), [lo for lo, _ in ranges], [hi for _, hi in ranges])
    wait(updates)
    rows_updated = sum(updates.result())
    timings["update"] = round(time.perf_counter() - start, 3)
    return {"distinct_terms": distinct, "new_terms": len(pending), "rows_updated": rows_updated,
            "batches": batches, "ranges": len(ranges), "timings": timings}  # fmt: skip


def artifact_key(table: str, column: str) -> str:
    """``normalize-<table>-<column>`` in the characters Prefect allows in a key (a-z, 0-9, dashes)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"normalize-{table}-{column}".lower())).strip("-")


def summary_markdown(plan: RunPlan, stats: RunStats, histogram: list[Bucket], work: dict[str, Any],
                     runner: str) -> str:  # fmt: skip
    processes = Counter(b["pid"] for b in work["batches"])
    loads = {pid: len({b["normalizer"] for b in work["batches"] if b["pid"] == pid}) for pid in processes}
    lines = [
        f"# etlnorm: {plan.table.qualified}.{plan.column} → {plan.ontology}",
        "",
        f"Run `{plan.run_id}`, {plan.ontology} release {plan.release}, outputs `{plan.prefix}_*`, runner `{runner}`.",
        "",
        "| rows | rows updated | mapped rows | distinct terms | new terms | cache hits | mean confidence |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {stats.rows_seen} | {stats.rows_updated} | {stats.mapped_rows} | {stats.distinct_terms} |"
        f" {stats.new_terms} | {stats.cache_hits} | {stats.mean_confidence if stats.mean_confidence is not None else '–'} |",
        "",
        "## Rows per method",
        "",
        "| method | rows |",
        "|---|---:|",
        *(f"| {method} | {n} |" for method, n in sorted(stats.methods.items(), key=lambda kv: -kv[1])),
        "",
        "## Confidence histogram",
        "",
        "| confidence | rows | mapped | abstained |",
        "|---|---:|---:|---:|",
        *(f"| {b.low:.1f}–{b.high:.1f} | {b.rows} | {b.mapped} | {b.rows - b.mapped} |" for b in histogram),
        "",
        "## Time per phase (s)",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *(f"| {phase} | {seconds:.2f} |" for phase, seconds in stats.timings.items()),
        "",
        f"{len(work['batches'])} normalize batches in {len(processes)} process(es)"
        f" (normalizer loads per process: {', '.join(str(n) for n in loads.values()) or '–'}),"
        f" {work['ranges']} update ranges.",
    ]
    return "\n".join(lines) + "\n"


@flow(name="normalize-table")
def normalize_table(table: str, column: str, ontology: str, key: str | None = None, prefix: str | None = None,
                    batch_size: int | None = None, force: bool = False, runner: str = "default",
                    dask_address: str | None = None, dask_workers: int = 2,
                    update_batch_rows: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Normalize ``table.column`` against ``ontology`` and write the ``<prefix>_{id,label,confidence,method}`` columns.

    batch_size: distinct terms per normalize task (default: setting normalize_batch_size);
    update_batch_rows: rows per update task (default: setting update_batch_rows);
    runner: "default" (in the flow's process) or "dask" (dask_address, or a local cluster of dask_workers).
    """
    logger = get_run_logger()
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, not {runner!r}")
    settings = load_settings()
    engine = ready_engine(settings)
    started = time.perf_counter()
    plan = plan_task(table, column, ontology, key, prefix, force)
    stats = RunStats()
    with etl.run_lock(engine, plan):  # held by this flow run's process for the whole run
        prepare_task(plan)
        try:
            work = normalize_batches.with_options(task_runner=make_task_runner(runner, dask_address, dask_workers))(
                plan, batch_size or settings.normalize_batch_size, update_batch_rows or settings.update_batch_rows,
                ensure_index=runner == "dask",
            )
            start = time.perf_counter()
            measured = coverage_task(plan)
            stats.timings = dict(work["timings"], coverage=round(time.perf_counter() - start, 3))
            start = time.perf_counter()
            histogram = histogram_task(plan)
            stats.timings["histogram"] = round(time.perf_counter() - start, 3)
            stats.rows_seen, stats.methods = measured.rows_seen, measured.methods
            stats.mapped_rows, stats.mean_confidence = measured.mapped_rows, measured.mean_confidence
            stats.distinct_terms, stats.new_terms = work["distinct_terms"], work["new_terms"]
            stats.cache_hits = work["distinct_terms"] - work["new_terms"]
            stats.rows_updated = work["rows_updated"]
        except BaseException as exc:
            finish_task(plan, stats, error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        stats.timings["total"] = round(time.perf_counter() - started, 3)
        finish_task(plan, stats)
    key_name = artifact_key(plan.table.qualified, column)
    create_markdown_artifact(summary_markdown(plan, stats, histogram, work, runner), key=key_name,
                             description=f"etlnorm run {plan.run_id}")  # fmt: skip
    logger.info("%s.%s: %d rows, %d updated, %d distinct terms (%d cached)", plan.table.qualified, column,
                stats.rows_seen, stats.rows_updated, stats.distinct_terms, stats.cache_hits)  # fmt: skip
    return {"run_id": str(plan.run_id), "table": plan.table.qualified, "column": column, "ontology": ontology,
            "release": plan.release, "artifact": key_name, "stats": asdict(stats),
            "histogram": [asdict(b) for b in histogram],
            "processes": sorted({b["pid"] for b in work["batches"]}),
            "normalizers": sorted({(b["pid"], b["normalizer"]) for b in work["batches"]})}  # fmt: skip
