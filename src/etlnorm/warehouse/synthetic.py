"""Realistic raw annotation tables for the demo, the tests and the benchmarks.

Terms are real HPO/GO/HGNC labels and synonyms, written the way people write them: other case,
plurals, dashes as spaces, stray punctuation and whitespace, light typos, short phrases around
the term; repeated with a skewed (few frequent, many rare) distribution, with some NULL and
empty cells. Deterministic for a given seed.
"""

from __future__ import annotations

import random

from psycopg import sql
from sqlalchemy import Engine, text

from etlnorm.db.engine import raw
from etlnorm.warehouse.catalog import split_name

PHRASES = ("history of {}", "{} (suspected)", "possible {}", "{}, mild", "mild {}", "{} noted on exam")


def _typo(term: str, rng: random.Random) -> str:
    i = rng.randrange(1, max(2, len(term) - 2))
    return term[:i] + term[i + 1] + term[i] + term[i + 2 :] if len(term) > 4 else term


def variant(term: str, rng: random.Random) -> str:
    """One way a person might write ``term``."""
    kind = rng.random()
    if kind < 0.25:
        return term
    if kind < 0.40:
        return term.lower()
    if kind < 0.48:
        return term.upper()
    if kind < 0.58:
        return term + ("" if term.endswith("s") else "s")
    if kind < 0.68:
        return term.replace("-", " ").replace(",", "")
    if kind < 0.76:
        return f"  {term}. "
    if kind < 0.86:
        return _typo(term, rng)
    return rng.choice(PHRASES).format(term.lower())


def distinct_terms(engine: Engine, ontology: str, n: int, seed: int = 7) -> list[str]:
    """``n`` distinct raw strings derived from the ontology's labels and synonyms."""
    with engine.connect() as conn:
        pool = list(conn.execute(
            text("SELECT label FROM etlnorm.term WHERE ontology = :o AND NOT obsolete AND label IS NOT NULL"
                 " UNION SELECT s.text FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
                 " WHERE s.ontology = :o AND NOT t.obsolete ORDER BY 1"),
            {"o": ontology},
        ).scalars())  # fmt: skip
    rng = random.Random(seed)
    rng.shuffle(pool)
    out: dict[str, None] = {}
    for base in pool:
        for _ in range(2):
            out.setdefault(variant(base, rng), None)
        if len(out) >= n:
            break
    return list(out)[:n]


def create_annotation_table(engine: Engine, table: str, terms: list[str], rows: int, seed: int = 7) -> None:
    """(Re)create ``table`` (id bigint primary key, patient_id, term) with ``rows`` rows drawn from ``terms``:
    squared-uniform ranks make the first terms frequent, about 1 % NULL and 0.5 % empty cells."""
    schema, name = split_name(table)
    ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    with engine.begin() as conn:
        cur = raw(conn).cursor()
        if schema:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        cur.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, patient_id integer NOT NULL, term text)")
                    .format(ident))  # fmt: skip
        cur.execute("SELECT setseed(%s)", (((seed % 1000) / 1000.0),))
        cur.execute(
            sql.SQL(
                # Terms are numbered once in a temp table and joined by rank: indexing a parameter
                # array per row re-reads the whole array each time (46 s for 1 M rows).
                "INSERT INTO {} (id, patient_id, term) SELECT s.g, 1 + (s.g * 7919::bigint) %% 50000,"
                " CASE WHEN s.r < 0.01 THEN NULL WHEN s.r < 0.015 THEN '' ELSE v.term END"
                " FROM (SELECT g, random() AS r, 1 + floor(power(random(), 2) * %(n)s)::int AS k"
                " FROM generate_series(1, %(rows)s) g) s"
                " JOIN unnest(%(terms)s::text[]) WITH ORDINALITY AS v(term, k) ON v.k = s.k"
            ).format(ident),
            {"terms": terms, "n": len(terms), "rows": rows},
        )
        cur.execute(sql.SQL("ANALYZE {}").format(ident))
