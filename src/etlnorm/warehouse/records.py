"""Run records in ``etlnorm.run``: one row per ``etlnorm run``, from start to outcome."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import Connection, Engine, text


@dataclass
class RunStats:
    """What a run saw and did; filled phase by phase, stored at the end."""

    rows_seen: int = 0
    rows_updated: int = 0
    distinct_terms: int = 0
    new_terms: int = 0
    cache_hits: int = 0
    carried_over: int = 0  # of the cache hits, answers of another release content kept (phases.carry_over)
    methods: dict[str, int] = field(default_factory=dict)
    mapped_rows: int = 0
    mean_confidence: float | None = None
    timings: dict[str, float] = field(default_factory=dict)


def start_run(conn: Connection, run_id: UUID, table: str, column: str, ontology: str, release: str,
              prefix: str, key: str | None = None, terms: Sequence[str] | None = None,
              flow_run_id: UUID | None = None, lock_pid: int | None = None) -> None:  # fmt: skip
    """Record the run; earlier 'running' runs of the same target (table, column, output prefix: what
    the run's lock names) died, since the caller holds that lock."""
    conn.execute(
        text("UPDATE etlnorm.run SET status = 'interrupted', finished_at = now() WHERE status = 'running'"
             " AND table_name = :t AND column_name = :c AND prefix = :p"),
        {"t": table, "c": column, "p": prefix},
    )  # fmt: skip
    conn.execute(
        text("INSERT INTO etlnorm.run (run_id, table_name, column_name, ontology, release, prefix, status,"
             " key_column, only_terms, flow_run_id, lock_pid) VALUES (:r, :t, :c, :o, :rel, :p, 'running', :k, :terms,"
             " :f, :pid)"),
        {"r": run_id, "t": table, "c": column, "o": ontology, "rel": release, "p": prefix, "k": key,
         "terms": list(terms) if terms is not None else None, "f": flow_run_id, "pid": lock_pid},
    )  # fmt: skip


def finish_run(engine: Engine, run_id: UUID, stats: RunStats, error: str | None = None) -> None:
    """Store the outcome: completed with its figures, or failed with the error."""
    values = asdict(stats)
    values.update(methods=json.dumps(stats.methods), timings=json.dumps(stats.timings))
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE etlnorm.run SET status = :status, finished_at = now(), rows_seen = :rows_seen,"
                " rows_updated = :rows_updated, distinct_terms = :distinct_terms, new_terms = :new_terms,"
                " cache_hits = :cache_hits, carried_over = :carried_over, methods = CAST(:methods AS jsonb), mapped_rows = :mapped_rows,"
                " mean_confidence = :mean_confidence, timings = CAST(:timings AS jsonb), error = :error"
                " WHERE run_id = :run_id"
            ),
            {**values, "status": "failed" if error else "completed", "error": error, "run_id": run_id},
        )


@dataclass(frozen=True)
class RunRecord:
    run_id: UUID
    table_name: str
    column_name: str
    ontology: str
    release: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_seen: int | None
    rows_updated: int | None
    distinct_terms: int | None
    new_terms: int | None
    cache_hits: int | None
    methods: dict | None
    timings: dict | None
    error: str | None
    prefix: str
    key_column: str | None
    only_terms: list[str] | None
    flow_run_id: UUID | None


def list_runs(engine: Engine, limit: int = 20) -> list[RunRecord]:
    """The latest runs, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT run_id, table_name, column_name, ontology, release, status, started_at, finished_at,"
                 " rows_seen, rows_updated, distinct_terms, new_terms, cache_hits, methods, timings, error, prefix,"
                 " key_column, only_terms, flow_run_id"
                 " FROM etlnorm.run ORDER BY started_at DESC LIMIT :n"),
            {"n": limit},
        ).all()  # fmt: skip
    return [RunRecord(*row) for row in rows]
