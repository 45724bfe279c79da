"""Training pairs of the gene-symbol generator (``etlnorm finetune --task generate --ontology hgnc``).

Gene symbols are lexicalized IDs: the paper's fine-tuned model generalized to withheld genes there
and nowhere else. The loaded HGNC release already says what each symbol stands for, so the pairs
come from it alone: approved name → symbol, alias symbol → symbol, previous symbol → symbol. A
string owned by two current genes says nothing about either and is left out. The paper's 600
protein-name pairs (``benchmarks/paper/``) may be added; its withheld set never is.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection

from sqlalchemy import Engine, text

from etlnorm.cascade.heldout import string_key
from etlnorm.finetune.data import Pair

KINDS = ("name", "alias_symbol", "previous_symbol")


def release_gene_pairs(engine: Engine, kinds: tuple[str, ...] = KINDS, limit: int | None = None,
                       seed: int = 0, exclude: Collection[str] = ()) -> list[Pair]:  # fmt: skip
    """(string, symbol) pairs of the loaded HGNC release, one per unambiguous string and none spelling
    an ``exclude`` string (evaluation terms); a seeded sample of ``limit`` of them when given."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown gene string kind(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT label, id, 'name' FROM etlnorm.term WHERE ontology = 'hgnc' AND NOT obsolete AND label IS NOT NULL"
            " UNION ALL SELECT s.text, s.id, s.type FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
            " WHERE s.ontology = 'hgnc' AND NOT t.obsolete AND s.type = ANY(:kinds)"),
            {"kinds": [k for k in kinds if k != "name"]}).all()  # fmt: skip
    owners: dict[str, set[str]] = defaultdict(set)
    for string, symbol, kind in rows:
        if kind in kinds:
            owners[string.strip()].add(symbol)
    pairs = [Pair(s, next(iter(ids))) for s, ids in sorted(owners.items()) if s and len(ids) == 1]
    banned = {string_key(t) for t in exclude}
    pairs = [p for p in pairs if p.term != p.id and string_key(p.term) not in banned]
    if limit is not None and limit < len(pairs):
        pairs = random.Random(seed).sample(pairs, limit)
    return pairs
