"""What the review page reads: normalized targets, the terms that need a person, pending decisions.

Targets are the (table, column, ontology, prefix) of completed runs in ``etlnorm.run``; each table
name is looked up in the catalog again and used only through ``psycopg.sql.Identifier``, every value
through bound parameters. A term needs a person when its rows abstained (``none``, ``negated``,
``multiple``), hold an automatic answer below ``review_below``, or hold an ID that is obsolete (or
gone) in the loaded release. A decision is pending while rows of the table still differ from what
the next run writes for it, or while its term has no cached answer (a decision drops it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql
from sqlalchemy import Engine, text

from etlnorm.config import Settings
from etlnorm.db.engine import raw
from etlnorm.errors import EtlnormError
from etlnorm.warehouse.catalog import Table, find_table, output_columns
from etlnorm.warehouse.phases import Bucket, confidence_histogram, plan_run

log = logging.getLogger(__name__)

EXAMPLES = 3  # example rows shown per term
EXAMPLE_COLUMNS = 5  # columns of an example row besides the term
REASONS = {"negated": "negated: the term denies the finding", "multiple": "lists several findings"}


@dataclass(frozen=True)
class Target:
    """A normalized column, with its coverage as measured by its latest completed run."""

    table: str
    column: str
    ontology: str
    prefix: str
    key: str | None = None
    rows: int = 0
    mapped: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    mean_confidence: float | None = None
    finished_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column} ({self.ontology}, {self.prefix}_*)"

    @property
    def query(self) -> dict[str, str]:
        """The URL parameters naming it."""
        return {"table": self.table, "column": self.column, "ontology": self.ontology, "prefix": self.prefix}


@dataclass(frozen=True)
class Choice:
    """A candidate ID of a queued term, as a curator needs to judge it."""

    id: str
    label: str | None
    definition: str | None
    score: float | None
    current: bool  # the ID the rows hold now
    rejected: bool  # a curator rejected it for this term


@dataclass(frozen=True)
class Item:
    """One queued term of a target: what its rows hold, why it is here, what to pick from."""

    target: Target
    term: str
    rows: int
    id: str | None
    label: str | None
    confidence: float | None
    method: str
    cached: bool  # False: a decision dropped its cached answer; the next run (or apply) recomputes it
    reasons: list[str]
    choices: list[Choice]
    examples: list[dict[str, str]]


@dataclass(frozen=True)
class Pending:
    """A term's latest decision and the rows of a target the next run changes for it."""

    target: Target
    term: str
    decision: str
    id: str | None
    curator: str
    at: datetime
    writes: str | None  # the ID the next run writes (None: a rejection; the next run picks again)
    rows: int
    changing: int


def list_targets(engine: Engine) -> list[Target]:
    """Every (table, column, ontology, prefix) with a completed run, as of its latest one."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT ON (table_name, column_name, ontology, prefix) table_name, column_name, ontology,"
            " prefix, key_column, coalesce(rows_seen, 0), coalesce(mapped_rows, 0), coalesce(methods, '{}'::jsonb),"
            " mean_confidence, finished_at FROM etlnorm.run WHERE status = 'completed'"
            " ORDER BY table_name, column_name, ontology, prefix, finished_at DESC")).all()  # fmt: skip
    return [Target(*row) for row in rows]


def find_target(targets: list[Target], table: str, column: str, ontology: str, prefix: str) -> Target:
    """The target these URL parameters name; only targets with a completed run exist."""
    for target in targets:
        if (target.table, target.column, target.ontology, target.prefix) == (table, column, ontology, prefix):
            return target
    raise EtlnormError(f"no completed run on {table}.{column} against {ontology} with prefix {prefix}")


def _table(conn: Any, target: Target) -> Table | None:
    """The target's table as the catalog knows it now; None (logged) if it or its outputs are gone."""
    try:
        found = find_table(conn, target.table)
    except EtlnormError as exc:
        log.warning("review: %s", exc)
        return None
    wanted = [target.column, *output_columns(target.prefix).values()]
    return found if all(c in found.columns for c in wanted) else None


def _idents(target: Target, table: Table) -> dict[str, sql.Composable]:
    outputs = {part: sql.Identifier(name) for part, name in output_columns(target.prefix).items()}
    return {"tbl": table.ident, "col": sql.Identifier(target.column), **outputs}


