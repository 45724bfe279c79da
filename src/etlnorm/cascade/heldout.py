"""Held-out splits: score only on strings no part of etlnorm was trained or indexed on.

The retrieval index holds every label and synonym, and the encoder may be fine-tuned on them, so
scoring with an ontology's own strings measures recall of what was seen, not normalization. Each
protocol here splits the store of one ontology into ``train`` — the (id, string) pairs fine-tuning
and the retrieval index may see — and ``test`` — (query, gold id) pairs scored — such that no test
query occurs among the train strings of any ID (compared case- and space-insensitively;
``disjoint`` checks it and ``heldout_split`` refuses to return a split that fails it):

* ``synonym`` (synonym-disjoint): a seeded ``fraction`` of the EXACT synonyms of current terms is
  held out, every label and the other synonyms stay in train. The concept is known, its other
  names are seen: does a *new name* of a known concept find it? The closest to a user typing a
  real synonym the ontology happens to list.
* ``concept`` (concept-disjoint): a seeded ``fraction`` of the current concepts that have an EXACT
  synonym lose all their synonyms from train (they keep only their label); their EXACT synonyms are
  scored. Harder: fine-tuning never saw the concept paired with anything but its label, as for
  the many terms of a new release nobody has fine-tuned on.
* ``layperson``: every HPO synonym of type ``layperson`` is held out (not a seeded share: with 80 %
  of them in train the encoder would learn the patient register itself, and layperson synonyms of
  one concept are near-copies of each other, "Repeated bladder infections" / "Repeated urinary
  tract infections"); the EXACT ones are scored. Measures the shift from clinical to patient
  language that real free text brings. ``seed`` and ``fraction`` do not change it.
* ``typo``: ``n_typos`` current labels (a seeded sample), each with one ``variants.typo`` edit;
  train is everything (all labels and synonyms), since the misspelt strings are new. Measures
  robustness to the one-letter slips real tables are full of.

Common to all: only current (non-obsolete) terms give train strings or gold IDs. A held-out string
leaves train whether or not it ends up scored. A query is dropped when its string is among the
train strings (of any ID, its own label included: nothing to learn there) or when, held out for
several IDs, it has no single gold ID. ``counts`` says how many went where.
"""

from __future__ import annotations

import random
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import Engine, text

from etlnorm.cascade.textnorm import word_key
from etlnorm.cascade.variants import same_string, typo, variants
from etlnorm.ontology.store import current_release

PROTOCOLS = ("synonym", "concept", "layperson", "typo")
N_TYPOS = 2000


