"""The tier contract: each tier gets exactly the items it acts on, so an answer never depends on its batch.

Every route in use runs on 50 mixed real terms (labels, synonyms, typos, phrases, protein names,
junk) in one batch and on each term alone; id, method and confidence must agree (1e-6).
"""

from __future__ import annotations

import random

import polars as pl
import pytest
from sqlalchemy import text

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.tier import ActsOn, LazyTier, run_tier
from etlnorm.config import Settings, load_settings
from etlnorm.finetune.paperdata import paper_data_dir

ODD = ["", None, "🙂🧬", "x" * 3000, "asdkjh qwe"]


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, max(2, len(word) - 1))
    return word[:i] + word[i + 1 :]  # one letter dropped


def mixed_terms(engine, ontology: str, n: int = 50, seed: int = 11) -> list[str | None]:
    """Labels, EXACT synonyms, typos and phrasings of real strings (+ protein names for genes), and odd input."""
    rng = random.Random(seed)
    with engine.connect() as conn:
        labels = sorted(conn.execute(text("SELECT label FROM etlnorm.term WHERE ontology = :o AND NOT obsolete"
                                          " AND length(label) BETWEEN 8 AND 50"), {"o": ontology}).scalars())  # fmt: skip
        synonyms = sorted(conn.execute(text("SELECT text FROM etlnorm.synonym WHERE ontology = :o AND scope = 'EXACT'"
                                            " AND length(text) BETWEEN 8 AND 50"), {"o": ontology}).scalars())  # fmt: skip
    picked = rng.sample(labels, 12) + rng.sample(synonyms, 8)
    picked += [_typo(s, rng) for s in rng.sample(labels, 10)]
    picked += [f"history of {s.lower()}" for s in rng.sample(labels, 5)]
    if ontology == "hgnc":
        proteins = pl.read_csv(paper_data_dir() / "gene_withheld_600.csv", infer_schema=False)["protein_name"]
        picked += [p.strip() for p in proteins.to_list()[:10]]
    else:
        picked += [" ".join(reversed(s.split())) for s in rng.sample(labels, 10)]
    return (picked + ODD)[:n]


def _same(batch: list[Answer], alone: list[Answer]) -> None:
    for together, single in zip(batch, alone, strict=True):
        assert (together.id, together.method) == (single.id, single.method), (together, single)
        assert together.confidence == pytest.approx(single.confidence, abs=1e-6), (together, single)


ROUTES = [  # (ontology, route or None for the shipped default, index variant); hp as shipped: the full index
    ("hp", None, "all"),
    ("go", None, "labels"),
    ("hgnc", None, "labels"),
    ("hp", ["lexical", "retrieval", "rerank"], "labels"),
]


@pytest.mark.parametrize(("ontology", "route", "variant"), ROUTES, ids=["hp", "go", "hgnc", "hp-rerank"])
def test_answer_is_the_same_alone_and_in_a_batch(request, engine, smollm, ontology, route, variant):
    request.getfixturevalue(ontology)
    defaults = Settings.model_fields["routing"].default_factory()  # the shipped routes, not the tests' override
    settings = load_settings().model_copy(update={"routing": defaults})
    normalizer = Normalizer(ontology, engine, settings, variant=variant, route=route, lm=smollm)
    assert normalizer.route == (route or defaults[ontology])
    assert settings.min_confidence == Settings.model_fields["min_confidence"].default  # the shipped threshold
    terms = mixed_terms(engine, ontology)
    assert len(terms) == 50
    batch = normalizer.normalize(terms)
    alone = [normalizer.normalize([t])[0] for t in terms]
    _same(batch, alone)
    methods = {a.method for a in batch}
    print(ontology, normalizer.route, {m: sum(a.method == m for a in batch) for m in sorted(methods)})
    later = set(normalizer.route) - {"lexical"}
    assert methods & {"retrieval", "none", "llm", "llm+retrieval", "rerank"}, "no term reached a later tier"
    if "rerank" in later:
        # Reranked answers below the shipped threshold are written as none, their candidates kept.
        assert "rerank" in methods or any(len(a.candidates) > 1 for a in batch if a.method in ("retrieval", "none"))


class Records:
    """A tier that records what it was given."""

    def __init__(self, name: str, acts_on: ActsOn) -> None:
        self.name, self.acts_on, self.seen = name, acts_on, []

    def __call__(self, items: list[WorkItem]) -> None:
        self.seen.extend(item.key for item in items)


def _items() -> list[WorkItem]:
    decided = WorkItem("a", "a", Answer("a", "X:1", "a", 0.9, "retrieval"), [])
    by_llm = WorkItem("b", "b", Answer("b", "X:2", "b", 0.5, "llm"), [])
    open_with = WorkItem("c", "c", None, [Candidate("X:3", "c", 0.2)])
    return [decided, by_llm, open_with, WorkItem("d", "d")]


def test_run_tier_selects_exactly_the_declared_items():
    cases = {
        ActsOn(): ["c", "d"],
        ActsOn(decided_by=frozenset({"llm"})): ["b", "c", "d"],
        ActsOn(decided_by=frozenset({"retrieval"}), needs_candidates=True): ["c"],
        ActsOn(undecided=False, decided_by=frozenset({"retrieval", "llm"})): ["a", "b"],
    }
    for acts_on, expected in cases.items():
        tier = Records("records", acts_on)
        run_tier(tier, _items())
        assert tier.seen == expected, acts_on
    everything_decided = [it for it in _items() if it.decision is not None]
    confirm = Records("confirm", ActsOn(decided_by=frozenset({"llm"})))
    run_tier(confirm, everything_decided)  # the old bug: skipped whenever no item was undecided
    assert confirm.seen == ["b"]


def test_a_tier_that_cannot_load_fails_once_with_one_log_line(caplog):
    builds = []

    def broken():
        builds.append(1)
        raise OSError("model file missing")

    tier = LazyTier("retrieval", ActsOn(), broken)
    with caplog.at_level("ERROR"):
        for _ in range(3):
            run_tier(tier, [WorkItem(k, k) for k in "xyz"])
    assert builds == [1] and tier.failed == "OSError: model file missing"
    lines = [r for r in caplog.records if "could not load" in r.getMessage()]
    assert len(lines) == 1 and "switched off" in lines[0].getMessage()
