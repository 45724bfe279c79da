"""HGNC gene table (TSV) to a Release whose identifiers are approved symbols.

Reads both shapes HGNC publishes: the complete set (``hgnc_id``, ``symbol``, ``prev_symbol`` ...,
lists joined by ``|``) and the custom download (``HGNC ID``, ``Approved symbol``, ``Previous
symbols`` ..., lists joined by ``, ``). Withdrawn entries become obsolete terms; "symbol withdrawn,
see [HGNC:n]" names the successor.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import polars as pl

from etlnorm.errors import OntologyError
from etlnorm.ontology.release import Release, Synonym, Term

COLUMNS = {
    "hgnc_id": ("hgnc_id", "HGNC ID"),
    "symbol": ("symbol", "Approved symbol"),
    "name": ("name", "Approved name"),
    "status": ("status", "Status"),
    "locus_type": ("locus_type", "Locus type"),
    "alias_symbol": ("alias_symbol", "Alias symbols"),
    "prev_symbol": ("prev_symbol", "Previous symbols"),
    "alias_name": ("alias_name", "Alias names"),
    "prev_name": ("prev_name", "Previous name", "Previous names"),
}
REQUIRED = ("hgnc_id", "symbol", "name", "status")
# (column, scope, type): the strings a gene is known by besides its approved name.
STRINGS = (
    ("symbol", "EXACT", "approved_symbol"),
    ("alias_symbol", "EXACT", "alias_symbol"),
    ("alias_name", "EXACT", "alias_name"),
    ("prev_symbol", "RELATED", "previous_symbol"),
    ("prev_name", "RELATED", "previous_name"),
)
_HGNC_ID = re.compile(r"HGNC:\d+")
_LINK = re.compile(r"\[(HGNC:\d+)\]\([^)]*\)")


def split_values(value: str | None) -> list[str]:
    """One cell to its values: ``a|b``, ``a, b`` or ``"x, y", "z"``."""
    if not value:
        return []
    if '"' in value:
        return [v for v in re.findall(r'"([^"]*)"', value) if v.strip()]
    sep = "|" if "|" in value else ", "
    return [v.strip() for v in value.split(sep) if v.strip()]


def _columns(frame: pl.DataFrame, path: Path) -> dict[str, str]:
    found = {}
    for key, names in COLUMNS.items():
        match = next((n for n in names if n in frame.columns), None)
        if match:
            found[key] = match
    missing = [k for k in REQUIRED if k not in found]
    if missing:
        raise OntologyError(f"{path} is not an HGNC table: no column for {', '.join(missing)}")
    return found


def read_hgnc(path: Path, source: str) -> Release:
    """Parse the TSV; the release is the file's content hash (HGNC files carry no version)."""
    data = path.read_bytes()
    try:
        frame = pl.read_csv(data, separator="\t", infer_schema=False, quote_char=None)
    except pl.exceptions.PolarsError as exc:
        raise OntologyError(f"cannot parse HGNC table {path}: {exc}".splitlines()[0]) from exc
    cols = _columns(frame, path)
    frame = frame.select([pl.col(c).alias(k) for k, c in cols.items()])
    # Approved rows first, so a symbol reused after withdrawal keeps its approved entry.
    frame = frame.with_columns(withdrawn=pl.col("status").str.contains("(?i)withdrawn")).sort("withdrawn")
    rows = frame.to_dicts()
    symbol_of = {r["hgnc_id"]: r["symbol"] for r in rows if r["hgnc_id"] and r["symbol"]}

    release = Release("hgnc", "sha256:" + hashlib.sha256(data).hexdigest()[:12], source)
    seen: set[str] = set()
    prev_owners: Counter[str] = Counter()
    for row in rows:
        symbol = row["symbol"]
        if not symbol or symbol in seen:
            continue
        seen.add(symbol)
        name = _LINK.sub(r"\1", row["name"] or "") or None
        successors: list[str] = []
        if row["withdrawn"]:
            successors = list(dict.fromkeys(symbol_of[i] for i in _HGNC_ID.findall(name or "") if i in symbol_of))
        release.terms.append(
            Term(
                id=symbol,
                label=name,
                namespace=row.get("locus_type"),
                obsolete=row["withdrawn"],
                replaced_by=successors[0] if len(successors) == 1 else None,
                consider=tuple(successors) if len(successors) > 1 else (),
                accession=row["hgnc_id"],
            )
        )
        if row["withdrawn"]:
            continue
        for column, scope, kind in STRINGS:
            for value in split_values(row.get(column)) if column != "symbol" else [symbol]:
                release.synonyms.append(Synonym(symbol, value, scope, kind))
        prev_owners.update(split_values(row.get("prev_symbol")))
    # A previous symbol names its gene unambiguously only if one gene claims it and it is no term itself.
    release.alt_ids = [
        (s.text, s.id)
        for s in release.synonyms
        if s.type == "previous_symbol" and prev_owners[s.text] == 1 and s.text not in seen
    ]
    if not release.terms:
        raise OntologyError(f"{path} holds no HGNC entries")
    return release
