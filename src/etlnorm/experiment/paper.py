"""The seed paper's experiment on one ontology: memorization (train) vs generalization (withheld).

For the train and withheld terms it scores, by popularity bin:

- ``base`` / ``finetuned``: the LLM answering freely, scored as in the paper (the ID found in the
  text by ``extract_id`` must equal the gold ID string exactly);
- ``base_constrained`` / ``finetuned_constrained``: the same models under the ID trie (they can only
  spell a current ID; scored against the gold ID resolved to its current ID);
- ``retrieval``: the FAISS tier alone, its top candidate (no abstention threshold);
- ``reranked``: retrieval's top candidates, the fine-tuned LLM reranker's choice among them (with a
  rerank adapter from ``etlnorm finetune --task rerank``);
- ``cascade``: etlnorm's cascade in the paper-informed routing (``CASCADES``): for genes the
  fine-tuned generator (the base without an adapter), for HPO/GO retrieval then the rerank adapter
  when one is given; abstentions counted wrong.

``task`` names the run when one ontology has several (the paper's gene task maps protein names to
symbols, ``hgnc-protein``; the HGNC-name task is ``hgnc``).

It also measures **lexicalization**: the cosine between the MiniLM embedding of each term and of its
identifier string (the paper's embedding analysis). Results go to ``results.json``, ``report.md``
and PNG plots (``etlnorm.experiment.plots``).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Engine

from etlnorm.cascade.encoder import Encoder, encoder_for
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import load_index
from etlnorm.config import Settings, load_settings
from etlnorm.errors import EtlnormError
from etlnorm.experiment.plots import plot_accuracy_by_bin, plot_lexicalization
from etlnorm.experiment.report import PAPER, write_report
from etlnorm.finetune.data import read_frame
from etlnorm.finetune.paperdata import SPLITS
from etlnorm.finetune.predict import constrained_answers, exact_match, free_answers
from etlnorm.finetune.train import METADATA_FILE
from etlnorm.llm.constrain import trie_for
from etlnorm.llm.model import LanguageModel, load_model
from etlnorm.ontology.store import loaded_release, resolve_gold

log = logging.getLogger(__name__)

METHODS = ("base", "base_constrained", "finetuned", "finetuned_constrained", "retrieval", "reranked", "cascade")
# The cascade per ontology, from the paper's finding: gene symbols are lexicalized (the LLM generates
# them), HPO/GO numeric IDs are not (retrieval decides, the LLM only reranks its candidates).
CASCADES = {"hgnc": ("lexical", "llm", "retrieval"), "hp": ("lexical", "retrieval", "rerank"),
            "go": ("lexical", "retrieval", "rerank")}  # fmt: skip


def balanced_subset(frame: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    """``limit`` rows spread evenly over the popularity bins: the first rows of each bin in file
    order, round-robin over the bins (deterministic). None or 0: every row."""
    if not limit or limit >= len(frame):
        return frame
    if "bin" not in frame.columns or frame["bin"].null_count() == len(frame):
        return frame.head(limit)
    ranked = frame.with_row_index("_row").with_columns(pl.int_range(pl.len()).over("bin").alias("_rank"))
    picked = ranked.sort(["_rank", "bin"]).head(limit).sort("_row")
    return picked.drop("_row", "_rank")


@dataclass
class SplitData:
    name: str
    terms: list[str]
    gold: list[str]  # as written in the file (the paper's exact-match target)
    current: list[str | None]  # gold resolved to its current ID (None: obsolete/unknown)
    bins: list[int | None]
    popularity: list[int | None]
    predictions: dict[str, list[str | None]] = field(default_factory=dict)
    correct: dict[str, list[bool]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)


def _split(engine: Engine, ontology: str, name: str, frame: pl.DataFrame) -> SplitData:
    gold = frame["id"].to_list()
    current, _ = resolve_gold(engine, ontology, gold)
    bins = frame["bin"].to_list() if "bin" in frame.columns else [None] * len(frame)
    pop = frame["popularity"].to_list() if "popularity" in frame.columns else [None] * len(frame)
    return SplitData(name, frame["term"].to_list(), gold, current, bins, pop)


def private_copy(lm: LanguageModel, suffix: str) -> LanguageModel:
    """A copy of ``lm``'s network to load adapters into (PEFT modifies a model in place)."""
    return LanguageModel(copy.deepcopy(lm.model), lm.tokenizer, f"{lm.key}#{suffix}", lm.device)


def lexicalization(encoder: Encoder, terms: Sequence[str], ids: Sequence[str]) -> list[float]:
    """Cosine between each term's embedding and its identifier string's (unit vectors: dot product)."""
    a, b = encoder.encode(list(terms)), encoder.encode(list(ids))
    return [float(x) for x in np.einsum("ij,ij->i", a, b)]


