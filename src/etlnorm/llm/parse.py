"""Unconstrained answers: find an ID in free text, then accept it only if the store resolves it.

A free-running model writes sentences, malformed IDs and IDs that never existed; none of that may
reach the warehouse. An obsolete ID with a replacement, or an alternative ID, is resolved to the
current one; anything else becomes no answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import Engine

from etlnorm.ontology.store import Resolution, resolve_in

_PREFIXED = {
    "hp": re.compile(r"\bHP\s*[:_]\s*(\d{7})\b", re.I),
    "go": re.compile(r"\bGO\s*[:_]\s*(\d{7})\b", re.I),
}
_BARE_NUMBER = re.compile(r"(?<![\d:])(\d{7})(?!\d)")
_HGNC_ACCESSION = re.compile(r"\bHGNC\s*:\s*(\d+)\b", re.I)
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9@.\-]*")
ACCEPTED = ("current", "alt_id", "replaced")


def extract_id(text: str, ontology: str) -> str | None:
    """The first thing in ``text`` shaped like an ID of ``ontology`` (not yet checked to exist)."""
    if ontology in _PREFIXED:
        # With its prefix, else a bare 7-digit number (small models drop the "HP:"); resolution decides.
        match = _PREFIXED[ontology].search(text) or _BARE_NUMBER.search(text)
        return f"{ontology.upper()}:{match.group(1)}" if match else None
    if ontology == "hgnc":
        match = _HGNC_ACCESSION.search(text)
        if match:
            return f"HGNC:{match.group(1)}"
    words = text.strip().split()
    if len(words) != 1:  # a symbol answer is one word; a sentence is not an answer
        return None
    match = _SYMBOL.fullmatch(words[0].strip(".,;:'\"()[]"))
    return match.group(0) if match else None


def resolve_answers(engine: Engine, ontology: str, candidates: Iterable[str | None]) -> dict[str, Resolution]:
    """Each distinct candidate ID resolved in the store: accepted ones carry a current ``id``."""
    out: dict[str, Resolution] = {}
    with engine.connect() as conn:
        for cand in dict.fromkeys(c for c in candidates if c):
            res = resolve_in(conn, cand, ontology)
            if res.id is None and ontology == "hgnc" and cand.upper() != cand:
                res = resolve_in(conn, cand.upper(), ontology)  # symbols are upper case
            out[cand] = res
    return out


def accepted_id(resolution: Resolution | None) -> str | None:
    """The current ID a resolution stands for, None unless it is current, an alt ID or replaced."""
    if resolution is None or resolution.status not in ACCEPTED:
        return None
    return resolution.id
