"""One warehouse run, orchestrated once: plan → lock → prepare → pending → normalize/cache →
ranges → update → coverage → histogram → run record.

``execute_run`` is the only place that sequences the phases of ``etlnorm.warehouse.phases``. How
each phase executes is the caller's: an ``Executor`` runs a phase once (``call``) or over many
inputs (``map``). ``Inline`` runs them in this process (``etlnorm run``); the Prefect flow passes
an executor that runs each phase as a task with retries, on its task runner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from etlnorm.config import Settings, load_settings
from etlnorm.warehouse import phases
from etlnorm.warehouse.phases import BatchReport, Bucket, RunPlan
from etlnorm.warehouse.records import RunStats

log = logging.getLogger(__name__)

T = TypeVar("T")


class Executor(Protocol):
    """Runs phases: once, or once per argument tuple (the fan-out of batches and key ranges)."""

    parallel: bool  # map may run in other processes: shared artefacts are built first, once

    def call(self, phase: Callable[..., T], *args: Any) -> T: ...

    def map(self, phase: Callable[..., T], plan: RunPlan, args: Sequence[tuple[Any, ...]]) -> list[T]: ...


@dataclass
class Inline:
    """Every phase in this process, one after another; ``progress`` shows bars for the fan-outs."""

    progress: bool = False
    parallel: bool = False

    def call(self, phase: Callable[..., T], *args: Any) -> T:
        return phase(*args)

    def map(self, phase: Callable[..., T], plan: RunPlan, args: Sequence[tuple[Any, ...]]) -> list[T]:
        label = phase.__name__.replace("_", " ")
        return [phase(plan, *a) for a in tqdm(args, desc=label, unit="step", disable=not self.progress)]


@dataclass
class RunReport:
    """The outcome of one run, as the CLI prints it and the flow's artifact shows it."""

    plan: RunPlan
    stats: RunStats
    histogram: list[Bucket] = field(default_factory=list)
    batches: list[BatchReport] = field(default_factory=list)
    ranges: int = 0


@contextmanager
def timed(stats: RunStats, phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        stats.timings[phase] = round(stats.timings.get(phase, 0.0) + time.perf_counter() - start, 3)


def execute_run(plan: RunPlan, executor: Executor, *, wait: bool = False) -> RunReport:
    """Run every phase for ``plan`` under the run's lock; the run record ends completed or failed."""
    report = RunReport(plan, RunStats())
    stats = report.stats
    started = time.perf_counter()
    with phases.run_lock(plan, wait=wait) as lock_pid:
        executor.call(phases.prepare_table, plan, lock_pid)
        try:
            with timed(stats, "select"):
                stats.carried_over = executor.call(phases.carry_over, plan)
                pending, stats.distinct_terms = executor.call(phases.pending_terms, plan)
            stats.new_terms, stats.cache_hits = len(pending), stats.distinct_terms - len(pending)
            log.info("%s.%s: %d distinct terms, %d to normalize", plan.table.qualified, plan.column,
                     stats.distinct_terms, len(pending))  # fmt: skip
            if pending:
                with timed(stats, "normalize"):
                    if executor.parallel:
                        executor.call(phases.warm_up, plan)
                    chunks = phases.batches(pending, plan.settings.normalize_batch_size)
                    report.batches = executor.map(phases.normalize_batch, plan, [(c,) for c in chunks])
            with timed(stats, "ranges"):
                ranges = executor.call(phases.key_ranges, plan)
            report.ranges = len(ranges)
            with timed(stats, "update"):
                stats.rows_updated = sum(executor.map(phases.update_range, plan, ranges))
            with timed(stats, "coverage"):
                coverage = executor.call(phases.measure_coverage, plan)
            stats.rows_seen, stats.mapped_rows = coverage.rows, coverage.mapped
            stats.methods, stats.mean_confidence = coverage.methods, coverage.mean_confidence
            with timed(stats, "histogram"):
                report.histogram = executor.call(phases.confidence_histogram, plan)
        except BaseException as exc:
            executor.call(phases.record_outcome, plan, stats, f"{type(exc).__name__}: {exc}"[:2000])
            raise
        stats.timings["total"] = round(time.perf_counter() - started, 3)
        executor.call(phases.record_outcome, plan, stats)
    log.debug("%s.%s: %d rows updated of %d", plan.table.qualified, plan.column, stats.rows_updated, stats.rows_seen)
    return report


def run_table(table: str, column: str, ontology: str, key: str | None = None, prefix: str | None = None,
              force: bool = False, *, settings: Settings | None = None, wait: bool = False,
              progress: bool = False, terms: Sequence[str] | None = None) -> RunReport:  # fmt: skip
    """Normalize ``table.column`` against ``ontology`` in this process and write the four output columns;
    ``terms``: only the rows holding these raw terms (coverage is still measured over the whole table)."""
    plan = phases.plan_run(settings or load_settings(), table, column, ontology, key, prefix, force, terms)
    return execute_run(plan, Inline(progress=progress), wait=wait)