QUEUE = """
WITH flagged AS (
  SELECT t.{col} AS term, count(*) AS n, min(t.{method}) AS method, min(t.{id}) AS id, min(t.{label}) AS label,
         min(t.{confidence}) AS confidence
  FROM {tbl} t
  WHERE btrim(t.{col}) <> '' AND t.{method} <> 'empty'
    AND (t.{id} IS NULL OR (t.{method} <> 'curated' AND t.{confidence} < %(below)s)
         OR NOT EXISTS (SELECT 1 FROM etlnorm.term x WHERE x.ontology = %(o)s AND x.id = t.{id} AND NOT x.obsolete))
  GROUP BY t.{col}
)
SELECT f.term, f.n, f.method, f.id, f.label, f.confidence, x.id IS NULL AS gone, coalesce(x.obsolete, false),
       m.candidates, m.term_md5 IS NOT NULL AS cached
FROM flagged f
LEFT JOIN etlnorm.term x ON x.ontology = %(o)s AND x.id = f.id
LEFT JOIN etlnorm.mapping m ON m.ontology = %(o)s AND m.term_md5 = md5(f.term)::uuid
LEFT JOIN (SELECT term, array_agg(id) AS ids FROM etlnorm.rejected WHERE ontology = %(o)s GROUP BY term) r
  ON r.term = f.term
WHERE NOT EXISTS (SELECT 1 FROM etlnorm.curated k WHERE k.ontology = %(o)s AND k.term = f.term AND k.id IS NOT NULL)
  AND NOT (EXISTS (SELECT 1 FROM etlnorm.curation c WHERE c.ontology = %(o)s AND c.term = f.term)
           AND (m.term_md5 IS NULL OR coalesce(f.id = ANY(r.ids), false)))
ORDER BY f.n DESC, f.term
LIMIT %(n)s
"""


def review_queue(engine: Engine, target: Target, below: float, min_confidence: float, limit: int = 50) -> list[Item]:
    """The target's terms that need a person, most rows first (decided ones are under ``pending``)."""
    with engine.connect() as conn:
        table = _table(conn, target)
        if table is None:
            return []
        cur = raw(conn).cursor()
        cur.execute(sql.SQL(QUEUE).format(**_idents(target, table)), {"o": target.ontology, "below": below, "n": limit})
        found = cur.fetchall()
        terms = [row[0] for row in found]
        candidates = {row[0]: row[8] or [] for row in found}
        ids = sorted({c["id"] for cands in candidates.values() for c in cands} | {r[3] for r in found if r[3]})
        terms_info = {i: (label, definition) for i, label, definition in cur.execute(
            "SELECT id, label, definition FROM etlnorm.term WHERE ontology = %s AND id = ANY(%s)",
            (target.ontology, ids)).fetchall()}  # fmt: skip
        rejected: dict[str, set[str]] = {}
        for term, ident in cur.execute("SELECT term, id FROM etlnorm.rejected WHERE ontology = %s AND term = ANY(%s)",
                                       (target.ontology, terms)).fetchall():  # fmt: skip
            rejected.setdefault(term, set()).add(ident)
        examples = example_rows(cur, target, table, terms)
    items = []
    for term, n, method, ident, label, confidence, gone, obsolete, _, cached in found:
        cands = list(candidates[term])
        if ident and all(c["id"] != ident for c in cands):
            cands.insert(0, {"id": ident, "label": label, "score": confidence})
        choices = [Choice(c["id"], terms_info.get(c["id"], (c.get("label"), None))[0] or c.get("label"),
                          terms_info.get(c["id"], (None, None))[1], c.get("score"), c["id"] == ident,
                          c["id"] in rejected.get(term, set())) for c in cands]  # fmt: skip
        items.append(Item(target, term, n, ident, label, confidence, method, cached,
                          reasons(method, ident, confidence, gone, obsolete, cached, below, min_confidence),
                          choices, examples.get(term, [])))  # fmt: skip
    return items


