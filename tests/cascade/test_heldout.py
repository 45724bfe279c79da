"""Held-out splits on the real HPO (2025-01-16) and GO (2021-12-15) releases: sizes, disjointness, seeds.

Counts measured with the pinned releases (seed 13, fraction 0.2) are in the comments; the asserts
leave some room so a loader change that shifts a few strings does not break them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from etlnorm.cascade.heldout import PROTOCOLS, HeldOut, disjoint, heldout_split, string_key
from etlnorm.cascade.textnorm import word_key

GO_PROTOCOLS = ("synonym", "concept", "typo")  # GO has no layperson synonyms


def osa_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, transpose adjacent) from a to b."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def same(value: str) -> str:
    """Case- and space-insensitive, computed here rather than trusted from the module."""
    return " ".join(value.lower().split())


@pytest.fixture(scope="module")
def hp_splits(engine, hp) -> dict[str, HeldOut]:
    return {p: heldout_split(engine, "hp", p) for p in PROTOCOLS}


@pytest.fixture(scope="module")
def go_splits(engine, go) -> dict[str, HeldOut]:
    return {p: heldout_split(engine, "go", p) for p in GO_PROTOCOLS}


@pytest.fixture(scope="module")
def store(engine, hp, go):
    """Per ontology: labels of current terms, their synonyms (id, text, scope, type), obsolete IDs."""
    out = {}
    with engine.connect() as conn:
        for name in ("hp", "go"):
            labels = dict(conn.execute(text("SELECT id, label FROM etlnorm.term WHERE ontology = :o AND NOT obsolete"),
                                       {"o": name}).all())  # fmt: skip
            synonyms = conn.execute(
                text("SELECT s.id, s.text, s.scope, s.type FROM etlnorm.synonym s JOIN etlnorm.term t"
                     " USING (ontology, id) WHERE s.ontology = :o AND NOT t.obsolete"), {"o": name}
            ).all()  # fmt: skip
            obsolete = {r[0] for r in conn.execute(text("SELECT id FROM etlnorm.term WHERE ontology = :o AND obsolete"),
                                                  {"o": name})}  # fmt: skip
            out[name] = (labels, synonyms, obsolete)
    return out


def _print(split: HeldOut) -> None:
    print(
        f"\n{split.ontology} {split.name}: train {len(split.train)}, test {len(split.test)}, {split.counts}"
    )


def _every_split(hp_splits, go_splits) -> list[tuple[str, HeldOut]]:
    return [(f"{s.ontology}/{s.name}", s) for s in (*hp_splits.values(), *go_splits.values())]


def test_no_test_query_is_a_train_string_in_any_protocol(hp_splits, go_splits):
    for name, split in _every_split(hp_splits, go_splits):
        _print(split)
        train = {same(s) for _, s in split.train}
        leaks = [q for q, _ in split.test if same(q) in train]
        assert not leaks, (name, leaks[:5])
        assert disjoint(split)
        assert split.test and len({same(q) for q, _ in split.test}) == len(split.test)  # one gold per query


def test_gold_ids_and_train_ids_are_current(hp_splits, go_splits, store):
    for name, split in _every_split(hp_splits, go_splits):
        labels, _, obsolete = store[split.ontology]
        assert {gold for _, gold in split.test} <= set(labels), name
        assert not {gold for _, gold in split.test} & obsolete
        assert {i for i, _ in split.train} <= set(labels)
        assert set(labels.items()) <= set(split.train), name  # every current label stays in train


def test_synonym_split_sizes(hp_splits, go_splits, store):
    # hp: 21,072 distinct EXACT synonyms of current terms, 4,214 held out (20 %); 213 dropped because the
    # string is the term's own label (case only): 4,001 scored (19.0 %); train 37,494 strings.
    # go: 69,573 eligible, 13,915 held out, 47 dropped (2 own label): 13,868 scored; train 148,480.
    for split, lo in ((hp_splits["synonym"], 20_000), (go_splits["synonym"], 65_000)):
        c = split.counts
        _print(split)
        assert c["eligible"] > lo and c["held_out"] == round(0.2 * c["eligible"])
        assert 0.18 * c["eligible"] < len(split.test) <= c["held_out"]
        assert c["test"] == c["held_out"] - c["dropped_in_train"] - c["dropped_ambiguous"]
        labels, synonyms, _ = store[split.ontology]
        # the held-out strings are all gone from train; all other synonyms stay
        held = {(gold, same(q)) for q, gold in split.test}
        assert not {(i, same(s)) for i, s in split.train} & held
        kept = {(i, s) for i, s, _, _ in synonyms if (i, same(s)) not in held}
        missing = {(i, same(s)) for i, s in kept - set(split.train)}
        assert len(missing) <= c["held_out"] - c["test"]  # only the strings of dropped candidates
    assert 4_000 <= len(hp_splits["synonym"].test) <= 4_100
    assert 13_800 <= len(go_splits["synonym"].test) <= 13_950


def test_concept_split_keeps_only_the_label_of_held_out_concepts(hp_splits, go_splits, store):
    # hp: 10,464 current concepts with an EXACT synonym, 2,093 held out (4,671 synonym rows removed);
    # 4,243 distinct EXACT synonyms, 215 equal to their own label: 4,027 scored; train 37,042.
    # go: 21,984 concepts, 4,397 held out (20,123 synonym rows); 13,800 scored; train 142,271.
    for split in (hp_splits["concept"], go_splits["concept"]):
        c = split.counts
        _print(split)
        assert c["held_out"] == round(0.2 * c["eligible"])
        labels, synonyms, _ = store[split.ontology]
        gold_ids = {gold for _, gold in split.test}
        by_id: dict[str, set[str]] = {}
        for i, s in split.train:
            by_id.setdefault(i, set()).add(s)
        for gold in gold_ids:
            assert by_id[gold] == {labels[gold]}, gold
        exact = {(i, same(s)) for i, s, scope, _ in synonyms if scope == "EXACT"}
        assert all((gold, same(q)) in exact for q, gold in split.test)
        assert len(gold_ids) > 0.8 * c["held_out"]
    assert 3_900 <= len(hp_splits["concept"].test) <= 4_150
    assert 13_500 <= len(go_splits["concept"].test) <= 14_000


def test_layperson_queries_are_hpo_layperson_synonyms_none_in_train(hp_splits, store):
    # hp: 8,093 distinct layperson strings (all scopes) held out, 7,164 of them EXACT; 999 equal their
    # own label: 6,165 scored; train 34,403 (= 41,498 strings of the full index minus the layperson ones).
    split = hp_splits["layperson"]
    _print(split)
    labels, synonyms, _ = store["hp"]
    lay_exact = {(i, s) for i, s, scope, kind in synonyms if kind == "layperson" and scope == "EXACT"}
    assert all((gold, q) in lay_exact for q, gold in split.test)
    lay = {(i, same(s)) for i, s, _, kind in synonyms if kind == "layperson"}
    in_train = [(i, s) for i, s in split.train if (i, same(s)) in lay]
    assert all(labels[i] == s for i, s in in_train)  # only labels that a layperson synonym repeats
    assert 6_000 <= len(split.test) <= 6_300 and split.counts["eligible"] == len(lay_exact)


def test_typo_split(hp_splits, go_splits, store):
    # hp and go: 2,000 labels misspelt, none colliding with a known string; train is the whole index
    # (hp 41,498 strings, the "all" variant; go 162,393).
    for split in (hp_splits["typo"], go_splits["typo"]):
        _print(split)
        labels, synonyms, _ = store[split.ontology]
        assert len(split.test) == 2000 and len({gold for _, gold in split.test}) == 2000
        assert set(split.train) == set(labels.items()) | {(i, s) for i, s, _, _ in synonyms}
        for query, gold in split.test:
            assert osa_distance(labels[gold], query) == 1, (query, labels[gold])


def test_same_seed_same_split_other_seed_other_split(engine, hp, hp_splits):
    for protocol in ("synonym", "concept", "typo"):
        again = heldout_split(engine, "hp", protocol, seed=13)
        assert again == hp_splits[protocol]
        other = heldout_split(engine, "hp", protocol, seed=14)
        assert other.seed == 14 and set(other.test) != set(again.test)
        overlap = len(set(other.test) & set(again.test)) / len(again.test)
        assert overlap < 0.4, (protocol, overlap)  # 20 % samples: about a fifth in common
    # layperson holds out every layperson synonym: the seed cannot change it
    assert heldout_split(engine, "hp", "layperson", seed=14).test == hp_splits["layperson"].test


def test_fraction_and_stricter_key(engine, hp):
    half = heldout_split(engine, "hp", "synonym", fraction=0.5)
    assert half.counts["held_out"] == round(0.5 * half.counts["eligible"])
    # With the lexical tier's key, plural and punctuation variants of train strings are dropped too:
    # hp 4,001 → 3,884 queries (210 of the 4,001 matched a train string that way); go 13,868 → 11,807.
    strict = heldout_split(engine, "hp", "synonym", key=word_key)
    assert strict.counts["test_lexical_matches"] == 0 and disjoint(strict, word_key) and disjoint(strict)
    assert 3_800 <= len(strict.test) <= 4_000
    few = heldout_split(engine, "hp", "typo", n_typos=50)
    assert len(few.test) == 50 and disjoint(few, string_key)


def test_bad_arguments(engine, hp, go):
    with pytest.raises(ValueError, match="unknown protocol"):
        heldout_split(engine, "hp", "vibes")
    with pytest.raises(ValueError, match="fraction"):
        heldout_split(engine, "hp", "synonym", fraction=1.5)
    with pytest.raises(ValueError, match="no layperson"):
        heldout_split(engine, "go", "layperson")