def _accuracy(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def summarize(split: SplitData) -> dict[str, Any]:
    """Overall and per-bin accuracy of every scored method on one split."""
    bins = sorted({b for b in split.bins if b is not None})
    per_bin = {}
    for b in bins:
        rows = [i for i, x in enumerate(split.bins) if x == b]
        pops = sorted(split.popularity[i] for i in rows if split.popularity[i] is not None)
        per_bin[str(b)] = {
            "n": len(rows),
            "median_popularity": pops[len(pops) // 2] if pops else None,
            "accuracy": {m: _accuracy([split.correct[m][i] for i in rows]) for m in split.correct},
        }
    return {
        "n": len(split.terms),
        "gold_unusable": sum(c is None for c in split.current),
        "accuracy": {m: _accuracy(flags) for m, flags in split.correct.items()},
        "correct": {m: sum(flags) for m, flags in split.correct.items()},
        "by_bin": per_bin,
    }


def run_experiment(
    ontology: str,
    train: str | Path,
    withheld: str | Path,
    out: str | Path,
    *,
    base: str | Path | None = None,
    adapter: str | Path | None = None,
    limit: int | None = None,
    engine: Engine | None = None,
    settings: Settings | None = None,
    lm: LanguageModel | None = None,
    variant: str | None = None,
    batch_size: int | None = None,
    task: str | None = None,
    rerank_adapter: str | Path | None = None,
) -> dict[str, Any]:
    """Run every method on both splits, write results.json, report.md and the plots; return the results."""
    from etlnorm.db.engine import ready_engine

    started = time.perf_counter()
    settings = settings or load_settings()
    engine = engine or ready_engine(settings)
    variant = variant or settings.index_variant
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    loaded = loaded_release(engine, ontology)
    release = loaded.release
    splits = [_split(engine, ontology, name, balanced_subset(read_frame(path, ontology), limit))
              for name, path in zip(SPLITS, (train, withheld), strict=True)]  # fmt: skip
    timings: dict[str, float] = {}

    def timed(name: str, seconds: float) -> None:
        timings[name] = round(timings.get(name, 0.0) + seconds, 1)

    t = time.perf_counter()
    base_lm = lm or load_model(base)
    timed("load_model", time.perf_counter() - t)
    batch = batch_size or (128 if base_lm.device.type == "cuda" else 32)
    metadata = None
    tuned_lm: LanguageModel | None = None
    if adapter is not None:
        adapter = Path(adapter).expanduser()
        meta_path = adapter / METADATA_FILE
        metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        if metadata and metadata.get("ontology") not in (None, ontology):
            raise EtlnormError(f"adapter {adapter} was trained for {metadata['ontology']}, not {ontology}")
        tuned_lm = private_copy(base_lm, f"adapter:{adapter}")
        tuned_lm.load_adapter(ontology, adapter)
    t = time.perf_counter()
    trie = trie_for(base_lm, engine, ontology)
    timed("trie", time.perf_counter() - t)
    models = [("base", base_lm, None)] + ([("finetuned", tuned_lm, ontology)] if tuned_lm else [])
    for split in splits:
        for name, model, active in models:
            t = time.perf_counter()
            answers = free_answers(model, ontology, split.terms, adapter=active, batch_size=batch)
            split.texts[name] = [text for text, _ in answers]
            split.predictions[name] = [found for _, found in answers]
            split.correct[name] = exact_match(split.predictions[name], split.gold)
            timed(name, time.perf_counter() - t)
            t = time.perf_counter()
            ids = constrained_answers(model, ontology, split.terms, trie, adapter=active, batch_size=batch)
            split.predictions[name + "_constrained"] = ids
            split.correct[name + "_constrained"] = _matches(ids, split.current)
            timed(name + "_constrained", time.perf_counter() - t)

    encoder = encoder_for(settings, ontology)
    t = time.perf_counter()
    index = load_index(engine, ontology, encoder, settings.home_dir, variant)
    timed("index", time.perf_counter() - t)
    for split in splits:
        t = time.perf_counter()
        hits = index.search(encoder.encode(split.terms), 1)
        ids = [c[0].id if c else None for c in hits]
        split.predictions["retrieval"] = ids
        split.correct["retrieval"] = _matches(ids, split.current)
        timed("retrieval", time.perf_counter() - t)

    rerank = {"llm_rerank_adapters": {ontology: str(rerank_adapter)}} if rerank_adapter else {}
    rerank_lm = private_copy(base_lm, f"rerank:{rerank_adapter}") if rerank_adapter else None
    if rerank_lm is not None:
        reranker = Normalizer(ontology, engine, settings.model_copy(update={"llm_batch_size": batch, "min_confidence": 0.0,
                                                                            **rerank}),
                              variant=variant, route=["retrieval", "rerank"], lm=rerank_lm, calibrated=False)  # fmt: skip
        for split in splits:
            t = time.perf_counter()
            ids = [m.id for m in reranker.normalize(split.terms)]
            split.predictions["reranked"] = ids
            split.correct["reranked"] = _matches(ids, split.current)
            timed("reranked", time.perf_counter() - t)
    route = CASCADES.get(ontology)
    if route and "rerank" in route and rerank_lm is None:
        route = tuple(t for t in route if t != "rerank")  # no untuned reranker in the cascade
    normalizer = Normalizer(ontology, engine, settings.model_copy(update={"llm_batch_size": batch, **rerank}),
                            variant=variant, route=route, lm=rerank_lm or tuned_lm or base_lm)  # fmt: skip
    methods_used: dict[str, dict[str, int]] = {}
    for split in splits:
        t = time.perf_counter()
        mappings = normalizer.normalize(split.terms)
        ids = [m.id for m in mappings]
        split.predictions["cascade"] = ids
        split.correct["cascade"] = _matches(ids, split.current)
        counts: dict[str, int] = {}
        for m in mappings:
            counts[m.method] = counts.get(m.method, 0) + 1
        methods_used[split.name] = dict(sorted(counts.items()))
        timed("cascade", time.perf_counter() - t)

    t = time.perf_counter()
    lex = {s.name: lexicalization(encoder, s.terms, s.gold) for s in splits}
    timed("lexicalization", time.perf_counter() - t)
    all_lex = [x for values in lex.values() for x in values]
    results: dict[str, Any] = {
        "ontology": ontology,
        "task": task or ontology,
        "release": release,
        "content": loaded.fingerprint,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": base_lm.key,
        "device": base_lm.device.type,
        "adapter": str(adapter) if adapter else None,
        "adapter_metadata": metadata,
        "rerank_adapter": str(rerank_adapter) if rerank_adapter else None,
        "data": {
            "train": str(train),
            "withheld": str(withheld),
            "limit_per_split": limit,
            "selection": "first rows of each popularity bin in file order, round-robin over bins",
        },  # fmt: skip
        "index_variant": variant,
        "cascade": normalizer.route,
        "methods": [m for m in METHODS if m in splits[0].correct],
        "splits": {s.name: summarize(s) for s in splits},
        "cascade_methods": methods_used,
        "lexicalization": {
            "mean": round(float(np.mean(all_lex)), 4),
            "sd": round(float(np.std(all_lex)), 4),
            "n": len(all_lex),
            "by_split": {k: round(float(np.mean(v)), 4) for k, v in lex.items()},
            "values": [round(x, 4) for x in all_lex],
        },  # fmt: skip
        "paper": {
            s: dict(zip(("base", "finetuned"), PAPER[(task or ontology, s)], strict=True))
            for s in SPLITS
            if (task or ontology, s) in PAPER
        },  # fmt: skip
        "seconds": timings,
    }
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    rows = []
    for s in splits:
        for i, term in enumerate(s.terms):
            rows.append({"split": s.name, "term": term, "gold": s.gold[i], "gold_current": s.current[i], "bin": s.bins[i],
                         "popularity": s.popularity[i], "lexicalization": round(lex[s.name][i], 4),
                         **{f"{m}_text": s.texts[m][i] for m in s.texts},
                         **{m: s.predictions[m][i] for m in results["methods"]},
                         **{f"{m}_ok": s.correct[m][i] for m in results["methods"]}})  # fmt: skip
    pl.DataFrame(rows, infer_schema_length=None).write_csv(out / "predictions.csv")
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    plots = {
        "accuracy_by_bin": plot_accuracy_by_bin(results, out / "accuracy_by_bin.png"),
        "lexicalization": plot_lexicalization({task or ontology: all_lex}, out / "lexicalization.png"),
    }
    write_report(results, out / "report.md", {k: v.name for k, v in plots.items()})
    log.info("experiment %s done in %.0f s: %s", ontology, results["seconds"]["total"], out)
    return results


def _matches(predicted: Sequence[str | None], current: Sequence[str | None]) -> list[bool]:
    return [p is not None and p == c for p, c in zip(predicted, current, strict=True)]


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """results.json files (or folders holding one)."""
    out = []
    for p in paths:
        path = Path(p).expanduser()
        path = path / "results.json" if path.is_dir() else path
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise EtlnormError(f"cannot read experiment results {path}: {exc}") from exc
    return out
