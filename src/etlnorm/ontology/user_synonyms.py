"""User synonym files: a site's own spellings of ontology terms, kept across releases.

The defaults use the ontology release alone; a user may add (term, id, scope) rows from a TSV. They
live in ``etlnorm.user_synonym`` (not in ``etlnorm.synonym``, which a new release replaces) and are
re-resolved through alt IDs and replacements each time they are read, so a synonym of a term that
was merged into another follows it. A row whose ID no longer resolves is skipped with a warning.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from etlnorm.db.engine import raw
from etlnorm.errors import OntologyError, TableError
from etlnorm.ontology.store import current_release, resolve_many

log = logging.getLogger(__name__)

SCOPES = ("EXACT", "RELATED", "BROAD", "NARROW")
MAX_TERM_CHARS = 1000


@dataclass(frozen=True)
class UserSynonym:
    text: str
    id: str
    scope: str = "EXACT"


def read_synonym_file(path: Path) -> list[UserSynonym]:
    """Rows of a TSV with columns ``term``, ``id`` and optionally ``scope`` (header required)."""
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = {"term", "id"} - set(reader.fieldnames or ())
        if missing:
            raise TableError(f"{path}: needs tab-separated columns term, id (and optionally scope); "
                             f"missing {', '.join(sorted(missing))}")  # fmt: skip
        rows = []
        for n, row in enumerate(reader, start=2):
            term, ident = (row.get("term") or "").strip(), (row.get("id") or "").strip()
            scope = (row.get("scope") or "EXACT").strip().upper()
            if not term or not ident:
                raise TableError(f"{path}:{n}: empty term or id")
            if len(term) > MAX_TERM_CHARS:
                raise TableError(f"{path}:{n}: term longer than {MAX_TERM_CHARS} characters")
            if scope not in SCOPES:
                raise TableError(f"{path}:{n}: scope {scope!r} is not one of {', '.join(SCOPES)}")
            rows.append(UserSynonym(term, ident, scope))
    return rows


def add_user_synonyms(engine: Engine, ontology: str, rows: list[UserSynonym], source: str) -> int:
    """Store ``rows`` (all or nothing): every ID must resolve to a current term of the loaded release."""
    with engine.begin() as conn:
        current_release(conn, ontology)
        resolved = resolve_many(conn, [r.id for r in rows], ontology)
        bad = [r.id for r in rows if resolved[r.id].id is None]
        if bad:
            raise OntologyError(f"{len(bad)} synonym IDs are not current {ontology} terms: {', '.join(sorted(set(bad))[:5])}")
        cur = raw(conn).cursor()
        cur.executemany(
            "INSERT INTO etlnorm.user_synonym (ontology, text, id, scope, source) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (ontology, text, id) DO UPDATE SET scope = EXCLUDED.scope, source = EXCLUDED.source,"
            " added_at = now()",
            [(ontology, r.text, r.id, r.scope, source) for r in rows],
        )
    log.info("%d user synonyms for %s from %s", len(rows), ontology, source)
    return len(rows)


def user_synonyms(engine: Engine, ontology: str) -> list[UserSynonym]:
    """The user synonyms of ``ontology`` with their IDs resolved to current ones now."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT text, id, scope FROM etlnorm.user_synonym WHERE ontology = :o"
                                 " ORDER BY text, id"), {"o": ontology}).all()  # fmt: skip
        resolved = {i: r.id for i, r in resolve_many(conn, [r.id for r in rows], ontology).items()}
    out = []
    for r in rows:
        if resolved[r.id] is None:
            log.warning("user synonym %r -> %s: %s no longer resolves to a current term; skipped",
                        r.text[:80], r.id, ontology)  # fmt: skip
            continue
        out.append(UserSynonym(r.text, resolved[r.id], r.scope))
    return out


def user_synonyms_tag(engine: Engine, ontology: str) -> str:
    """A short content hash of the stored user synonyms ('' when there are none), for cache keys."""
    with engine.connect() as conn:
        digest = conn.execute(text("SELECT md5(string_agg(text || E'\\t' || id || E'\\t' || scope, E'\\n'"
                                   " ORDER BY text, id)) FROM etlnorm.user_synonym WHERE ontology = :o"),
                              {"o": ontology}).scalar()  # fmt: skip
    return hashlib.sha256(digest.encode()).hexdigest()[:10] if digest else ""
