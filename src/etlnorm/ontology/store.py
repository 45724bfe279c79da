"""The ontology store in Postgres: replace a release atomically, list releases, resolve IDs."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from etlnorm.db.engine import raw
from etlnorm.errors import OntologyError
from etlnorm.ontology.registry import ONTOLOGIES
from etlnorm.ontology.release import Release

log = logging.getLogger(__name__)

_DELETE_CHILDREN = [text(f"DELETE FROM etlnorm.{t} WHERE ontology = :n") for t in ("alt_id", "synonym", "term")]  # noqa: S608 - fixed names
MAX_SHRINK = 0.5  # a new release with fewer than half the terms of the old one looks truncated


@dataclass(frozen=True)
class LoadedOntology:
    name: str
    release: str
    source: str
    loaded_at: datetime
    n_terms: int
    n_obsolete: int
    n_synonyms: int
    n_alt_ids: int
    fingerprint: str | None = None  # content hash of terms, synonyms and alt IDs: what machines key by

    @property
    def stamp(self) -> str:
        """What a trained model records of the release: the label for people, the content for machines."""
        return f"{self.release} ({self.fingerprint})"


def release_date(label: str) -> date | None:
    """The date a release label carries (``hp/releases/2025-01-16``, ``releases/2021-12-15``), if any."""
    found = re.search(r"(\d{4})-(\d{2})-(\d{2})", label)
    try:
        return date(*map(int, found.groups())) if found else None
    except ValueError:
        return None


def is_downgrade(old: str, new: str) -> bool:
    """Whether ``new`` is dated before ``old`` (labels without a date cannot be ordered: never)."""
    before, after = release_date(old), release_date(new)
    return before is not None and after is not None and after < before


def save_release(engine: Engine, release: Release, allow_shrink: bool = False,
                 allow_downgrade: bool = False) -> LoadedOntology:  # fmt: skip
    """Replace the stored release of ``release.name`` in one transaction.

    Any failure (a constraint, a lost connection, a suspicious shrink, an older release over a
    newer one) rolls back and leaves the previous release as it was.
    """
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('etlnorm.ontology:' || :n))"),
                         {"n": release.name})  # fmt: skip
            previous = conn.execute(text("SELECT n_terms, release FROM etlnorm.ontology WHERE name = :n"),
                                    {"n": release.name}).first()  # fmt: skip
            if previous and not allow_shrink and len(release.terms) < MAX_SHRINK * previous[0]:
                raise OntologyError(
                    f"refusing to replace {release.name} ({previous[0]} terms) with a release of "
                    f"{len(release.terms)} terms: the file looks truncated (pass --allow-shrink if it is not)"
                )
            if previous and not allow_downgrade and is_downgrade(previous[1], release.release):
                raise OntologyError(
                    f"refusing to replace {release.name} release {previous[1]} with the older {release.release} "
                    "(pass --allow-downgrade to load it anyway)"
                )
            # Children first, in bulk: cheaper than row-by-row cascades from the ontology row.
            for statement in _DELETE_CHILDREN:
                conn.execute(statement, {"n": release.name})
            conn.execute(text("DELETE FROM etlnorm.ontology WHERE name = :n"), {"n": release.name})
            conn.execute(
                text(
                    "INSERT INTO etlnorm.ontology (name, release, source, n_terms, n_obsolete, n_synonyms, n_alt_ids)"
                    " VALUES (:name, :release, :source, :t, :o, :s, :a)"
                ),
                dict(name=release.name, release=release.release, source=release.source,
                     t=len(release.terms), o=release.n_obsolete, s=len(release.synonyms),
                     a=len(release.alt_ids)),  # fmt: skip
            )
            _copy_rows(conn, release)
            conn.execute(text("UPDATE etlnorm.ontology SET fingerprint = etlnorm.content_fingerprint(:n) WHERE name = :n"),
                         {"n": release.name})  # fmt: skip
    except (DBAPIError, psycopg.Error) as exc:
        orig = getattr(exc, "orig", None) or exc
        reason = str(orig).strip().splitlines()[0]
        raise OntologyError(f"loading {release.name} failed, previous release kept: {reason}") from exc
    loaded = list_ontologies(engine, release.name)[0]
    log.debug("loaded %s release %s from %s: %d terms", loaded.name, loaded.release, loaded.source, loaded.n_terms)
    return loaded


def _copy_rows(conn: Connection, release: Release) -> None:
    name = release.name
    with raw(conn).cursor() as cur:
        with cur.copy(
            "COPY etlnorm.term (ontology, id, label, namespace, obsolete, replaced_by, consider, accession, definition)"
            " FROM STDIN"
        ) as copy:
            for t in release.terms:
                copy.write_row((name, t.id, t.label, t.namespace, t.obsolete, t.replaced_by, list(t.consider),
                                t.accession, t.definition))  # fmt: skip
        with cur.copy("COPY etlnorm.synonym (ontology, id, text, scope, type) FROM STDIN") as copy:
            for s in release.synonyms:
                copy.write_row((name, s.id, s.text, s.scope, s.type))
        with cur.copy("COPY etlnorm.alt_id (ontology, alt_id, id) FROM STDIN") as copy:
            for alt, current in release.alt_ids:
                copy.write_row((name, alt, current))


def list_ontologies(engine: Engine, name: str | None = None) -> list[LoadedOntology]:
    """Loaded releases, optionally just one."""
    query = ("SELECT name, release, source, loaded_at, n_terms, n_obsolete, n_synonyms, n_alt_ids, fingerprint"
             " FROM etlnorm.ontology")  # fmt: skip
    with engine.connect() as conn:
        if name is None:
            rows = conn.execute(text(query + " ORDER BY name")).all()
        else:
            rows = conn.execute(text(query + " WHERE name = :n"), {"n": name}).all()
    return [LoadedOntology(*row) for row in rows]


def current_release(conn: Connection, name: str) -> str:
    """The loaded release of ``name``; a clear error if it was never loaded."""
    release = conn.execute(text("SELECT release FROM etlnorm.ontology WHERE name = :n"), {"n": name}).scalar()
    if release is None:
        if name not in ONTOLOGIES:
            raise OntologyError(f"unknown ontology {name!r}; known: {', '.join(ONTOLOGIES)}")
        raise OntologyError(f"ontology {name} is not loaded: run `etlnorm ontology load {name}`")
    return release


def loaded_release(engine: Engine, name: str) -> LoadedOntology:
    """The loaded release of ``name`` (label, content fingerprint, counts); a clear error if it was never loaded."""
    found = list_ontologies(engine, name)
    if not found:
        with engine.connect() as conn:
            current_release(conn, name)  # raises the clear error
    return found[0]


def current_fingerprint(conn: Connection, name: str) -> str:
    """The content fingerprint of the loaded release of ``name`` (cache key of everything derived from it)."""
    current_release(conn, name)  # the clear error when it is not loaded
    return str(conn.execute(text("SELECT fingerprint FROM etlnorm.ontology WHERE name = :n"), {"n": name}).scalar())


@dataclass(frozen=True)
class Resolution:
    """What an identifier stands for now."""

    query: str
    ontology: str | None
    id: str | None  # the current ID, None when obsolete without replacement or unknown
    status: str  # current | alt_id | replaced | obsolete | unknown
    label: str | None = None
    consider: tuple[str, ...] = ()


_TERM = "SELECT ontology, id, label, obsolete, replaced_by, consider FROM etlnorm.term"
_IN_SCOPE = " AND (CAST(:o AS text) IS NULL OR ontology = :o)"
_BY_ID = text(_TERM + " WHERE id = :i" + _IN_SCOPE + " ORDER BY obsolete LIMIT 1")
_BY_ACCESSION = text(_TERM + " WHERE accession = :i" + _IN_SCOPE + " LIMIT 1")
_BY_ALT = text("SELECT ontology, id FROM etlnorm.alt_id WHERE alt_id = :i" + _IN_SCOPE + " LIMIT 1")  # noqa: S608
_EXACT = text(_TERM + " WHERE ontology = :o AND id = :i")


def resolve(engine: Engine, identifier: str, ontology: str | None = None) -> Resolution:
    """Follow alt_ids and replaced_by chains to the current ID."""
    identifier = identifier.strip()
    with engine.connect() as conn:
        return resolve_in(conn, identifier, ontology or _guess_ontology(identifier))


def _guess_ontology(identifier: str) -> str | None:
    for spec in ONTOLOGIES.values():
        if spec.id_prefix and identifier.upper().startswith(spec.id_prefix):
            return spec.name
    return None


def resolve_in(conn: Connection, identifier: str, ontology: str | None) -> Resolution:
    """``resolve`` on an open connection (for callers resolving many IDs)."""
    params = {"i": identifier, "o": ontology}
    status = "current"
    # The ID itself, else an HGNC:nnnn accession, else a retired alternative ID.
    row = conn.execute(_BY_ID, params).first() or conn.execute(_BY_ACCESSION, params).first()
    if row is None:
        alt = conn.execute(_BY_ALT, params).first()
        if alt is not None:
            status = "alt_id"
            row = conn.execute(_EXACT, {"o": alt[0], "i": alt[1]}).first()
    if row is None:
        return Resolution(identifier, ontology, None, "unknown")
    seen: set[str] = set()
    while row.obsolete and row.replaced_by and row.id not in seen:
        seen.add(row.id)
        status = "replaced"
        nxt = conn.execute(_EXACT, {"o": row.ontology, "i": row.replaced_by}).first()
        if nxt is None:
            break
        row = nxt
    if row.obsolete:
        return Resolution(identifier, row.ontology, None, "obsolete", row.label, tuple(row.consider or ()))
    return Resolution(identifier, row.ontology, row.id, status, row.label)


def current_terms(engine: Engine, ontology: str) -> list[tuple[str, str | None]]:
    """(id, label) of every current (non-obsolete) term: what a constrained decoder may emit."""
    with engine.connect() as conn:
        current_release(conn, ontology)
        rows = conn.execute(
            text("SELECT id, label FROM etlnorm.term WHERE ontology = :o AND NOT obsolete ORDER BY id"),
            {"o": ontology},
        ).all()
    return [(r[0], r[1]) for r in rows]


def resolve_many(conn: Connection, identifiers: Collection[str], ontology: str) -> dict[str, Resolution]:
    """``resolve_in`` for many identifiers of one ontology in three set-based queries (the ontology's
    terms once, then the alt IDs asked for), chains followed in memory."""
    wanted = sorted({i.strip() for i in identifiers if i and i.strip()})
    if not wanted:
        return {}
    rows = conn.execute(text(_TERM + " WHERE ontology = :o"), {"o": ontology}).all()
    by_id = {r.id: r for r in rows}
    accession = dict(conn.execute(
        text("SELECT accession, id FROM etlnorm.term WHERE ontology = :o AND accession = ANY(:w)"),
        {"o": ontology, "w": wanted}).all())  # fmt: skip
    alt = dict(conn.execute(text("SELECT alt_id, id FROM etlnorm.alt_id WHERE ontology = :o AND alt_id = ANY(:w)"),
                            {"o": ontology, "w": wanted}).all())  # fmt: skip
    out = {}
    for ident in wanted:
        status = "current"
        row = by_id.get(ident) or by_id.get(accession.get(ident, ""))
        if row is None and ident in alt:
            status, row = "alt_id", by_id.get(alt[ident])
        if row is None:
            out[ident] = Resolution(ident, ontology, None, "unknown")
            continue
        seen: set[str] = set()
        while row.obsolete and row.replaced_by in by_id and row.id not in seen:
            seen.add(row.id)
            status, row = "replaced", by_id[row.replaced_by]
        if row.obsolete:
            out[ident] = Resolution(ident, ontology, None, "obsolete", row.label, tuple(row.consider or ()))
        else:
            out[ident] = Resolution(ident, ontology, row.id, status, row.label)
    return out


def resolve_gold(engine: Engine, ontology: str, gold: Sequence[str | None]) -> tuple[list[str | None], int]:
    """Each gold ID as a current ID (None when blank or unusable), and how many rows needed resolving."""
    with engine.connect() as conn:
        resolved = resolve_many(conn, [g for g in gold if g], ontology)
    found = [resolved[g.strip()] if g and g.strip() else None for g in gold]
    return ([r.id if r else None for r in found],
            sum(1 for r in found if r and r.id is not None and r.status in ("alt_id", "replaced")))  # fmt: skip