def reasons(method: str, ident: str | None, confidence: float | None, gone: bool, obsolete: bool, cached: bool,
            below: float, min_confidence: float) -> list[str]:  # fmt: skip
    """Why a term is in the queue, in words."""
    out = []
    if method == "none":
        out.append(f"abstained: confidence {confidence or 0:.2f} is below min_confidence {min_confidence:.2f}")
    elif method in REASONS:
        out.append(REASONS[method])
    elif ident is not None and method != "curated" and confidence is not None and confidence < below:
        out.append(f"low confidence: {confidence:.2f} by {method} (queued below {below:.2f})")
    if ident is not None and gone:
        out.append(f"obsolete target: {ident} is not in the loaded release")
    elif ident is not None and obsolete:
        out.append(f"obsolete target: {ident} is obsolete in the loaded release")
    if not cached:
        out.append("no cached answer: a decision dropped it; apply (or the next run) recomputes it")
    return out


def example_rows(cur: Any, target: Target, table: Table, terms: list[str]) -> dict[str, list[dict[str, str]]]:
    """Up to ``EXAMPLES`` rows per term, each as its first columns other than the term and the outputs."""
    if not terms:
        return {}
    query = sql.SQL(
        "SELECT term, r FROM (SELECT t.{col} AS term, to_jsonb(t) AS r, row_number() OVER (PARTITION BY t.{col}) AS n"
        " FROM {tbl} t WHERE t.{col} = ANY(%(terms)s)) s WHERE s.n <= %(k)s"
    ).format(tbl=table.ident, col=sql.Identifier(target.column))
    hidden = {target.column, *output_columns(target.prefix).values()}
    shown = [c for c in table.columns if c not in hidden][:EXAMPLE_COLUMNS]
    out: dict[str, list[dict[str, str]]] = {}
    for term, row in cur.execute(query, {"terms": terms, "k": EXAMPLES}).fetchall():
        out.setdefault(term, []).append({c: _short(row.get(c)) for c in shown})
    return out


def _short(value: Any, width: int = 60) -> str:
    shown = "" if value is None else str(value)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


PENDING = """
SELECT * FROM (
  SELECT term, decision, id, curator, at, writes, count(*) AS n, count(*) FILTER (WHERE changing) AS changing,
         bool_or(uncached) AS uncached
  FROM (SELECT d.*, k.id AS writes, m.term_md5 IS NULL AS uncached,
               CASE WHEN k.id IS NOT NULL THEN (t.{id}, t.{method}) IS DISTINCT FROM (k.id, 'curated')
                    ELSE coalesce(t.{id} = ANY(r.ids), false) END AS changing
        FROM (SELECT DISTINCT ON (c.term) c.term, c.decision, c.id, c.curator, c.at FROM etlnorm.curation c
              WHERE c.ontology = %(o)s ORDER BY c.term, c.seq DESC) d
        JOIN {tbl} t ON t.{col} = d.term
        LEFT JOIN etlnorm.curated k ON k.ontology = %(o)s AND k.term = d.term
        LEFT JOIN (SELECT term, array_agg(id) AS ids FROM etlnorm.rejected WHERE ontology = %(o)s GROUP BY term) r
          ON r.term = d.term
        LEFT JOIN etlnorm.mapping m ON m.ontology = %(o)s AND m.term_md5 = md5(d.term)::uuid) s
  GROUP BY term, decision, id, curator, at, writes) g
WHERE changing > 0 OR uncached
ORDER BY at DESC, term
"""


def pending_decisions(engine: Engine, target: Target) -> list[Pending]:
    """Decisions whose term's rows in the target the next run (or an apply) changes, newest first."""
    with engine.connect() as conn:
        table = _table(conn, target)
        if table is None:
            return []
        rows = raw(conn).execute(sql.SQL(PENDING).format(**_idents(target, table)), {"o": target.ontology}).fetchall()
    return [Pending(target, *row[:8]) for row in rows]


def cached_id(engine: Engine, ontology: str, term: str) -> str | None:
    """The ID of the term's cached answer, if it has one: picking it is an accept, any other ID a set-id."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM etlnorm.mapping WHERE ontology = :o AND term_md5 = md5(:t)::uuid"),
                            {"o": ontology, "t": term}).scalar()  # fmt: skip


def target_histogram(settings: Settings, target: Target) -> list[Bucket] | None:
    """The target's rows by confidence, counted now by the run's own histogram phase (None: table gone)."""
    try:
        plan = plan_run(settings, target.table, target.column, target.ontology, target.key, target.prefix)
    except EtlnormError as exc:
        log.warning("review: %s", exc)
        return None
    return confidence_histogram(plan)
