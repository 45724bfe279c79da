"""The fuzzy tier on real HPO strings: one edit from one known string decides; ambiguity and numbers never do."""

from __future__ import annotations

import pytest

from etlnorm.cascade.answer import WorkItem
from etlnorm.cascade.fuzzy import FUZZY_FACTOR, FuzzyTier
from etlnorm.cascade.lexical import BASE_CONFIDENCE, LABEL, load_lexicon


@pytest.fixture(scope="module")
def tier(engine, hp) -> FuzzyTier:
    return FuzzyTier(load_lexicon(engine, "hp"))


def _run(tier: FuzzyTier, *terms: str) -> list[WorkItem]:
    items = [WorkItem(t, t) for t in terms]
    tier(items)
    return items


@pytest.mark.parametrize(("term", "expected"), [
    ("Scleirtis", "HP:0100532"),  # transposition
    ("Absent sebaceousg lands", "HP:0410400"),  # a space moved
    ("Macrocephali", "HP:0000256"),  # substitution
    ("Hepatosplenomegally", "HP:0001433"),  # insertion
    ("Brachydactyl", "HP:0001156"),  # deletion
])  # fmt: skip
def test_one_edit_from_one_known_string_decides(tier, term, expected):
    (item,) = _run(tier, term)
    assert item.decision is not None and (item.decision.id, item.decision.method) == (expected, "fuzzy")
    assert item.decision.confidence == pytest.approx(FUZZY_FACTOR * BASE_CONFIDENCE[LABEL])


def test_ambiguous_short_and_numeric_edits_are_left_to_retrieval(tier):
    mocro, short, numbered, far = _run(tier, "Mocrocephaly", "Ataxi", "Type 3 diabetes mellitus", "Sclreitsi")
    assert mocro.decision is None and {c.id for c in mocro.candidates} >= {"HP:0000252", "HP:0000256"}  # micro/macro
    assert short.decision is None and not short.candidates  # under MIN_CHARS: no guess
    assert numbered.decision is None  # "type 1"/"type 2" are other findings, never slips
    assert far.decision is None  # two edits: not this tier's
