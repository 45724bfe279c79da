"""Train the cross-encoder reranker on the ontology's own pairs, with hard negatives from the index.

Positives are the encoder's pairs (``etlnorm.finetune.encoder.training_pairs``: label ↔ synonym,
synonym ↔ synonym, variant ↔ string). Each query's hard negatives are the best other concepts of
retrieval's own top 20 (the list the tier will re-order), read through the same ``pair_strings``
the tier uses. The model starts from the local MiniLM weights with a fresh one-logit head and
learns with binary cross-entropy (sentence-transformers' CrossEncoderTrainer).

Then the weight of its probability against retrieval's score is fitted on a dev slice: synonyms
of the training part left out of the reranker's pairs *and* of the index that mines the dev
candidates, so the fit sees retrieval as it behaves on unseen strings.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etlnorm.cascade.answer import Candidate
from etlnorm.cascade.crossencoder import (
    METADATA_FILE,
    POOL,
    Reranker,
    combine,
    pair_strings,
    score_candidates,
    strings_by_id,
)
from etlnorm.cascade.encoder import model_path
from etlnorm.cascade.retrieval import View
from etlnorm.errors import EtlnormError
from etlnorm.files import write_json
from etlnorm.finetune.encoder import (
    EncoderConfig,
    Pair,
    TrainingConfig,
    base_metadata,
    digest,
    retrieval_scores,
    trainer_arguments,
    training_pairs,
)

log = logging.getLogger(__name__)

Search = Callable[[list[str], int], list[list[Candidate]]]  # texts, k -> retrieval's candidates
WEIGHTS = tuple(round(w * 0.05, 2) for w in range(21))


@dataclass(frozen=True)
class RerankerConfig(TrainingConfig):
    """Hyper-parameters of one reranker training run."""

    learning_rate: float = 3e-5
    negatives: int = 3  # hard negatives per positive pair
    max_queries: int | None = 20000  # positive pairs trained on (seeded sample): ~80k examples, CPU-sized
    dev_queries: int = 600  # synonyms held out of training to fit the weight
    max_length: int = 64


def dev_split(strings: View, labels: dict[str, str | None], config: RerankerConfig = RerankerConfig()
              ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:  # fmt: skip
    """(train, dev): a seeded sample of ``dev_queries`` synonyms (never a label, never a concept's
    only string) moved out of ``strings`` as (query, gold) pairs."""
    rng = random.Random(config.seed)
    counts: dict[str, int] = {}
    for ident, _ in strings:
        counts[ident] = counts.get(ident, 0) + 1
    eligible = sorted({(i, t) for i, t in strings if t != labels.get(i) and counts[i] > 1})
    chosen = set(rng.sample(eligible, min(config.dev_queries, len(eligible))))
    train = [pair for pair in strings if pair not in chosen]
    return train, [(text, ident) for ident, text in sorted(chosen)]


def hard_examples(pairs: Sequence[Pair], pools: Sequence[Sequence[Candidate]], strings: dict[str, list[str]],
                  negatives: int) -> dict[str, list[Any]]:  # fmt: skip
    """(query, text, label) columns: each pair as a positive, plus its query's best ``negatives``
    other concepts of retrieval's list."""
    columns: dict[str, list[Any]] = {"query": [], "text": [], "label": []}
    for pair, pool in zip(pairs, pools, strict=True):
        rows = [(pair.positive, 1.0)]
        wrong = [c for c in pool if c.id != pair.concept][:negatives]
        rows += [(pair_strings(pair.anchor, strings.get(c.id, []), c.label)[0], 0.0) for c in wrong]
        for text, label in rows:
            columns["query"].append(pair.anchor)
            columns["text"].append(text)
            columns["label"].append(label)
    return columns


def order_scores(reranker: Reranker, queries: Sequence[str], gold: Sequence[str], search: Search,
                 strings: dict[str, list[str]]) -> dict[str, dict[str, float]]:  # fmt: skip
    """acc@1, acc@5, recall@20 of retrieval's order and of the reranked order on the same top 20,
    with the reranker's cost in terms/s."""
    pools = search(list(queries), POOL)
    started = time.perf_counter()
    probs = score_candidates(reranker, queries, pools, strings)
    reranked = [combine(pool, p, reranker.weight) for pool, p in zip(pools, probs, strict=True)]
    rate = round(len(queries) / max(1e-9, time.perf_counter() - started), 1)
    ids = [[[c.id for c in pool] for pool in lists] for lists in (pools, reranked)]
    return {"retrieval": retrieval_scores(queries, gold, ids[0]),
            "reranked": {**retrieval_scores(queries, gold, ids[1]), "terms_per_s": rate}}  # fmt: skip


