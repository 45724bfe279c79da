"""The phases of a warehouse run, each a plain function of the run's plan.

The heavy data stays in Postgres. Distinct terms not yet in the mapping cache (for the current
release) are selected in SQL; only those go through the normalizer, in batches, each batch
committed to ``etlnorm.mapping``; then the table is updated from the cache by set-based
``UPDATE ... FROM`` over key ranges, one transaction each. Every phase is idempotent, so a run
killed anywhere and started again ends with the table an uninterrupted run gives.

Each phase takes the ``RunPlan`` (which carries the settings) and opens its own engine, so it can
run in this process or in another one (a Dask worker); ``etlnorm.warehouse.run`` sequences them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from etlnorm.cascade.answer import Answer
from etlnorm.cascade.normalizer import LEXICAL_METHODS, Normalizer, get_normalizer
from etlnorm.cascade.textnorm import clean, word_key
from etlnorm.config import Settings
from etlnorm.db.engine import raw, ready_engine
from etlnorm.errors import EtlnormError, TableError
from etlnorm.ontology.store import current_release
from etlnorm.warehouse.catalog import (
    OUTPUT_TYPES,
    Table,
    check_output_columns,
    find_table,
    key_column,
    output_columns,
    require_text_column,
    table_columns,
)
from etlnorm.warehouse.records import RunStats, finish_run, start_run

log = logging.getLogger(__name__)


class RunLockedError(EtlnormError):
    """Another run holds the same table/column."""


class LockLostError(EtlnormError):
    """The session holding the run's lock ended (database restart, terminated backend): the run stops
    before its next write, since another run may now hold the target."""


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before the work starts; passed to every phase."""

    run_id: uuid.UUID
    table: Table
    column: str
    key: str
    prefix: str
    ontology: str
    release: str  # the label, for people
    fingerprint: str  # the release's content: cached answers are reused under this one only
    producer: str  # and under this configuration (Normalizer.producer)
    force: bool
    settings: Settings
    terms: tuple[str, ...] | None = None  # a term-only run (the review page's "apply now"); None: every term
    flow_run_id: uuid.UUID | None = None  # the Prefect flow run, when one runs it

    @property
    def outputs(self) -> dict[str, str]:
        return output_columns(self.prefix)

    @property
    def lock_key(self) -> str:
        """The target, as the run record names it too: table, column and output prefix."""
        return f"etlnorm.run:{self.table.qualified}:{self.column}:{self.prefix}"

    def ident(self, part: str) -> sql.Identifier:
        return sql.Identifier(self.outputs[part])

    def engine(self) -> Engine:
        """The run's database (one pooled engine per URL and process)."""
        return ready_engine(self.settings)

    def scope(self, alias: str = "t") -> sql.Composable:
        """The condition limiting a statement over the table to the plan's terms (nothing for a full run)."""
        if self.terms is None:
            return sql.SQL("")
        return sql.SQL(" AND {}.{} = ANY(%(terms)s)").format(sql.Identifier(alias), sql.Identifier(self.column))

    def params(self, **values: Any) -> dict[str, Any]:
        """Statement parameters, with the plan's terms when it has them."""
        return {**values, "terms": list(self.terms)} if self.terms is not None else values


def plan_run(settings: Settings, table: str, column: str, ontology: str, key: str | None = None,
             prefix: str | None = None, force: bool = False, terms: Sequence[str] | None = None,
             flow_run_id: uuid.UUID | None = None) -> RunPlan:  # fmt: skip
    """Validate names against the catalog and the ontology; nothing is written yet. ``terms``
    limits the run to the rows holding these raw terms."""
    with ready_engine(settings).connect() as conn:
        found = find_table(conn, table)
        require_text_column(found, column)
        release = current_release(conn, ontology)
    prefix = prefix or f"{column}_{ontology}"
    check_output_columns(found, prefix)
    normalizer = get_normalizer(ontology, settings=settings)  # nothing heavy is loaded yet
    return RunPlan(uuid.uuid4(), found, column, key_column(found, key), prefix, ontology, release,
                   normalizer.fingerprint, normalizer.producer(), force, settings,
                   tuple(terms) if terms is not None else None, flow_run_id)  # fmt: skip


