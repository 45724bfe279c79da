"""``etlnorm run``: normalize a text column of a warehouse table in place.

The heavy data stays in Postgres. Distinct terms not yet in the mapping cache (for the current
release) are selected in SQL; only those go through ``normalize()``, in batches, each batch
committed to ``etlnorm.mapping``; then the table is updated from the cache by set-based
``UPDATE ... FROM`` over key ranges, one transaction each. Every step is idempotent, so a run
killed anywhere and started again ends with the table an uninterrupted run gives.

The phases are separate functions so the Prefect flow can run each as a task.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

from etlnorm.warehouse.catalog import (
    Table,
    check_output_columns,
    find_table,
    key_column,
    output_columns,
    require_text_column,
)
from etlnorm.config import Settings, load_settings
from etlnorm.db.engine import raw, ready_engine
from etlnorm.errors import EtlnormError
from etlnorm.cascade.answer import Answer
from etlnorm.cascade.normalizer import Normalizer, get_normalizer
from etlnorm.warehouse.records import RunStats, finish_run, start_run
from etlnorm.ontology.store import current_release

log = logging.getLogger(__name__)


class RunLockedError(EtlnormError):
    """Another run holds the same table/column."""


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before the work starts; passed to every phase."""

    run_id: uuid.UUID
    table: Table
    column: str
    key: str
    prefix: str
    ontology: str
    release: str
    force: bool

    @property
    def outputs(self) -> dict[str, str]:
        return output_columns(self.prefix)

    @property
    def lock_key(self) -> str:
        return f"etlnorm.run:{self.table.qualified}:{self.column}:{self.prefix}"

    def ident(self, part: str) -> sql.Identifier:
        return sql.Identifier(self.outputs[part])


def plan_run(engine: Engine, table: str, column: str, ontology: str, key: str | None = None,
             prefix: str | None = None, force: bool = False) -> RunPlan:  # fmt: skip
    """Validate names against the catalog and the ontology; nothing is written yet."""
    with engine.connect() as conn:
        found = find_table(conn, table)
        require_text_column(found, column)
        release = current_release(conn, ontology)
    prefix = prefix or f"{column}_{ontology}"
    check_output_columns(found, prefix)
    return RunPlan(uuid.uuid4(), found, column, key_column(found, key), prefix, ontology, release, force)


@contextmanager
def run_lock(engine: Engine, plan: RunPlan, wait: bool = False) -> Iterator[None]:
    """One run per table/column at a time: a session advisory lock held for the whole run."""
    with engine.connect() as conn:
        params = {"k": plan.lock_key}
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), params)
        elif not conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), params).scalar():
            raise RunLockedError(
                f"another etlnorm run on {plan.table.qualified}.{plan.column} is in progress; "
                "wait for it (or pass --wait)"
            )
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), params)
                conn.commit()
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # The session that held the lock is gone (database restart, terminated backend):
                # the server released the lock with it; nothing is left to unlock.
                log.warning("lock session for %s.%s was lost before the run ended", plan.table.qualified,
                            plan.column)  # fmt: skip


def prepare_table(engine: Engine, plan: RunPlan) -> None:
    """Add the output columns if missing (one statement) and record the run as started."""
    types = {"id": "text", "label": "text", "confidence": "real", "method": "text"}
    adds = sql.SQL(", ").join(
        sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(plan.ident(part), sql.SQL(kind)) for part, kind in types.items()
    )
    with engine.begin() as conn:
        raw(conn).execute(sql.SQL("ALTER TABLE {} ").format(plan.table.ident) + adds)
        start_run(conn, plan.run_id, plan.table.qualified, plan.column, plan.ontology, plan.release, plan.prefix)


def pending_terms(engine: Engine, plan: RunPlan) -> tuple[list[str], int]:
    """(distinct terms without a current cached mapping, number of distinct non-empty terms)."""
    col = sql.Identifier(plan.column)
    # force: every term is pending, cached or not ("recompute cached mappings too").
    query = sql.SQL(
        "SELECT d.term, m.term_md5 IS NULL OR %(force)s FROM (SELECT DISTINCT t.{col} AS term FROM {tbl} t"
        " WHERE t.{col} IS NOT NULL AND btrim(t.{col}) <> '') d"
        " LEFT JOIN etlnorm.mapping m ON m.ontology = %(o)s AND m.term_md5 = md5(d.term)::uuid AND m.release = %(r)s"
    ).format(col=col, tbl=plan.table.ident)
    with engine.connect() as conn:
        rows = raw(conn).execute(query, {"o": plan.ontology, "r": plan.release, "force": plan.force}).fetchall()
    return [term for term, missing in rows if missing], len(rows)


