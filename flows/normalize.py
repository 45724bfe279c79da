"""``normalize-table``: one warehouse column, each library phase a Prefect task.

The phases and their order are the library's (``etlnorm.warehouse.run.execute_run``); this flow
only says how a phase runs: as a task with retries on transient database errors, fan-outs
(normalize batches, update ranges) mapped on the chosen task runner. ``runner="dask"`` runs them
on a Dask cluster (``dask_address``, or a local cluster of ``dask_workers`` processes); every
worker process loads the normalizer once, through ``get_normalizer``'s per-process cache.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import cloudpickle
from prefect import Task, flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from etlnorm.config import load_settings
from etlnorm.db.engine import masked_database
from etlnorm.threads import ENV as THREADS_ENV
from etlnorm.threads import worker_share
from etlnorm.warehouse.phases import RunPlan, plan_run
from etlnorm.warehouse.run import RunReport, execute_run
from etlnorm.warehouse.summary import artifact_key, run_markdown

try:  # imported as flows.normalize (tests, bench) or as a script by a Prefect worker (entrypoint)
    from flows.retry import RETRIES, RETRY_DELAYS, transient_db_error
except ImportError:  # pragma: no cover - entrypoint loaded with only flows/ on sys.path
    from retry import RETRIES, RETRY_DELAYS, transient_db_error  # type: ignore[no-redef]

# Dask workers unpickle the tasks: ship this module's code by value, so a worker needs only etlnorm
# installed, whatever name the module was loaded under (a Prefect entrypoint loads it as a script).
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules[transient_db_error.__module__])

RUNNERS = ("default", "dask")


def as_task(phase: Callable[..., Any]) -> Task:
    """A phase as a Prefect task named after it (update_range → update-range), retried on transient DB errors."""
    return task(phase, name=phase.__name__.replace("_", "-"), retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
                retry_condition_fn=transient_db_error, cache_policy=NO_CACHE)  # fmt: skip


class PrefectExecutor:
    """``call``: a task run in the flow's process; ``map``: tasks on the flow's task runner."""

    def __init__(self, parallel: bool) -> None:
        self.parallel = parallel

    def call(self, phase: Callable[..., Any], *args: Any) -> Any:
        return as_task(phase)(*args)

    def map(self, phase: Callable[..., Any], plan: RunPlan, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not args:
            return []
        futures = as_task(phase).map(unmapped(plan), *map(list, zip(*args, strict=True)))
        wait(futures)
        return futures.result()  # raises if a task failed after its retries


def make_task_runner(runner: str, dask_address: str | None = None, dask_workers: int = 2) -> TaskRunner:
    """``default``: one task at a time in the flow's process (as ``etlnorm run``); ``dask``: a
    DaskTaskRunner on ``dask_address``, or on a local cluster of ``dask_workers`` processes."""
    if runner == "default":
        return ThreadPoolTaskRunner(max_workers=1)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        share = str(worker_share(dask_workers))  # each worker's torch/ONNX threads: the cores split, not multiplied
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None,
                                              "env": {THREADS_ENV: share, "OMP_NUM_THREADS": share}})  # fmt: skip
    raise ValueError(f"runner must be one of {RUNNERS}, not {runner!r}")


@flow(name="normalize-table-phases")
def run_phases(table: str, column: str, ontology: str, key: str | None, prefix: str | None, force: bool,
               batch_size: int | None, update_batch_rows: int | None, parallel: bool) -> RunReport:  # fmt: skip
    """The run on whichever task runner the parent chose; the lock is held by this process.

    Parameters are plain values (Prefect records them): the plan, which carries the settings, is
    made here and never leaves the workers.
    """
    overrides = {"normalize_batch_size": batch_size, "update_batch_rows": update_batch_rows}
    settings = load_settings().model_copy(update={k: v for k, v in overrides.items() if v})
    run_id = flow_run.get_id()  # recorded with the run, so the review page links to this flow run
    plan = as_task(plan_run)(settings, table, column, ontology, key, prefix, force,
                             flow_run_id=uuid.UUID(run_id) if run_id else None)  # fmt: skip
    get_run_logger().info("run %s: %s.%s against %s %s (outputs %s_*)", plan.run_id, plan.table.qualified,
                          column, ontology, plan.release, plan.prefix)  # fmt: skip
    return execute_run(plan, PrefectExecutor(parallel))


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
    phases_flow = run_phases.with_options(task_runner=make_task_runner(runner, dask_address, dask_workers))
    report = phases_flow(table, column, ontology, key, prefix, force, batch_size, update_batch_rows,
                         parallel=runner != "default")  # fmt: skip
    plan = report.plan
    key_name = artifact_key(plan.table.qualified, column)
    markdown = f"database: `{masked_database(plan.settings)}`\n\n" + run_markdown(report, runner)
    create_markdown_artifact(markdown, key=key_name, description=f"etlnorm run {plan.run_id}")
    stats = report.stats
    get_run_logger().info("%s.%s: %d rows, %d updated, %d distinct terms (%d cached)", plan.table.qualified,
                          column, stats.rows_seen, stats.rows_updated, stats.distinct_terms, stats.cache_hits)  # fmt: skip
    return {"run_id": str(plan.run_id), "table": plan.table.qualified, "column": column, "ontology": ontology,
            "release": plan.release, "artifact": key_name, "stats": asdict(stats),
            "histogram": [asdict(b) for b in report.histogram],
            "processes": sorted({b.pid for b in report.batches}),
            "normalizers": sorted({(b.pid, b.normalizer) for b in report.batches}),
            "threads": sorted({(b.pid, b.threads) for b in report.batches})}  # fmt: skip