def fit_weight(reranker: Reranker, dev: Sequence[tuple[str, str]], search: Search,
               strings: dict[str, list[str]]) -> tuple[float, dict[str, float]]:  # fmt: skip
    """The weight of the reranker's probability with the best dev acc@1 (ties: the smaller weight,
    closer to retrieval), and acc@1 at every weight tried."""
    queries, gold = [q for q, _ in dev], [g for _, g in dev]
    pools = search(queries, POOL)
    probs = score_candidates(reranker, queries, pools, strings)
    accuracy = {}
    for w in WEIGHTS:
        hits = [bool(pool) and combine(pool, p, w)[0].id == g for pool, p, g in zip(pools, probs, gold, strict=True)]
        accuracy[f"{w:.2f}"] = round(sum(hits) / max(1, len(hits)), 4)
    best = max(WEIGHTS, key=lambda w: (accuracy[f"{w:.2f}"], -w))
    return best, accuracy


def reranker_examples(strings: View, dev: Sequence[tuple[str, str]], labels: dict[str, str | None], search: Search,
                      config: RerankerConfig = RerankerConfig(), exclude: Collection[str] = ()
                      ) -> tuple[dict[str, list[Any]], list[Pair]]:  # fmt: skip
    """The labelled (query, text) examples and the positive pairs they came from: pairs of
    ``strings`` touching neither ``exclude`` (held-out queries) nor the dev queries, each with its
    hard negatives from ``search``."""
    pair_config = EncoderConfig(seed=config.seed, max_pairs=config.max_queries)
    pairs = training_pairs(strings, labels, pair_config, [*exclude, *(q for q, _ in dev)])
    if len(pairs) < 2:
        raise EtlnormError(f"only {len(pairs)} training pairs: nothing to train the reranker on")
    log.info("mining hard negatives for %d pairs ...", len(pairs))
    pools = search([p.anchor for p in pairs], POOL)
    return hard_examples(pairs, pools, strings_by_id(strings), config.negatives), pairs


def finetune_reranker(strings: View, dev: Sequence[tuple[str, str]], labels: dict[str, str | None], out: str | Path,
                      *, ontology: str, search: Search, base: str | None = None,
                      config: RerankerConfig = RerankerConfig(), device: str | None = None, progress: bool = True,
                      exclude: Collection[str] = (), extra_metadata: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Train on ``strings``' pairs (none touching ``exclude`` or the dev queries), hard negatives
    from ``search`` (retrieval over ``strings``), fit the weight on ``dev``; save into ``out``."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    out = Path(out).expanduser()
    base_path = model_path(base)
    started = time.perf_counter()
    examples, pairs = reranker_examples(strings, dev, labels, search, config, exclude)
    mined = round(time.perf_counter() - started, 1)
    by_id = strings_by_id(strings)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model = CrossEncoder(str(base_path), num_labels=1, max_length=config.max_length, device=device,
                         local_files_only=True)  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="etlnorm-reranker-") as scratch:
        args = CrossEncoderTrainingArguments(**trainer_arguments(config, scratch, device, progress))
        # Negatives outnumber positives: weigh positives up so the probability is not biased low.
        loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(config.negatives)))
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(examples), loss=loss)
        result = trainer.train()
    seconds = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    weight, dev_accuracy = fit_weight(Reranker(model, 0.0, out), dev, search, by_id)
    metadata = {
        **base_metadata("etlnorm-reranker", ontology, base_path, strings),
        "pairs": len(pairs),
        "examples": len(examples["label"]),
        "pairs_hash": digest(list(zip(examples["query"], examples["text"], strict=True))),
        "hyperparameters": asdict(config),
        "loss": "BinaryCrossEntropyLoss (hard negatives from retrieval's top 20)",
        "device": device,
        "mine_seconds": mined,
        "train_seconds": seconds,
        "final_loss": round(float(result.training_loss), 4),
        "weight": weight,
        "dev_queries": len(dev),
        "dev_acc_at_1_by_weight": dev_accuracy,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra_metadata or {}),
    }
    write_json(out, METADATA_FILE, metadata)
    log.info("reranker trained on %d %s examples in %.0f s (weight %.2f): %s",
             len(examples["label"]), ontology, seconds, weight, out)  # fmt: skip
    return out