def cache_mappings(engine: Engine, plan: RunPlan, normalizer: Normalizer, terms: Sequence[str],
                   mappings: Sequence[Answer]) -> int:  # fmt: skip
    """Upsert one batch of answers into etlnorm.mapping (COPY into a temp table, then one INSERT)."""
    model, adapter = normalizer.provenance()
    with engine.begin() as conn:
        cur = raw(conn).cursor()
        cur.execute("CREATE TEMP TABLE etlnorm_batch (term text, norm_term text, id text, label text,"
                    " confidence real, method text) ON COMMIT DROP")  # fmt: skip
        with cur.copy("COPY etlnorm_batch FROM STDIN") as copy:
            for term, m in zip(terms, mappings, strict=True):
                confidence = None if m.method == "empty" else m.confidence
                copy.write_row((term, normalizer.key(term), m.id, m.label, confidence, m.method))
        cur.execute(
            "INSERT INTO etlnorm.mapping AS m (ontology, term_md5, term, norm_term, release, id, label, confidence,"
            " method, model, adapter, run_id)"
            " SELECT %(o)s, md5(term)::uuid, term, norm_term, %(r)s, id, label, confidence, method, %(model)s,"
            " %(adapter)s, %(run)s FROM etlnorm_batch"
            " ON CONFLICT (ontology, term_md5) DO UPDATE SET norm_term = EXCLUDED.norm_term,"
            " release = EXCLUDED.release, id = EXCLUDED.id, label = EXCLUDED.label,"
            " confidence = EXCLUDED.confidence, method = EXCLUDED.method, model = EXCLUDED.model,"
            " adapter = EXCLUDED.adapter, run_id = EXCLUDED.run_id, created_at = now()",
            {"o": plan.ontology, "r": plan.release, "model": model, "adapter": adapter, "run": plan.run_id},
        )
        return cur.rowcount


def key_ranges(engine: Engine, plan: RunPlan, rows_per_range: int) -> list[tuple[Any, Any]]:
    """Inclusive (low, high) key bounds splitting the table into ranges of about ``rows_per_range`` rows."""
    query = sql.SQL(
        "SELECT min(k), max(k) FROM (SELECT {key} AS k, (row_number() OVER (ORDER BY {key}) - 1) / %(n)s AS b"
        " FROM {tbl} WHERE {key} IS NOT NULL) s GROUP BY b ORDER BY b"
    ).format(key=sql.Identifier(plan.key), tbl=plan.table.ident)
    with engine.connect() as conn:
        return [tuple(r) for r in raw(conn).execute(query, {"n": max(1, rows_per_range)}).fetchall()]


def update_range(engine: Engine, plan: RunPlan, low: Any, high: Any) -> int:
    """Write cached answers into rows ``low <= key <= high`` whose outputs differ; one transaction."""
    o = {part: plan.ident(part) for part in plan.outputs}
    fmt = dict(tbl=plan.table.ident, col=sql.Identifier(plan.column), key=sql.Identifier(plan.key), **o)
    outputs = sql.SQL("(t.{id}, t.{label}, t.{confidence}, t.{method})").format(**o)
    from_cache = sql.SQL(
        "UPDATE {tbl} AS t SET {id} = m.id, {label} = m.label, {confidence} = m.confidence, {method} = m.method"
        " FROM etlnorm.mapping m WHERE m.ontology = %(o)s AND m.term_md5 = md5(t.{col})::uuid"
        " AND t.{key} BETWEEN %(lo)s AND %(hi)s AND btrim(t.{col}) <> ''"
        " AND {outputs} IS DISTINCT FROM (m.id, m.label, m.confidence, m.method)"
    ).format(outputs=outputs, **fmt)
    empties = sql.SQL(
        "UPDATE {tbl} AS t SET {id} = NULL, {label} = NULL, {confidence} = NULL, {method} = 'empty'"
        " WHERE t.{key} BETWEEN %(lo)s AND %(hi)s AND (t.{col} IS NULL OR btrim(t.{col}) = '')"
        " AND {outputs} IS DISTINCT FROM (NULL, NULL, NULL::real, 'empty')"
    ).format(outputs=outputs, **fmt)
    params = {"o": plan.ontology, "lo": low, "hi": high}
    with engine.begin() as conn:
        cur = raw(conn).cursor()
        cur.execute(from_cache, params)
        updated = cur.rowcount
        cur.execute(empties, params)
        return updated + cur.rowcount


