"""The lexical tier on the real HPO and HGNC: labels, EXACT synonyms, variants, ranks, ambiguity, symbols."""

from __future__ import annotations

import pytest

from etlnorm.cascade.answer import WorkItem
from etlnorm.cascade.lexical import BASE_CONFIDENCE, EXACT, LABEL, READING_FACTOR, LexicalTier, load_lexicon


def decide(step: LexicalTier, *terms: str) -> list:
    items = [WorkItem(t, t) for t in terms]
    step(items)
    return [item.decision for item in items]


@pytest.fixture(scope="module")
def hp_step(engine, hp) -> LexicalTier:
    return LexicalTier(load_lexicon(engine, "hp"))


@pytest.fixture(scope="module")
def hgnc_step(engine, hgnc) -> LexicalTier:
    return LexicalTier(load_lexicon(engine, "hgnc"))


@pytest.mark.parametrize(
    ("term", "expected", "method"),
    [
        ("Seizure", "HP:0001250", "exact"),  # the label
        ("Seizures", "HP:0001250", "exact"),  # plural of the label (also an EXACT synonym: the label wins)
        ("SEIZURES!!", "HP:0001250", "exact"),
        ("seizure.", "HP:0001250", "exact"),
        ("Epileptic seizure", "HP:0001250", "synonym"),  # EXACT synonym
        ("epileptic-seizures", "HP:0001250", "synonym"),
        ("Low-set ears", "HP:0000369", "exact"),
        ("low set ears", "HP:0000369", "exact"),
        ("LOW SET EAR", "HP:0000369", "exact"),
        ("Melotia", "HP:0000369", "synonym"),
        ("low-set pinnae", "HP:0000369", "synonym"),
    ],
)
def test_hp_labels_synonyms_and_variants(hp_step, term, expected, method):
    (decision,) = decide(hp_step, term)
    assert decision is not None, term
    assert (decision.id, decision.method) == (expected, method)
    assert decision.confidence == BASE_CONFIDENCE[LABEL if method == "exact" else EXACT]
    assert decision.candidates[0].id == expected


def test_unknown_string_is_left_for_later_tiers(hp_step):
    assert decide(hp_step, "wobbly walking gait", "qwertyuiop") == [None, None]


def test_label_outranks_exact_synonym(hp_step):
    """Where one key is a label of one term and an EXACT synonym of another, the label's term wins."""
    lexicon = hp_step.lexicon
    clashes = [
        (key, entries) for key, entries in lexicon.words.items()
        if {e.rank for e in entries} >= {LABEL, EXACT} and len({e.id for e in entries if e.rank == LABEL}) == 1
        and {e.id for e in entries if e.rank == EXACT} - {e.id for e in entries if e.rank == LABEL}
    ]  # fmt: skip
    assert clashes, "HPO has keys that are a label of one term and a synonym of another"
    for key, entries in clashes[:50]:
        (decision,) = decide(hp_step, key)
        label_id = next(e.id for e in entries if e.rank == LABEL)
        assert (decision.id, decision.method) == (label_id, "exact"), key


def test_ambiguous_key_scores_lower(hp_step):
    """A string that is an EXACT synonym of several terms (and no label) has its confidence divided."""
    lexicon = hp_step.lexicon
    shared = [
        (key, ids) for key, entries in lexicon.words.items()
        if min(e.rank for e in entries) == EXACT
        and len(ids := sorted({e.id for e in entries if e.rank == EXACT})) > 1
    ]  # fmt: skip
    assert shared, "HPO has EXACT synonyms shared by several terms"
    for key, ids in shared[:50]:
        (decision,) = decide(hp_step, key)
        assert decision.method == "synonym"
        assert decision.id in ids
        assert decision.confidence == pytest.approx(BASE_CONFIDENCE[EXACT] / len(ids))
        assert {c.id for c in decision.candidates} >= set(ids)


@pytest.mark.parametrize("term", ["TP53", "tp53", "Tp53", "p53"])
def test_gene_symbol_case_rules_hit(hgnc_step, term):
    (decision,) = decide(hgnc_step, term)
    assert decision is not None and decision.id == "TP53", term


@pytest.mark.parametrize(("word", "symbol"), [("was", "WAS"), ("cat", "CAT")])
def test_common_word_is_not_the_gene(hgnc_step, word, symbol):
    (upper,) = decide(hgnc_step, symbol)
    assert upper is not None and upper.id == symbol and upper.method == "exact"
    (lower,) = decide(hgnc_step, word)
    assert lower is None or lower.id != symbol


@pytest.mark.parametrize(
    ("term", "expected", "method"),
    [
        ("history of seizures", "HP:0001250", "exact"),  # a hedge set aside
        ("Seizures (suspected)", "HP:0001250", "exact"),
        ("possible seizure", "HP:0001250", "exact"),
        ("Ears, low-set", "HP:0000369", "exact"),  # an inverted name
        ("Short stature (possible)", "HP:0004322", "exact"),
    ],
)
def test_readings_of_a_term_hit_at_a_lower_score(hp_step, term, expected, method):
    (d,) = decide(hp_step, term)
    assert d is not None and (d.id, d.method) == (expected, method), d
    assert d.term == term and d.confidence == pytest.approx(READING_FACTOR * BASE_CONFIDENCE[LABEL])


@pytest.mark.parametrize("term", ["no seizures", "denies seizures", "absence of seizures", "negative for ataxia",
                                  "Seizures: absent", "patient denies short stature"])  # fmt: skip
def test_negated_terms_get_no_id(hp_step, term):
    (d,) = decide(hp_step, term)
    assert d is not None and (d.id, d.method) == (None, "negated"), d


def test_negation_words_inside_real_labels_are_not_negations(hp_step):
    for label in ("Absent thumb", "Nonprogressive encephalopathy", "Migraine without aura"):
        (d,) = decide(hp_step, label)
        assert d is not None and d.method == "exact" and d.id is not None, (label, d)
    # An HPO synonym that starts with a negation cue is a name, not a denial (seen in `make demo`).
    items = [WorkItem("k", "absence of permanent upper central incisor")]
    hp_step(items)
    assert items[0].decision.id == "HP:0011045" and items[0].decision.method == "synonym"
    assert not items[0].negated


def test_a_negated_term_maps_when_asked(engine, hp):
    (item,) = items = [WorkItem("no seizures", "no seizures")]
    LexicalTier(load_lexicon(engine, "hp"), map_negated=True)(items)
    assert item.negated and item.decision.id == "HP:0001250"  # the normalizer then marks it 'negated'


def test_several_concepts_are_flagged_not_forced_onto_one_id(hp_step):
    for term in ("seizures and ataxia", "Seizures; ataxia", "hypotonia, seizures, ataxia"):
        (d,) = decide(hp_step, term)
        assert d is not None and (d.id, d.method) == (None, "multiple"), (term, d)


def test_an_unmatched_hedged_term_goes_on_as_its_core(hp_step):
    items = [WorkItem("k", "history of fits that come and go")]
    hp_step(items)
    assert items[0].decision is None and items[0].text == "fits that come and go"
