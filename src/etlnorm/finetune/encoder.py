"""Fine-tune the sentence encoder on the ontology's own synonym pairs (SapBERT's recipe).

A term → label encoder is the lexicalized case where the seed paper finds that fine-tuning
generalizes. Pairs come from the strings the caller may train on (the training half of a held-out
protocol, or a whole release): label ↔ synonym and synonym ↔ synonym of one concept, plus seeded
synthetic variants of every string (typos, inversions, spellings, plurals, hedges) ↔ the string.
sentence-transformers' own trainer runs MultipleNegativesRankingLoss: the other pairs of a batch
are the negatives (no duplicate strings within a batch). Two pairs of one concept rarely share a
batch (64 of tens of thousands of concepts), so the few false negatives cost little.

The saved folder holds the model and ``etlnorm-encoder.json`` (base model and its fingerprint,
ontology, strings and pairs hashes, hyper-parameters, held-out metrics when the caller adds them).
"""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etlnorm.cascade.crossencoder import METADATA_FILE as RERANKER_METADATA
from etlnorm.cascade.encoder import fingerprint, model_path
from etlnorm.cascade.heldout import string_key
from etlnorm.cascade.retrieval import strings_hash
from etlnorm.cascade.variants import variants
from etlnorm.errors import EtlnormError
from etlnorm.files import read_json, write_json
from etlnorm.finetune.train import METADATA_FILE as ADAPTER_METADATA

log = logging.getLogger(__name__)

METADATA_FILE = "etlnorm-encoder.json"


@dataclass(frozen=True)
class TrainingConfig:
    """What every sentence-transformers training run here is given (encoder and reranker)."""

    epochs: float = 1.0
    batch_size: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    seed: int = 13


def trainer_arguments(config: TrainingConfig, scratch: str, device: str, progress: bool) -> dict[str, Any]:
    """The trainer arguments both runs share: seeded, no checkpoints, CPU or CUDA (bf16 where it can)."""
    import torch

    return {
        "output_dir": scratch, "num_train_epochs": config.epochs, "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "warmup_steps": config.warmup_ratio, "seed": config.seed,
        "data_seed": config.seed, "save_strategy": "no", "report_to": [], "disable_tqdm": not progress,
        "use_cpu": device == "cpu", "logging_steps": 50, "dataloader_drop_last": False,
        "bf16": device.startswith("cuda") and torch.cuda.is_bf16_supported(),
    }  # fmt: skip


@dataclass(frozen=True)
class EncoderConfig(TrainingConfig):
    """Hyper-parameters of one encoder fine-tuning run (defaults measured on HPO, see bench/)."""

    # 6 and 1 keep one HPO epoch (67k pairs of the synonym split, 1,053 steps) within 30 min on 2 cores
    synonym_pairs_per_concept: int = 6  # synonym <-> synonym pairs kept per concept (all when fewer)
    variants_per_string: int = 1
    max_pairs: int | None = None  # cap (seeded sample), for quick runs and tests


@dataclass(frozen=True)
class Pair:
    anchor: str
    positive: str
    concept: str