def measure_coverage(engine: Engine, plan: RunPlan, stats: RunStats) -> None:
    """Rows per method, mapped rows and mean confidence of the table as it is now."""
    query = sql.SQL(
        "SELECT coalesce(t.{method}, 'unmapped'), count(*), count(t.{id}), sum(t.{confidence}) FILTER"
        " (WHERE t.{id} IS NOT NULL) FROM {tbl} t GROUP BY 1"
    ).format(tbl=plan.table.ident, method=plan.ident("method"), id=plan.ident("id"),
             confidence=plan.ident("confidence"))  # fmt: skip
    with engine.connect() as conn:
        rows = raw(conn).execute(query).fetchall()
    stats.methods = {method: n for method, n, _, _ in rows}
    stats.rows_seen = sum(n for _, n, _, _ in rows)
    stats.mapped_rows = sum(mapped for _, _, mapped, _ in rows)
    total = sum(float(s or 0) for _, _, _, s in rows)
    stats.mean_confidence = round(total / stats.mapped_rows, 4) if stats.mapped_rows else None


@dataclass(frozen=True)
class Bucket:
    """Rows whose confidence falls in ``low <= c < high`` (the last bucket includes 1.0)."""

    low: float
    high: float
    rows: int
    mapped: int  # of those, rows with an ID (the others abstained: method 'none')


def confidence_histogram(engine: Engine, plan: RunPlan, buckets: int = 10) -> list[Bucket]:
    """Confidence of the table's rows in ``buckets`` equal-width buckets over [0, 1], counted in SQL."""
    query = sql.SQL(
        "SELECT least(width_bucket(t.{confidence}, 0, 1, %(n)s), %(n)s) AS b, count(*), count(t.{id})"
        " FROM {tbl} t WHERE t.{confidence} IS NOT NULL GROUP BY 1"
    ).format(tbl=plan.table.ident, confidence=plan.ident("confidence"), id=plan.ident("id"))
    with engine.connect() as conn:
        counts = {b: (n, mapped) for b, n, mapped in raw(conn).execute(query, {"n": buckets}).fetchall()}
    return [Bucket(round((b - 1) / buckets, 4), round(b / buckets, 4), *counts.get(b, (0, 0)))
            for b in range(1, buckets + 1)]  # fmt: skip


def batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextmanager
def timed(stats: RunStats, phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        stats.timings[phase] = round(stats.timings.get(phase, 0.0) + time.perf_counter() - start, 3)


@dataclass(frozen=True)
class RunSummary:
    plan: RunPlan
    stats: RunStats


def run_table(table: str, column: str, ontology: str, key: str | None = None, prefix: str | None = None,
              force: bool = False, *, settings: Settings | None = None, normalizer: Normalizer | None = None,
              wait: bool = False, progress: bool = False) -> RunSummary:  # fmt: skip
    """Normalize ``table.column`` against ``ontology`` and write the four output columns."""
    settings = settings or load_settings()
    engine = ready_engine(settings)
    plan = plan_run(engine, table, column, ontology, key, prefix, force)
    stats = RunStats()
    with run_lock(engine, plan, wait=wait):
        prepare_table(engine, plan)
        try:
            with timed(stats, "select"):
                pending, stats.distinct_terms = pending_terms(engine, plan)
            stats.new_terms = len(pending)
            stats.cache_hits = stats.distinct_terms - len(pending)
            log.info("%s.%s: %d distinct terms, %d to normalize", plan.table.qualified, column,
                     stats.distinct_terms, len(pending))  # fmt: skip
            if pending:
                normalizer = normalizer or get_normalizer(ontology, settings=settings)
                for batch in tqdm(list(batches(pending, settings.normalize_batch_size)), desc="normalize",
                                  unit="batch", disable=not progress):  # fmt: skip
                    with timed(stats, "normalize"):
                        mappings = normalizer.normalize(batch)
                    with timed(stats, "cache"):
                        cache_mappings(engine, plan, normalizer, batch, mappings)
            with timed(stats, "ranges"):
                ranges = key_ranges(engine, plan, settings.update_batch_rows)
            with timed(stats, "update"):
                for low, high in tqdm(ranges, desc="update", unit="range", disable=not progress):
                    stats.rows_updated += update_range(engine, plan, low, high)
            with timed(stats, "coverage"):
                measure_coverage(engine, plan, stats)
        except BaseException as exc:
            finish_run(engine, plan.run_id, stats, error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finish_run(engine, plan.run_id, stats)
    log.info("%s.%s: %d rows updated of %d", plan.table.qualified, column, stats.rows_updated, stats.rows_seen)
    return RunSummary(plan, stats)