@contextmanager
def run_lock(plan: RunPlan, wait: bool = False) -> Iterator[int]:
    """One run per target at a time: a session advisory lock held for the whole run; yields the
    holding backend's pid, which the run record keeps and every write checks (``require_lock``)."""
    with plan.engine().connect() as conn:
        params = {"k": plan.lock_key}
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), params)
        elif not conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), params).scalar():
            raise RunLockedError(
                f"another etlnorm run on {plan.table.qualified}.{plan.column} is in progress; "
                "wait for it (or pass --wait)"
            )
        pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        conn.commit()
        try:
            yield pid
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


LOCK_HELD = (
    "SELECT EXISTS (SELECT 1 FROM etlnorm.run r JOIN pg_locks l ON l.pid = r.lock_pid WHERE r.run_id = %(run)s"
    " AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.objid = (hashtext(%(k)s)::bigint & 4294967295)::text::oid)"
)


def require_lock(cur: psycopg.Cursor, plan: RunPlan) -> None:
    """Raise ``LockLostError`` unless the run's lock session still holds its lock: called in every
    write transaction of a run, in whichever process it runs, so nothing is written after a loss."""
    if not cur.execute(LOCK_HELD, {"run": plan.run_id, "k": plan.lock_key}).fetchone()[0]:  # type: ignore[index]
        raise LockLostError(
            f"run {plan.run_id} on {plan.table.qualified}.{plan.column} lost its lock (the session holding it "
            "ended: a database restart or a terminated backend); stopped before writing. Rerun to resume."
        )


def prepare_table(plan: RunPlan, lock_pid: int) -> None:
    """Add the output columns that are missing (one statement) and record the run as started.

    ALTER TABLE takes an ACCESS EXCLUSIVE lock, even with IF NOT EXISTS and nothing to add, and
    readers of a busy table queue behind it: so it runs only when a column is missing, and gives up
    after ``lock_timeout`` seconds with a clear error rather than stalling the warehouse."""
    with plan.engine().begin() as conn:
        present = table_columns(conn, plan.table)
        missing = [(part, kind) for part, kind in OUTPUT_TYPES.items() if plan.outputs[part] not in present]
        if missing:
            adds = sql.SQL(", ").join(sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(plan.ident(part), sql.SQL(kind))
                                      for part, kind in missing)  # fmt: skip
            cur = raw(conn).cursor()
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(plan.settings.lock_timeout * 1000)}ms",))
            try:
                cur.execute(sql.SQL("ALTER TABLE {} ").format(plan.table.ident) + adds)
            except psycopg.errors.LockNotAvailable as exc:
                raise TableError(f"could not lock {plan.table.qualified} within {plan.settings.lock_timeout:g} s to "
                                 "add its output columns: another session holds it; retry, or raise lock_timeout") from exc  # fmt: skip
        start_run(conn, plan.run_id, plan.table.qualified, plan.column, plan.ontology, plan.release, plan.prefix,
                  plan.key, plan.terms, plan.flow_run_id, lock_pid)  # fmt: skip


def _distinct_terms(plan: RunPlan) -> sql.Composed:
    col = sql.Identifier(plan.column)
    return sql.SQL("SELECT DISTINCT t.{col} AS term FROM {tbl} t WHERE t.{col} IS NOT NULL AND btrim(t.{col}) <> ''{scope}"
                   ).format(col=col, tbl=plan.table.ident, scope=plan.scope())  # fmt: skip