def digest(rows: Sequence[Sequence[str]]) -> str:
    """Content hash of training rows: names the exact data a model was trained on."""
    h = hashlib.sha256()
    for row in rows:
        h.update("\x1f".join(row).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def training_pairs(strings: Sequence[tuple[str, str]], labels: dict[str, str | None],
                   config: EncoderConfig = EncoderConfig(), exclude: Collection[str] = ()) -> list[Pair]:  # fmt: skip
    """Positive pairs from (id, string) rows: label ↔ synonym, synonym ↔ synonym, variant ↔ string.

    ``exclude``: strings (held-out queries, compared by ``string_key``) no pair may contain, not
    even as a synthetic variant that happens to spell one."""
    banned = {string_key(s) for s in exclude}
    rng = random.Random(config.seed)
    by_id: dict[str, list[str]] = defaultdict(list)
    for ident, text in sorted(set(strings)):
        by_id[ident].append(text)
    pairs: list[Pair] = []
    for ident, texts in sorted(by_id.items()):
        label = labels.get(ident)
        others = [t for t in texts if t != label]
        if label:
            pairs += [Pair(t, label, ident) for t in others]
        among = [(a, b) for i, a in enumerate(others) for b in others[i + 1 :]]
        rng.shuffle(among)
        pairs += [Pair(a, b, ident) for a, b in among[: config.synonym_pairs_per_concept]]
        for text in texts:
            made = variants(text, rng)
            rng.shuffle(made)
            pairs += [Pair(v, text, ident) for _, v in made[: config.variants_per_string]]
    pairs = [p for p in pairs if string_key(p.anchor) not in banned and string_key(p.positive) not in banned]
    if config.max_pairs is not None and len(pairs) > config.max_pairs:
        pairs = rng.sample(pairs, config.max_pairs)
    return pairs


def finetune_encoder(strings: Sequence[tuple[str, str]], labels: dict[str, str | None], out: str | Path, *,
                     ontology: str, base: str | None = None, config: EncoderConfig = EncoderConfig(),
                     device: str | None = None, progress: bool = True, exclude: Collection[str] = (),
                     extra_metadata: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Train on the pairs of ``strings`` (none touching ``exclude``) and save the model with its
    metadata into ``out``."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    out = Path(out).expanduser()
    base_path = model_path(base)
    pairs = training_pairs(strings, labels, config, exclude)
    if len(pairs) < 2:
        raise EtlnormError(f"only {len(pairs)} training pairs for {ontology}: nothing to fine-tune on")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model = SentenceTransformer(str(base_path), device=device, local_files_only=True)
    data = Dataset.from_dict({"anchor": [p.anchor for p in pairs], "positive": [p.positive for p in pairs]})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="etlnorm-encoder-") as scratch:
        args = SentenceTransformerTrainingArguments(batch_sampler=BatchSamplers.NO_DUPLICATES,
                                                    **trainer_arguments(config, scratch, device, progress))  # fmt: skip
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                             loss=losses.MultipleNegativesRankingLoss(model))  # fmt: skip
        result = trainer.train()
    seconds = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    metadata = {
        **base_metadata("etlnorm-encoder", ontology, base_path, strings),
        "pairs": len(pairs),
        "pairs_hash": digest([(p.anchor, p.positive) for p in pairs]),
        "hyperparameters": asdict(config),
        "loss": "MultipleNegativesRankingLoss",
        "device": device,
        "train_seconds": seconds,
        "final_loss": round(float(result.training_loss), 4),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra_metadata or {}),
    }
    write_metadata(out, metadata)
    log.info("encoder fine-tuned on %d %s pairs in %.0f s: %s", len(pairs), ontology, seconds, out)
    return out


def base_metadata(kind: str, ontology: str, base_path: Path, strings: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What every trained model's metadata starts with: what it is, what it started from, what it saw."""
    return {"kind": kind, "ontology": ontology, "base_model": str(base_path), "base_fingerprint": fingerprint(base_path),
            "strings": len(set(strings)), "strings_hash": strings_hash(list(strings))}  # fmt: skip


def write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    write_json(folder, METADATA_FILE, metadata)


def read_metadata(folder: str | Path) -> dict[str, Any]:
    return read_json(folder, METADATA_FILE, "encoder")


def check_not_trained_on(folder: str | None, ontology: str, protocol: str, seed: int) -> None:
    """Refuse to score a held-out split with a model (encoder, reranker, adapter) trained on other strings
    of ``ontology`` (the whole release, or another split): its test queries may have been training pairs."""
    if folder is None:
        return
    found = [name for name in (METADATA_FILE, RERANKER_METADATA, ADAPTER_METADATA)
             if (Path(folder).expanduser() / name).is_file()]  # fmt: skip
    if not found:
        return
    meta = read_json(folder, found[0], "model")
    if meta.get("ontology") != ontology:
        return
    trained = meta.get("heldout") or {}
    if (trained.get("protocol"), trained.get("seed")) != (protocol, seed):
        raise EtlnormError(f"model {folder} was trained on {ontology} strings outside the "
                           f"{protocol} split with seed {seed} (its split: {trained or 'none, the whole release'});"
                           " its held-out figures would be inflated: fine-tune on this split first")  # fmt: skip


def retrieval_scores(queries: Sequence[str], gold: Sequence[str], found: Sequence[Sequence[str]]) -> dict[str, float]:
    """acc@1, acc@5 and recall@20 of ranked ID lists against gold IDs."""
    n = max(1, len(gold))

    def within(k: int) -> float:
        return round(sum(g in f[:k] for g, f in zip(gold, found, strict=True)) / n, 4)

    return {"n": len(queries), "acc_at_1": within(1), "acc_at_5": within(5), "recall_at_20": within(20)}
