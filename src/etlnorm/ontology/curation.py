"""Curation: a person's decisions on raw terms, which every answer etlnorm writes puts first.

Decisions live in ``etlnorm.curation`` (``sql/005_curation.sql``), one row each, never replaced, so
the history stays. The database does the bookkeeping, so plain SQL inserts work like the commands:
an accept or reject without an ID takes the term's cached answer, an ID must be current, and each
decision drops the term's cached answer so the next run recomputes it. Views ``etlnorm.curated``
and ``etlnorm.rejected`` resolve curated IDs through alt IDs and replacements on every read, so a
curation follows new releases; one gone obsolete without replacement is listed in
``etlnorm.mapping_review`` and not written.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from etlnorm.errors import OntologyError
from etlnorm.ontology.store import current_release
from etlnorm.ontology.user_synonyms import UserSynonym, add_user_synonyms

log = logging.getLogger(__name__)

DECISIONS = ("accept", "reject", "set-id")
MAX_TERM_CHARS = 1000  # as etlnorm.curation checks


@dataclass(frozen=True)
class Curated:
    """A term's standing curation: the curated ID (resolved to today's; None when it became
    obsolete without replacement, or when only rejections exist) and the IDs rejected for it."""

    id: str | None = None
    label: str | None = None
    positive: bool = False  # an accept or set-id stands
    rejected: frozenset[str] = field(default_factory=frozenset)


def curate(engine: Engine, ontology: str, term: str, decision: str, ident: str | None = None,
           curator: str | None = None, note: str | None = None, as_synonym: bool = False) -> str:  # fmt: skip
    """Record one decision; returns the ID it concerns (the cached answer's for accept/reject
    without ``ident``). ``as_synonym``: the term also becomes a user synonym of that ID (accept and
    set-id only), so other spellings of it match too. Errors from the database's checks come back
    as one line."""
    if decision not in DECISIONS:
        raise OntologyError(f"decision must be one of {', '.join(DECISIONS)}")
    if not term or not term.strip():
        raise OntologyError("the term to curate is empty")
    if "\x00" in term or len(term) > MAX_TERM_CHARS:
        raise OntologyError(f"a curated term holds no NUL byte and at most {MAX_TERM_CHARS} characters")
    if as_synonym and decision == "reject":
        raise OntologyError("a rejected ID cannot become a synonym of the term")
    try:
        with engine.begin() as conn:
            current_release(conn, ontology)
            recorded = conn.execute(
                text("INSERT INTO etlnorm.curation (ontology, term, decision, id, curator, note)"
                     " VALUES (:o, :t, :d, :i, coalesce(:c, current_user), :n) RETURNING id"),
                {"o": ontology, "t": term, "d": decision, "i": ident, "c": curator, "n": note},
            ).scalar_one()  # fmt: skip
    except DBAPIError as exc:
        message = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        raise OntologyError(message.removeprefix("etlnorm: ")) from exc
    if as_synonym:
        add_user_synonyms(engine, ontology, [UserSynonym(term.strip(), recorded)], source="curation")
    return recorded


def storable(term: str) -> bool:
    """Whether ``term`` is text PostgreSQL can hold (UTF-8 encodable: no lone surrogates)."""
    try:
        term.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def curations(engine: Engine, ontology: str, terms: Collection[str]) -> dict[str, Curated]:
    """The standing curation of each of ``terms`` that has one, in two set-based queries."""
    # A curated term is a text value of at most MAX_TERM_CHARS: others (NUL bytes, lone surrogates,
    # huge) cannot be stored in PostgreSQL, so they have none.
    wanted = sorted({t for t in terms if t and "\x00" not in t and len(t) <= MAX_TERM_CHARS and storable(t)})
    if not wanted:
        return {}
    with engine.connect() as conn:
        positive = conn.execute(
            text("SELECT k.term, k.id, t.label FROM etlnorm.curated k LEFT JOIN etlnorm.term t"
                 " ON t.ontology = k.ontology AND t.id = k.id WHERE k.ontology = :o AND k.term = ANY(:t)"),
            {"o": ontology, "t": wanted},
        ).all()  # fmt: skip
        rejected = conn.execute(
            text("SELECT term, array_agg(id) FROM etlnorm.rejected WHERE ontology = :o AND term = ANY(:t) GROUP BY term"),
            {"o": ontology, "t": wanted},
        ).all()  # fmt: skip
    out = {term: Curated(rejected=frozenset(ids)) for term, ids in rejected}
    for term, ident, label in positive:
        out[term] = Curated(ident, label, True, out.get(term, Curated()).rejected)
        if ident is None:
            log.warning("curated %s ID of %r is obsolete with no replacement: not written (see etlnorm.mapping_review)",
                        ontology, term[:80])  # fmt: skip
    return out