def carry_over(plan: RunPlan) -> int:
    """Keep the cached answers a new release leaves as they were, so only what it could change is
    recomputed; returns how many were kept.

    The rule: a cached answer of this table's terms made under the same producer but other release
    content is kept only if it is an exact match (label or synonym) whose ID is still current and
    which the new release's lexicon still gives, alone (the route starts with the lexical tier, so
    the cascade would answer the same). Everything else made under other content is recomputed:
    retrieval, fuzzy, LLM answers and abstentions (the new strings may hold a better candidate),
    obsolete IDs, and matches the new lexicon no longer gives or makes ambiguous."""
    if plan.force or plan.settings.routing.get(plan.ontology, ["lexical"])[:1] != ["lexical"]:
        return 0
    query = sql.SQL(
        "SELECT m.term, m.id FROM ({distinct}) d JOIN etlnorm.mapping m ON m.ontology = %(o)s"
        " AND m.term_md5 = md5(d.term)::uuid JOIN etlnorm.term t ON t.ontology = m.ontology AND t.id = m.id"
        " WHERE m.producer = %(p)s AND m.fingerprint IS DISTINCT FROM %(fp)s AND m.method = ANY(%(lexical)s)"
        " AND NOT t.obsolete"
    ).format(distinct=_distinct_terms(plan))
    params = plan.params(o=plan.ontology, p=plan.producer, fp=plan.fingerprint, lexical=list(LEXICAL_METHODS))
    with plan.engine().connect() as conn:
        analyze_if_stale(conn)
        rows = raw(conn).execute(query, params).fetchall()
    if not rows:
        return 0
    normalizer = get_normalizer(plan.ontology, settings=plan.settings)
    kept = [term for (term, cached), now in zip(rows, normalizer.lexical_ids([r[0] for r in rows]), strict=True)
            if now == cached]  # fmt: skip
    with plan.engine().begin() as conn:
        cur = raw(conn).cursor()
        require_lock(cur, plan)
        cur.execute("UPDATE etlnorm.mapping m SET fingerprint = %(fp)s, release = %(r)s, label = t.label,"
                    " run_id = %(run)s FROM etlnorm.term t WHERE m.ontology = %(o)s AND m.term_md5 = ANY("
                    "SELECT md5(x)::uuid FROM unnest(%(kept)s::text[]) x) AND t.ontology = m.ontology AND t.id = m.id",
                    {**params, "r": plan.release, "run": plan.run_id, "kept": kept})  # fmt: skip
    log.info("%s: %d cached exact matches kept across the release change, %d to recompute", plan.ontology,
             len(kept), len(rows) - len(kept))  # fmt: skip
    return len(kept)


def analyze_if_stale(conn: Connection, share: float = 0.1) -> None:
    """ANALYZE the mapping cache when over ``share`` of its rows changed since its statistics were taken.

    A cache just filled by a run (or its new columns, never analyzed) makes the planner expect one
    matching row and join 20k terms to 40k cached answers in a nested loop: minutes instead of a
    second. Autovacuum would analyze it later; the next run's set-based selects need it now."""
    stale = conn.execute(text("SELECT n_mod_since_analyze > :share * greatest(n_live_tup, 1000) FROM pg_stat_user_tables"
                              " WHERE relid = 'etlnorm.mapping'::regclass"), {"share": share}).scalar()  # fmt: skip
    if stale:
        conn.execute(text("ANALYZE etlnorm.mapping"))
        conn.commit()


def pending_terms(plan: RunPlan) -> tuple[list[str], int]:
    """(distinct terms without a cached mapping of this content and producer, number of distinct
    non-empty terms)."""
    # force: every term is pending, cached or not ("recompute cached mappings too").
    query = sql.SQL(
        "SELECT d.term, m.term_md5 IS NULL OR %(force)s FROM ({distinct}) d LEFT JOIN etlnorm.mapping m"
        " ON m.ontology = %(o)s AND m.term_md5 = md5(d.term)::uuid AND m.fingerprint = %(fp)s AND m.producer = %(p)s"
    ).format(distinct=_distinct_terms(plan))
    params = plan.params(o=plan.ontology, fp=plan.fingerprint, p=plan.producer, force=plan.force)
    with plan.engine().connect() as conn:
        analyze_if_stale(conn)
        rows = raw(conn).execute(query, params).fetchall()
    return [term for term, missing in rows if missing], len(rows)


def warm_up(plan: RunPlan) -> None:
    """Load the normalizer's heavy parts once, here, before parallel workers would each build them."""
    get_normalizer(plan.ontology, settings=plan.settings).prepare()


@dataclass(frozen=True)
class BatchReport:
    """What one normalize batch did, and where (the flow's artifact counts processes and loads)."""

    terms: int
    cached: int
    timings: dict[str, float]
    pid: int
    normalizer: int  # id() of the warm normalizer that answered: one per process
    methods: dict[str, int] = field(default_factory=dict)
    threads: int = 0  # torch's intra-op threads in that process


def normalize_batch(plan: RunPlan, terms: Sequence[str]) -> BatchReport:
    """Normalize one batch of distinct terms and upsert the answers into the mapping cache."""
    import torch  # loaded by the encoder already; here only to report its threads

    normalizer = get_normalizer(plan.ontology, settings=plan.settings)  # warm per process
    start = time.perf_counter()
    answers = normalizer.normalize(terms)
    middle = time.perf_counter()
    cached = cache_answers(plan, normalizer, terms, answers)
    timings = {"normalize": middle - start, "cache": time.perf_counter() - middle}
    log.info("normalized %d terms in %.2f s (pid %d)", len(terms), sum(timings.values()), os.getpid())
    return BatchReport(len(terms), cached, timings, os.getpid(), id(normalizer),
                       dict(Counter(a.method for a in answers)), torch.get_num_threads())  # fmt: skip


