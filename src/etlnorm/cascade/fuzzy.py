"""The fuzzy tier: one-edit matches against the lexicon, for the one-letter slips of real tables.

A normalized key ("scleirtis") one edit away (insertion, deletion, substitution or a transposition
of neighbours: optimal string alignment, rapidfuzz's ``OSA``) from exactly one known key
("scleritis") whose strings lead to one ID is decided as ``fuzzy``. Short keys (under
``MIN_CHARS``) and keys with two one-edit neighbours of different IDs ("mocrocephaly": micro- and
macrocephaly) are left to retrieval, with the neighbours as candidates: one edit there is as likely
a different finding as a slip. An edit that changes a number never counts ("type 1" / "type 2").
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import ClassVar

from rapidfuzz import process
from rapidfuzz.distance import OSA

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.lexical import BASE_CONFIDENCE, Lexicon
from etlnorm.cascade.textnorm import word_key
from etlnorm.cascade.tier import ActsOn

MIN_CHARS = 6
DIGITS = re.compile(r"\d+")
FUZZY_FACTOR = 0.85  # a one-edit hit scores this share of the matched string's lexical confidence


class FuzzyTier:
    """Decides undecided items whose key is one edit from exactly one known key of one ID."""

    name = "fuzzy"
    acts_on: ClassVar[ActsOn] = ActsOn()

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self.by_length: dict[int, list[str]] = defaultdict(list)
        for key in sorted(lexicon.words):
            self.by_length[len(key)].append(key)

    def neighbours(self, key: str) -> list[str]:
        """Known keys one edit from ``key`` (compared only with keys of a length one edit can reach)."""
        pool = [k for n in (len(key) - 1, len(key), len(key) + 1) for k in self.by_length.get(n, ())]
        found = process.extract(key, pool, scorer=OSA.distance, score_cutoff=1, limit=None)
        digits = DIGITS.findall(key)
        return [k for k, _, _ in found if DIGITS.findall(k) == digits]  # "p54" is never a slip of "p53"

    def __call__(self, items: list[WorkItem]) -> None:
        for item in items:
            key = word_key(item.text)
            if len(key) < MIN_CHARS:
                continue
            best: dict[str, int] = {}
            for near in self.neighbours(key):
                for entry in self.lexicon.words[near]:
                    best[entry.id] = min(entry.rank, best.get(entry.id, entry.rank))
            if not best:
                continue
            candidates = [Candidate(i, self.lexicon.labels.get(i), FUZZY_FACTOR * BASE_CONFIDENCE[r])
                          for i, r in sorted(best.items(), key=lambda kv: (kv[1], kv[0]))]  # fmt: skip
            item.candidates = candidates
            if len(best) == 1:
                top = candidates[0]
                item.decision = Answer(item.text, top.id, top.label, top.score, "fuzzy", candidates)
