"""The search box: an ID typed in, the lexical tier, label substrings and the retrieval tier, merged.

The heavy parts (lexicon, encoder, index) are the process's warm ``get_normalizer``: loaded on the
first search of an ontology, shared with the runs "apply now" starts in this process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine, text

from etlnorm.cascade.lexical import LexicalTier
from etlnorm.cascade.normalizer import Normalizer, get_normalizer
from etlnorm.config import Settings
from etlnorm.ontology.store import resolve

MAX_QUERY = 200
LABEL_HITS = 5


@dataclass(frozen=True)
class Hit:
    """One search result: a current ID, how it was found, and its score there."""

    id: str
    label: str | None
    definition: str | None
    source: str  # id | lexical | label | retrieval
    score: float


class Searcher:
    """Search one ontology at a time; one warm normalizer per ontology, built once under a lock."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine = settings, engine
        self._lock = threading.Lock()

    def normalizer(self, ontology: str) -> Normalizer:
        with self._lock:  # concurrent first searches would each build the index
            return get_normalizer(ontology, settings=self.settings)

    def search(self, ontology: str, query: str, k: int = 8) -> list[Hit]:
        """Up to ``k`` current IDs for ``query``, best sources first, each ID once."""
        query = query.strip()[:MAX_QUERY]
        if len(query) < 2:
            return []
        found: dict[str, tuple[str, float]] = {}
        resolved = resolve(self.engine, query, ontology)
        if resolved.id is not None and resolved.ontology == ontology:
            found[resolved.id] = ("id", 1.0)
        normalizer = self.normalizer(ontology)
        for entry in LexicalTier(normalizer.lexicon).entries(query):
            found.setdefault(entry.id, ("lexical", 1.0))
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.engine.connect() as conn:
            for ident in conn.execute(text("SELECT id FROM etlnorm.term WHERE ontology = :o AND NOT obsolete"
                                           " AND label ILIKE :p ORDER BY length(label), id LIMIT :n"),
                                      {"o": ontology, "p": pattern, "n": LABEL_HITS}).scalars():  # fmt: skip
                found.setdefault(ident, ("label", 1.0))
        for cand in normalizer.search([query], k)[0]:
            found.setdefault(cand.id, ("retrieval", float(cand.score)))
        ids = list(found)[:k]
        with self.engine.connect() as conn:
            info = {i: (label, definition) for i, label, definition in conn.execute(
                text("SELECT id, label, definition FROM etlnorm.term WHERE ontology = :o AND id = ANY(:i)"),
                {"o": ontology, "i": ids}).all()}  # fmt: skip
        return [Hit(i, *info.get(i, (None, None)), *found[i]) for i in ids]