def cache_answers(plan: RunPlan, normalizer: Normalizer, terms: Sequence[str], answers: Sequence[Answer]) -> int:
    """Upsert one batch of answers into etlnorm.mapping (COPY into a temp table, then one INSERT)."""
    model, adapter = normalizer.provenance()
    with plan.engine().begin() as conn:
        cur = raw(conn).cursor()
        require_lock(cur, plan)
        cur.execute("CREATE TEMP TABLE etlnorm_batch (term text, norm_term text, id text, label text,"
                    " confidence real, method text, candidates jsonb) ON COMMIT DROP")  # fmt: skip
        with cur.copy("COPY etlnorm_batch FROM STDIN") as copy:
            for term, a in zip(terms, answers, strict=True):
                confidence = None if a.method == "empty" else a.confidence
                copy.write_row((term, normalizer.key(term), a.id, a.label, confidence, a.method, a.candidates_json()))
        cur.execute(
            "INSERT INTO etlnorm.mapping AS m (ontology, term_md5, term, norm_term, release, fingerprint, producer, id,"
            " label, confidence, method, model, adapter, run_id, candidates)"
            " SELECT %(o)s, md5(term)::uuid, term, norm_term, %(r)s, %(fp)s, %(p)s, id, label, confidence, method,"
            " %(model)s, %(adapter)s, %(run)s, candidates FROM etlnorm_batch"
            " ON CONFLICT (ontology, term_md5) DO UPDATE SET norm_term = EXCLUDED.norm_term,"
            " release = EXCLUDED.release, fingerprint = EXCLUDED.fingerprint, producer = EXCLUDED.producer,"
            " id = EXCLUDED.id, label = EXCLUDED.label,"
            " confidence = EXCLUDED.confidence, method = EXCLUDED.method, model = EXCLUDED.model,"
            " adapter = EXCLUDED.adapter, run_id = EXCLUDED.run_id, candidates = EXCLUDED.candidates, created_at = now()",
            {"o": plan.ontology, "r": plan.release, "fp": normalizer.fingerprint, "p": normalizer.producer(),
             "model": model, "adapter": adapter, "run": plan.run_id},
        )
        return cur.rowcount


def forget_answers(engine: Engine, ontology: str, texts: Sequence[str]) -> int:
    """Drop cached answers a new lexicon string could change: every non-lexical answer (the string
    may now be the best candidate) and lexical ones under the same normalized key (ambiguity)."""
    keys = sorted({word_key(t) for t in texts} | {"sym:" + clean(t) for t in texts})
    with engine.begin() as conn:
        done = conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = :o AND (method NOT IN"
                                 " ('exact', 'synonym', 'empty') OR norm_term = ANY(:k))"),
                            {"o": ontology, "k": keys})  # fmt: skip
        return done.rowcount


def key_ranges(plan: RunPlan) -> list[tuple[Any, Any]]:
    """Inclusive (low, high) key bounds splitting the table into ranges of about ``update_batch_rows`` rows;
    a term-only run gets one range around the rows holding its terms (one UPDATE), or none."""
    if plan.terms is not None:
        query = sql.SQL("SELECT min(t.{key}), max(t.{key}) FROM {tbl} t WHERE t.{key} IS NOT NULL{scope}"
                        " HAVING count(*) > 0")  # fmt: skip
    else:
        query = sql.SQL(
            "SELECT min(k), max(k) FROM (SELECT {key} AS k, (row_number() OVER (ORDER BY {key}) - 1) / %(n)s AS b"
            " FROM {tbl} WHERE {key} IS NOT NULL) s GROUP BY b ORDER BY b"
        )
    query = query.format(key=sql.Identifier(plan.key), tbl=plan.table.ident, scope=plan.scope())
    with plan.engine().connect() as conn:
        rows = raw(conn).execute(query, plan.params(n=max(1, plan.settings.update_batch_rows))).fetchall()
    return [tuple(r) for r in rows]


