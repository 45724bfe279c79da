"""The lexical tier: normalized-string lookup against every label and synonym in the store.

Ranks: a label (or an approved gene symbol) beats an EXACT synonym, which beats RELATED, BROAD
and NARROW ones and the strings of obsolete terms (which point to their replacement). A key
shared by several IDs at the best rank is ambiguous: its confidence is divided among them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy import Engine, text

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.query import Query, analyze, inversions
from etlnorm.cascade.textnorm import clean, looks_like_symbol, symbol_key, symbol_may_match, word_key
from etlnorm.cascade.tier import ActsOn
from etlnorm.ontology.user_synonyms import user_synonyms

LABEL, EXACT, OTHER = 0, 1, 2
BASE_CONFIDENCE = {LABEL: 1.0, EXACT: 0.95, OTHER: 0.8}
READING_FACTOR = 0.9  # a hit on an inversion or a hedge-free reading, not on the string as written
SYMBOL_TYPES = {"approved_symbol", "alias_symbol", "previous_symbol"}


def dedup_key(term: str, symbols: bool) -> str:
    """The unit of deduplication and caching: symbol-like input keeps its case where case matters."""
    if symbols and looks_like_symbol(term):
        return "sym:" + clean(term)
    return word_key(term)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str  # the current ID the string leads to
    rank: int
    text: str  # as written in the ontology (symbols are matched against it case-aware)


@dataclass
class Lexicon:
    """All strings of one ontology release, keyed two ways."""

    words: dict[str, list[Entry]]
    symbols: dict[str, list[Entry]]
    labels: dict[str, str | None]  # current id -> label
    has_symbols: bool


def load_lexicon(engine: Engine, ontology: str, strings: Sequence[tuple[str, str]] | None = None) -> Lexicon:
    """Read terms and synonyms once; obsolete terms' strings lead to their replacement.

    ``strings``: a view, exactly these (id, string) pairs (a held-out protocol's train part); a
    string equal to its ID's label ranks as the label, any other as an EXACT synonym."""
    with engine.connect() as conn:
        terms = conn.execute(
            text("SELECT id, label, obsolete, replaced_by FROM etlnorm.term WHERE ontology = :o"), {"o": ontology}
        ).all()
        synonyms = conn.execute(
            text("SELECT id, text, scope, type FROM etlnorm.synonym WHERE ontology = :o"), {"o": ontology}
        ).all()
    by_id = {t.id: t for t in terms}
    target = {t.id: current_target(t.id, by_id) for t in terms}
    labels = {t.id: t.label for t in terms if not t.obsolete}
    words: dict[str, list[Entry]] = defaultdict(list)
    symbols: dict[str, list[Entry]] = defaultdict(list)

    def add(term_id: str, string: str | None, rank: int, kind: str | None) -> None:
        goal = target.get(term_id)
        if not goal or not string:
            return
        if by_id[term_id].obsolete:  # its replaced_by chain names one successor: an exact string stays exact
            rank = max(rank, EXACT)
            string = string.removeprefix("obsolete ")
        if kind in SYMBOL_TYPES and looks_like_symbol(string):
            symbols[symbol_key(string)].append(Entry(goal, rank, string))
        elif key := word_key(string):
            words[key].append(Entry(goal, rank, string))

    if strings is not None:
        for ident, string in strings:
            add(ident, string, LABEL if string == labels.get(ident) else EXACT, None)
        return Lexicon(dict(words), dict(symbols), labels, has_symbols=bool(symbols))
    for t in terms:
        add(t.id, t.label, LABEL, None)
    for s in synonyms:
        rank = LABEL if s.type == "approved_symbol" else EXACT if s.scope == "EXACT" else OTHER
        add(s.id, s.text, rank, s.type)
    for u in user_synonyms(engine, ontology):  # IDs already resolved to current ones
        add(u.id, u.text, EXACT if u.scope == "EXACT" else OTHER, None)
    return Lexicon(dict(words), dict(symbols), labels, has_symbols=bool(symbols))


def current_target(term_id: str, by_id: dict) -> str | None:
    """The current ID a term stands for now: itself, or the end of its replaced_by chain."""
    seen = set()
    row = by_id.get(term_id)
    while row is not None and row.obsolete and row.replaced_by and row.id not in seen:
        seen.add(row.id)
        row = by_id.get(row.replaced_by)
    return None if row is None or row.obsolete else row.id


class LexicalTier:
    """Decides undecided items whose normalized string, or a reading of it, is a known label or synonym.

    Each term is read first (``cascade.query``): the string itself, its inversions ("Urticaria,
    Solar"), and the string with hedges and qualifiers set aside ("history of seizures") are tried
    in that order; a hit on anything but the string itself scores ``READING_FACTOR`` lower. With no
    hit, a negated term ("no seizures") is decided as ``negated`` with no ID, unless
    ``map_negated``; a term listing several known concepts ("seizures and ataxia") as ``multiple``,
    with one candidate per concept; any other goes on to later tiers as its core reading, while the
    answer keeps the raw term.
    """

    name = "lexical"
    acts_on: ClassVar[ActsOn] = ActsOn()

    def __init__(self, lexicon: Lexicon, map_negated: bool = False) -> None:
        self.lexicon = lexicon
        self.map_negated = map_negated

    def entries(self, term: str) -> list[Entry]:
        found = list(self.lexicon.words.get(word_key(term), ()))
        if self.lexicon.has_symbols and looks_like_symbol(term):
            found += [e for e in self.lexicon.symbols.get(symbol_key(term), ()) if symbol_may_match(term, e.text)]
        return found

    def __call__(self, items: list[WorkItem]) -> None:
        for item in items:
            if self._decide(item, item.text, 1.0):  # most terms: the string as written, no reading needed
                continue
            query = analyze(item.text)
            as_written = list(query.candidates)  # other spellings of the term; a negated term's keep the cue
            readings = as_written + ([query.core, *inversions(query.core)] if query.negated and self.map_negated else [])
            hit = next((n for n, r in enumerate(readings) if self._decide(item, r, READING_FACTOR)), None)
            if hit is None:
                self._undecided(item, query)
            # A hit on a string that keeps the cue is a real name ("Absence of ..." is how HPO names
            # some findings), not a denial.
            item.negated = query.negated and (hit is None or hit >= len(as_written))

    def _undecided(self, item: WorkItem, query: Query) -> None:
        if query.negated and not self.map_negated:
            item.decision = Answer(item.text, None, None, 0.0, "negated")
        elif query.multiple and (found := self._parts(query.parts)):
            item.candidates = found
            item.decision = Answer(item.text, None, None, 0.0, "multiple", found)
        elif query.core and query.core != item.text:
            item.text = query.core  # what later tiers match; the answer keeps the raw term

    def _parts(self, parts: Sequence[str]) -> list[Candidate]:
        """One candidate per part when every part is itself a known string (else [], one concept after
        all: "fits that come and go" lists nothing)."""
        found = []
        for part in parts:
            entries = sorted(self.entries(part), key=lambda e: (e.rank, e.id))
            if not entries:
                return []
            found.append(Candidate(entries[0].id, self.lexicon.labels.get(entries[0].id), BASE_CONFIDENCE[entries[0].rank]))
        return found

    def _decide(self, item: WorkItem, text: str, factor: float) -> bool:
        best: dict[str, int] = {}
        for entry in self.entries(text):
            best[entry.id] = min(entry.rank, best.get(entry.id, entry.rank))
        if not best:
            return False
        top = min(best.values())
        winners = sorted(i for i, r in best.items() if r == top)
        candidates = [
            Candidate(i, self.lexicon.labels.get(i), factor * BASE_CONFIDENCE[r] / (len(winners) if r == top else 1))
            for i, r in sorted(best.items(), key=lambda kv: (kv[1], kv[0]))
        ]
        winner = winners[0]
        item.candidates = candidates
        item.decision = Answer(item.text, winner, self.lexicon.labels.get(winner),
                               factor * BASE_CONFIDENCE[top] / len(winners),
                               "exact" if top == LABEL else "synonym", candidates)  # fmt: skip
        return True