def string_key(value: str) -> str:
    """Case- and space-insensitive form (NFKC, case-folded, whitespace collapsed): what "the same string" means."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


@dataclass(frozen=True)
class HeldOut:
    """One split: ``train`` (id, string) pairs may be seen, ``test`` (query, gold id) pairs are scored."""

    name: str  # the protocol: synonym, concept, layperson or typo
    train: list[tuple[str, str]]
    test: list[tuple[str, str]]
    seed: int
    ontology: str = ""
    release: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # eligible, held_out, dropped_* ... (see _finish)


class _Synonym(NamedTuple):
    id: str
    text: str
    scope: str
    type: str | None


def _load(engine: Engine, ontology: str) -> tuple[str, dict[str, str], list[_Synonym]]:
    """The release, the labels of current terms, and their synonyms, sorted here (not by the database's
    collation) so a seed gives the same split on any server."""
    with engine.connect() as conn:
        release = current_release(conn, ontology)
        labels = conn.execute(
            text(
                "SELECT id, label FROM etlnorm.term WHERE ontology = :o AND NOT obsolete AND label IS NOT NULL"
            ),
            {"o": ontology},
        ).all()
        synonyms = conn.execute(
            text(
                "SELECT s.id, s.text, s.scope, s.type FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
                " WHERE s.ontology = :o AND NOT t.obsolete"
            ),
            {"o": ontology},
        ).all()
    syns = sorted((_Synonym(*row) for row in synonyms), key=lambda s: (s.id, s.text, s.scope, s.type or ""))
    return release, dict(sorted((r[0], r[1]) for r in labels)), syns


def _units(synonyms: Iterable[_Synonym], key: Callable[[str], str]) -> dict[tuple[str, str], str]:
    """(id, key) → the first text with that key: one unit per distinct string of a concept, so the
    same string listed twice (EXACT and layperson, "Seizures" and "seizures") is held out as one."""
    units: dict[tuple[str, str], str] = {}
    for s in synonyms:
        units.setdefault((s.id, key(s.text)), s.text)
    return units


def _train(labels: dict[str, str], synonyms: list[_Synonym],
           withheld: Callable[[_Synonym], bool]) -> list[tuple[str, str]]:  # fmt: skip
    """Every current label, and the synonyms not withheld; exact duplicates once, in a fixed order."""
    pairs = list(labels.items()) + [(s.id, s.text) for s in synonyms if not withheld(s)]
    return sorted(set(pairs))


def _finish(name: str, seed: int, ontology: str, release: str, labels: dict[str, str],
            train: list[tuple[str, str]], candidates: list[tuple[str, str]], key: Callable[[str], str],
            counts: dict[str, int]) -> HeldOut:  # fmt: skip
    """Drop candidates found among train strings or without a single gold ID; count what went where."""
    train_keys = {key(s) for _, s in train}
    by_key: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for query, gold in candidates:
        by_key[key(query)].append((query, gold))
    test: list[tuple[str, str]] = []
    in_train = own_label = ambiguous = 0
    for k, found in by_key.items():
        golds = {gold for _, gold in found}
        if k in train_keys:
            in_train += len(found)
            own_label += sum(1 for _, gold in found if key(labels[gold]) == k)
        elif len(golds) > 1:
            ambiguous += len(found)
        else:
            test.append(found[0])
    test.sort(key=lambda pair: (pair[1], pair[0]))
    train_words = {word_key(s) for _, s in train}
    counts |= {
        "candidates": len(candidates),
        "dropped_in_train": in_train,  # the string is a train string of some ID ...
        "dropped_own_label": own_label,  # ... of which: it is its own concept's label
        "dropped_ambiguous": ambiguous,  # held out for several IDs: no single gold
        "test": len(test),
        "train": len(train),
        # Not dropped, reported: queries the lexical tier's key (plurals, punctuation) finds among train strings.
        "test_lexical_matches": sum(1 for q, _ in test if word_key(q) in train_words),
    }
    heldout = HeldOut(name, train, test, seed, ontology, release, counts)
    if not (disjoint(heldout, key) and disjoint(heldout)):
        raise RuntimeError(f"held-out split {name} of {ontology} leaks test queries into train")
    return heldout


def heldout_split(engine: Engine, ontology: str, protocol: str, seed: int = 13, fraction: float = 0.2,
                  n_typos: int = N_TYPOS, key: Callable[[str], str] = string_key) -> HeldOut:  # fmt: skip
    """The ``protocol`` split of the loaded release of ``ontology`` (see the module docstring).

    ``fraction`` is the held-out share for ``synonym`` (of distinct EXACT synonyms) and ``concept``
    (of concepts with an EXACT synonym); ``n_typos`` the size of ``typo``. ``key`` decides when two
    strings are the same: case- and space-insensitive by default (a given ``key`` is applied on top
    of that, never instead); pass ``textnorm.word_key`` to also drop queries that differ from a train
    string only by plural or punctuation, as the lexical tier would find them.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    key = _coarser(key)
    release, labels, synonyms = _load(engine, ontology)
    rng = random.Random(seed)
    if protocol == "synonym":
        units = _units((s for s in synonyms if s.scope == "EXACT"), key)
        held = set(rng.sample(sorted(units), round(fraction * len(units))))
        train = _train(labels, synonyms, lambda s: (s.id, key(s.text)) in held)
        candidates = [(units[u], u[0]) for u in sorted(held)]
        counts = {"eligible": len(units), "held_out": len(held)}
    elif protocol == "concept":
        concepts = sorted({s.id for s in synonyms if s.scope == "EXACT"})
        held_ids = set(rng.sample(concepts, round(fraction * len(concepts))))
        train = _train(labels, synonyms, lambda s: s.id in held_ids)
        units = _units((s for s in synonyms if s.scope == "EXACT" and s.id in held_ids), key)
        candidates = [(t, u[0]) for u, t in units.items()]
        counts = {"eligible": len(concepts), "held_out": len(held_ids),
                  "held_out_synonyms": sum(1 for s in synonyms if s.id in held_ids)}  # fmt: skip
    elif protocol == "layperson":
        lay = _units((s for s in synonyms if s.type == "layperson"), key)
        if not lay:
            raise ValueError(f"{ontology} has no layperson synonyms to hold out")
        # A clinical synonym spelt like a layperson one of the same concept is the same string: it goes too.
        train = _train(labels, synonyms, lambda s: s.type == "layperson" or (s.id, key(s.text)) in lay)
        exact = _units((s for s in synonyms if s.type == "layperson" and s.scope == "EXACT"), key)
        candidates = [(t, u[0]) for u, t in exact.items()]
        counts = {"eligible": len(exact), "held_out": len(lay)}
    else:
        train = _train(labels, synonyms, lambda s: False)
        candidates, counts = _typos(labels, {key(s) for _, s in train}, rng, n_typos, key)
    return _finish(protocol, seed, ontology, release, labels, train, candidates, key, counts)