def update_range(plan: RunPlan, low: Any, high: Any) -> int:
    """Write cached answers into rows ``low <= key <= high`` (holding the plan's terms, if it names
    some) whose outputs differ; one transaction."""
    o = {part: plan.ident(part) for part in plan.outputs}
    fmt = dict(tbl=plan.table.ident, col=sql.Identifier(plan.column), key=sql.Identifier(plan.key), scope=plan.scope(),
               **o)  # fmt: skip
    outputs = sql.SQL("(t.{id}, t.{label}, t.{confidence}, t.{method})").format(**o)
    from_cache = sql.SQL(
        "UPDATE {tbl} AS t SET {id} = m.id, {label} = m.label, {confidence} = m.confidence, {method} = m.method"
        " FROM etlnorm.mapping m WHERE m.ontology = %(o)s AND m.term_md5 = md5(t.{col})::uuid"
        " AND t.{key} BETWEEN %(lo)s AND %(hi)s AND btrim(t.{col}) <> ''{scope}"
        " AND {outputs} IS DISTINCT FROM (m.id, m.label, m.confidence, m.method)"
    ).format(outputs=outputs, **fmt)
    empties = sql.SQL(
        "UPDATE {tbl} AS t SET {id} = NULL, {label} = NULL, {confidence} = NULL, {method} = 'empty'"
        " WHERE t.{key} BETWEEN %(lo)s AND %(hi)s AND (t.{col} IS NULL OR btrim(t.{col}) = ''){scope}"
        " AND {outputs} IS DISTINCT FROM (NULL, NULL, NULL::real, 'empty')"
    ).format(outputs=outputs, **fmt)
    params = plan.params(o=plan.ontology, lo=low, hi=high)
    with plan.engine().begin() as conn:
        cur = raw(conn).cursor()
        require_lock(cur, plan)
        cur.execute(from_cache, params)
        updated = cur.rowcount
        cur.execute(empties, params)
        return updated + cur.rowcount


@dataclass(frozen=True)
class Coverage:
    """The table's outputs as they are after the update."""

    rows: int
    mapped: int
    methods: dict[str, int]
    mean_confidence: float | None


def measure_coverage(plan: RunPlan) -> Coverage:
    """Rows per method, mapped rows and mean confidence of the table as it is now."""
    query = sql.SQL(
        "SELECT coalesce(t.{method}, 'unmapped'), count(*), count(t.{id}), sum(t.{confidence}) FILTER"
        " (WHERE t.{id} IS NOT NULL) FROM {tbl} t GROUP BY 1"
    ).format(tbl=plan.table.ident, method=plan.ident("method"), id=plan.ident("id"),
             confidence=plan.ident("confidence"))  # fmt: skip
    with plan.engine().connect() as conn:
        rows = raw(conn).execute(query).fetchall()
    mapped = sum(m for _, _, m, _ in rows)
    total = sum(float(s or 0) for _, _, _, s in rows)
    return Coverage(sum(n for _, n, _, _ in rows), mapped, {method: n for method, n, _, _ in rows},
                    round(total / mapped, 4) if mapped else None)  # fmt: skip


@dataclass(frozen=True)
class Bucket:
    """Rows whose confidence falls in ``low <= c < high`` (the last bucket includes 1.0)."""

    low: float
    high: float
    rows: int
    mapped: int  # of those, rows with an ID (the others abstained: method 'none')


def confidence_histogram(plan: RunPlan, buckets: int = 10) -> list[Bucket]:
    """Confidence of the table's rows in ``buckets`` equal-width buckets over [0, 1], counted in SQL."""
    query = sql.SQL(
        "SELECT least(width_bucket(t.{confidence}, 0, 1, %(n)s), %(n)s) AS b, count(*), count(t.{id})"
        " FROM {tbl} t WHERE t.{confidence} IS NOT NULL GROUP BY 1"
    ).format(tbl=plan.table.ident, confidence=plan.ident("confidence"), id=plan.ident("id"))
    with plan.engine().connect() as conn:
        counts = {b: (n, mapped) for b, n, mapped in raw(conn).execute(query, {"n": buckets}).fetchall()}
    return [Bucket(round((b - 1) / buckets, 4), round(b / buckets, 4), *counts.get(b, (0, 0)))
            for b in range(1, buckets + 1)]  # fmt: skip


def record_outcome(plan: RunPlan, stats: RunStats, error: str | None = None) -> None:
    """Close the run record: completed with its figures, or failed with the error."""
    finish_run(plan.engine(), plan.run_id, stats, error=error)


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    """``items`` in consecutive chunks of at most ``size``."""
    return [list(items[start : start + size]) for start in range(0, len(items), max(1, size))]
