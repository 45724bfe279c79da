"""SSSOM export of the mapping cache: etlnorm's answers in the bio-ontology community's exchange format.

Each distinct raw term is a literal subject (``subject_type`` rdfs literal, ``subject_label``); the
object is the current ID as a CURIE (HGNC: the accession, ``HGNC:11998``, labelled ``TP53``). Rules:

- ``predicate_id``: ``skos:exactMatch`` for curated terms and terms that spell a label or synonym
  (``exact``, ``synonym``), ``skos:closeMatch`` for every inferred answer (fuzzy, retrieval, LLM, rerankers).
- ``mapping_justification`` (semapv): ``ManualMappingCuration`` for curated terms, ``LexicalMatching`` for exact/synonym,
  ``LexicalSimilarityThresholdMatching`` for fuzzy, ``SemanticSimilarityThresholdMatching`` for
  dense retrieval and the cross-encoder, ``CompositeMatching`` where two methods combine
  (``llm+retrieval``, the LLM reranker), ``UnspecifiedMatching`` for LLM generation (semapv has no
  term for it), with the model named in ``mapping_tool``.
- Abstentions (``none``, ``negated``, ``multiple``, and answers below ``min_confidence``) are
  ``sssom:NoTermFound`` rows with cardinality ``1:0``.

The file is written and can be read back by sssom-py (``sssom.writers.write_table``), never by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg import sql
from sqlalchemy import Engine

from etlnorm import __version__
from etlnorm.db.engine import raw
from etlnorm.errors import EtlnormError
from etlnorm.ontology.registry import spec_for
from etlnorm.ontology.store import current_fingerprint, current_release
from etlnorm.warehouse.catalog import find_table, require_text_column

NO_TERM = "sssom:NoTermFound"
EXACT = {"curated", "exact", "synonym"}
JUSTIFICATION = {
    "curated": "ManualMappingCuration", "exact": "LexicalMatching", "synonym": "LexicalMatching", "fuzzy": "LexicalSimilarityThresholdMatching",
    "retrieval": "SemanticSimilarityThresholdMatching", "crossencoder": "SemanticSimilarityThresholdMatching",
    "llm+retrieval": "CompositeMatching", "rerank": "CompositeMatching", "llm": "UnspecifiedMatching",
    "negated": "LexicalMatching", "multiple": "LexicalMatching", "none": "SemanticSimilarityThresholdMatching",
}  # fmt: skip
PREFIXES = {
    "semapv": "https://w3id.org/semapv/vocab/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "sssom": "https://w3id.org/sssom/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
}


def cached_mappings(engine: Engine, ontology: str, table: str | None = None, column: str | None = None
                    ) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """(release, cached answers computed on the current release's content), all of them or those of the distinct terms
    of ``table.column`` (looked up in the catalog, quoted)."""
    if (table is None) != (column is None):
        raise EtlnormError("give --table and --column together, or neither")
    with engine.connect() as conn:
        release, content = current_release(conn, ontology), current_fingerprint(conn, ontology)
        scope = sql.SQL("")
        if table is not None:
            found = find_table(conn, table)
            require_text_column(found, column)  # type: ignore[arg-type]
            scope = sql.SQL(" WHERE md5(u.term)::uuid IN (SELECT DISTINCT md5(s.{col})::uuid FROM {tbl} s)").format(
                col=sql.Identifier(column), tbl=found.ident  # type: ignore[arg-type]
            )
        # A standing curation replaces the term's cached answer (and counts before the next run).
        query = sql.SQL(
            "WITH cur AS (SELECT k.term, k.id, l.label, 1.0::real AS confidence,"
            "   CASE WHEN k.id IS NULL THEN 'none' ELSE 'curated' END AS method,"
            "   'curated by ' || k.curator AS model, k.at AS created_at"
            "   FROM etlnorm.curated k LEFT JOIN etlnorm.term l ON l.ontology = k.ontology AND l.id = k.id"
            "   WHERE k.ontology = %(o)s),"
            " auto AS (SELECT m.term, m.id, m.label, m.confidence, m.method, m.model, m.created_at"
            "   FROM etlnorm.mapping m WHERE m.ontology = %(o)s AND m.fingerprint = %(fp)s AND m.method <> 'empty'"
            "   AND NOT EXISTS (SELECT 1 FROM cur WHERE cur.term = m.term))"
            " SELECT u.term, u.id, u.label, u.confidence, u.method, u.model, u.created_at::date AS created_at,"
            "   t.accession FROM (SELECT * FROM cur UNION ALL SELECT * FROM auto) u"
            " LEFT JOIN etlnorm.term t ON t.ontology = %(o)s AND t.id = u.id{scope} ORDER BY u.term"
        ).format(scope=scope)
        cursor = raw(conn).execute(query, {"o": ontology, "fp": content})
        names = [d.name for d in cursor.description]
        return release, [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def sssom_rows(ontology: str, release: str, mappings: list[dict[str, Any]], min_confidence: float | None = None
               ) -> list[dict[str, Any]]:  # fmt: skip
    """One SSSOM row per cached answer, by the rules above."""
    rows = []
    for m in mappings:
        found = m["id"] is not None and (min_confidence is None or (m["confidence"] or 0.0) >= min_confidence)
        method = m["method"] if found or m["id"] is None else "none"
        row = {
            "subject_label": m["term"], "subject_type": "rdfs literal",
            "predicate_id": "skos:exactMatch" if method in EXACT else "skos:closeMatch",
            "object_id": curie(ontology, m["id"], m["accession"]) if found else NO_TERM,
            "object_label": m["label"] if found else None,
            "mapping_justification": "semapv:" + JUSTIFICATION.get(method, "UnspecifiedMatching"),
            "confidence": round(float(m["confidence"] or 0.0), 6),
            "mapping_tool": f"etlnorm {__version__} ({m['model']})" if m["model"] else f"etlnorm {__version__}",
            "object_source_version": release, "mapping_date": m["created_at"].isoformat(),
            "comment": f"etlnorm method: {m['method']}",
        }  # fmt: skip
        rows.append(row)
    subjects: dict[str, int] = {}
    for row in rows:
        subjects[row["object_id"]] = subjects.get(row["object_id"], 0) + 1
    for row in rows:
        row["mapping_cardinality"] = "1:0" if row["object_id"] == NO_TERM else (
            "n:1" if subjects[row["object_id"]] > 1 else "1:1")  # fmt: skip
    return rows


def curie(ontology: str, ident: str, accession: str | None) -> str:
    """The object's CURIE: the ID itself (HP:…, GO:…), or the accession where IDs are symbols."""
    prefix = spec_for(ontology).curie[0]
    value = accession or ident
    return value if value.startswith(prefix + ":") else f"{prefix}:{value}"


def write_sssom(path: Path, ontology: str, release: str, rows: list[dict[str, Any]],
                license_url: str | None = None) -> int:  # fmt: skip
    """Write ``rows`` as an SSSOM/TSV mapping set with sssom-py; returns the number of rows."""
    import curies
    import pandas as pd
    from sssom.util import MappingSetDataFrame
    from sssom.writers import write_table

    spec = spec_for(ontology)
    prefix, base = spec.curie
    converter = curies.Converter.from_prefix_map({prefix: base, **PREFIXES})
    metadata: dict[str, Any] = {
        "mapping_set_id": f"urn:etlnorm:{ontology}:{release}",
        "mapping_set_title": f"etlnorm mappings of raw terms to {spec.title}",
        "mapping_set_version": release,
        "object_source": spec.official_url,
    }
    if license_url:
        metadata["license"] = license_url
    msdf = MappingSetDataFrame.with_converter(df=pd.DataFrame(rows), converter=converter, metadata=metadata)
    try:
        with path.open("w", encoding="utf-8") as handle:
            write_table(msdf, handle)
    except OSError as exc:
        raise EtlnormError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return len(rows)