def _coarser(key: Callable[[str], str]) -> Callable[[str], str]:
    """``key`` after ``string_key``: a caller's key can merge more strings, never tell "A" from "a"."""
    if key is string_key:
        return key
    return lambda value: key(string_key(value))


def _typos(labels: dict[str, str], known: set[str], rng: random.Random, n: int,
           key: Callable[[str], str]) -> tuple[list[tuple[str, str]], dict[str, int]]:  # fmt: skip
    """``n`` (typo, id) pairs from a seeded shuffle of the labels; a slip that makes a known string (or
    one already drawn) is skipped, as is a label with no word of 4 letters to misspell."""
    pool = sorted(labels.items())
    rng.shuffle(pool)
    candidates: list[tuple[str, str]] = []
    drawn: set[str] = set()
    sampled = unchanged = clash = 0
    for gold, label in pool:
        if len(candidates) >= n:
            break
        sampled += 1
        query = typo(label, rng)
        if same_string(query, label):
            unchanged += 1
        elif key(query) in known or key(query) in drawn:
            clash += 1
        else:
            drawn.add(key(query))
            candidates.append((query, gold))
    return candidates, {"eligible": len(labels), "sampled": sampled, "typo_impossible": unchanged,
                        "typo_known_string": clash}  # fmt: skip


def disjoint(heldout: HeldOut, key: Callable[[str], str] = string_key) -> bool:
    """No test query is (case- and space-insensitively, or by ``key``) a train string of any ID."""
    train_keys = {key(s) for _, s in heldout.train}
    return not any(key(query) in train_keys for query, _ in heldout.test)


def calibration_set(engine: Engine, ontology: str, view: Iterable[tuple[str, str]], seed: int = 13,
                    limit: int | None = None, fraction: float = 0.2) -> HeldOut:  # fmt: skip
    """A held-out split *of a normalizer's own view* to calibrate it on: a seeded ``fraction`` of the
    view's EXACT synonyms leaves train (as in ``synonym``), a seeded sample of ``limit`` of them is
    kept, one seeded variant (typo, inversion, hedge, ...) of every other one is added, and one such
    variant of as many labels of the view (the lexical tier's readings, fuzzy's typos: the strings
    are new, as in ``typo``), none of them a train string. Drawn from inside the view, so a
    normalizer that is itself the train part of a held-out protocol is calibrated without ever
    seeing that protocol's test queries. A view with no EXACT synonym at all (the labels-only
    index) holds out a share of the release's."""
    release, labels, synonyms = _load(engine, ontology)
    pairs = set(view)
    exact = [s for s in synonyms if s.scope == "EXACT"]
    inside = [s for s in exact if (s.id, s.text) in pairs and string_key(s.text) != string_key(labels.get(s.id, ""))]
    units = _units(inside or exact, string_key)
    rng = random.Random(seed)
    held = set(rng.sample(sorted(units), round(fraction * len(units))))
    train = sorted(p for p in pairs if (p[0], string_key(p[1])) not in held)
    candidates = [(units[u], u[0]) for u in sorted(held)]
    split = _finish("calibration", seed, ontology, release, labels, train, candidates, string_key,
                    {"eligible": len(units), "held_out": len(held)})  # fmt: skip
    test = split.test if limit is None or limit >= len(split.test) else rng.sample(split.test, limit)
    known = {string_key(s) for _, s in train} | {string_key(q) for q, _ in test}
    pairs_out = list(test)
    for query, gold in test[::2]:
        made = [v for _, v in variants(query, rng) if string_key(v) not in known]
        if made:
            pairs_out.append((rng.choice(made), gold))
    split.counts["variants"] = len(pairs_out) - len(test)
    seen = known | {string_key(q) for q, _ in pairs_out}
    own_labels = sorted((i, t) for i, t in labels.items() if (i, t) in pairs and (i, string_key(t)) not in held)
    rng.shuffle(own_labels)
    made: list[tuple[str, str]] = []
    for ident, label in own_labels:
        if len(made) >= len(test) // 2:
            break
        options = [v for _, v in variants(label, rng) if string_key(v) not in seen]
        if options:
            query = rng.choice(options)
            seen.add(string_key(query))
            made.append((query, ident))
    split.counts["label_variants"] = len(made)
    return HeldOut("calibration", train, pairs_out + made, seed, ontology, release, split.counts)
