"""Term -> ID pairs and the training examples built from them.

Pairs come from one of the paper's CSVs (recognized by its columns), a generic CSV with ``term``
and ``id`` columns (``bin`` and ``popularity`` optional), or a seeded random sample of the loaded
ontology's current labels (popularity-balanced sampling needs usage counts the ontology lacks).
Every pair becomes one example per paper wording, rendered through the chat template exactly as
inference renders it (``etlnorm.llm.prompts``); the completion is the ID as the model would spell
it right after the prompt, followed by EOS, and only those tokens carry loss.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from etlnorm.errors import EtlnormError
from etlnorm.finetune.paperdata import FILES, SPLITS, load_paper_set
from etlnorm.llm.constrain import id_token_sequences
from etlnorm.llm.generate import MAX_PROMPT_TOKENS
from etlnorm.llm.prompts import clean_term, paraphrases, render
from etlnorm.ontology.store import current_terms


@dataclass(frozen=True, slots=True)
class Pair:
    term: str
    id: str
    bin: int | None = None
    popularity: int | None = None


def frame_to_pairs(frame: pl.DataFrame) -> list[Pair]:
    has_bin, has_pop = "bin" in frame.columns, "popularity" in frame.columns
    out = []
    for row in frame.iter_rows(named=True):
        term, ident = (row["term"] or "").strip(), (row["id"] or "").strip()
        if term and ident:
            out.append(
                Pair(term, ident, row["bin"] if has_bin else None, row["popularity"] if has_pop else None)
            )
    return out


def read_frame(path: str | Path, ontology: str) -> pl.DataFrame:
    """``term, id[, bin, popularity]`` from ``path``; ``paper`` / ``paper:train`` / ``paper:withheld``
    name the paper's own sets for ``ontology`` (``paper`` alone is the train set), and
    ``paper-protein[:split]`` the gene sets with protein names as terms."""
    spec = str(path)
    head, _, split = spec.partition(":")
    if head in ("paper", "paper-protein"):
        return load_paper_set(ontology, split or "train", "protein" if head == "paper-protein" else "name")
    path = Path(path).expanduser()
    try:
        raw = pl.read_csv(path, infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise EtlnormError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    if {"term", "id"} <= set(raw.columns):
        cols = [pl.col("term").str.strip_chars(), pl.col("id").str.strip_chars()]
        if "bin" in raw.columns:
            cols.append(pl.col("bin").str.strip_chars().cast(pl.Int32, strict=False))
        if "popularity" in raw.columns:
            cols.append(pl.col("popularity").str.strip_chars().cast(pl.Int64, strict=False))
        return raw.select(cols).filter(pl.col("id").is_not_null() & (pl.col("id") != ""))
    for split in SPLITS:  # a paper file under another name or folder: recognized by its columns
        key = (ontology, split)
        if key in FILES and set(FILES[key][1]) <= set(raw.columns):
            c = FILES[key][1]
            return raw.select(
                pl.col(c.term).str.strip_chars().alias("term"),
                pl.col(c.id).str.strip_chars().alias("id"),
                pl.col(c.bin).str.strip_chars().cast(pl.Int32, strict=False).alias("bin"),
                pl.col(c.popularity).str.strip_chars().cast(pl.Int64, strict=False).alias("popularity"),
            ).filter(pl.col("id").is_not_null() & (pl.col("id") != ""))
    raise EtlnormError(
        f"{path}: needs columns term and id (or the paper's {ontology} columns); has {raw.columns}"
    )


def read_pairs(path: str | Path, ontology: str) -> list[Pair]:
    return frame_to_pairs(read_frame(path, ontology))


def sample_pairs(
    engine: Engine, ontology: str, n: int, seed: int = 0, withheld: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """(train, withheld): ``n`` + ``withheld`` distinct current terms of the loaded ontology, drawn at
    random with ``seed`` (term = label, id = ID)."""
    terms = [(i, label) for i, label in current_terms(engine, ontology) if label]
    if n + withheld > len(terms):
        raise EtlnormError(f"{ontology} has {len(terms)} labelled current terms; asked for {n + withheld}")
    drawn = random.Random(seed).sample(terms, n + withheld)
    pairs = [Pair(label, i) for i, label in drawn]
    return pairs[:n], pairs[n:]


def write_pairs(pairs: Sequence[Pair], path: Path) -> None:
    pl.DataFrame(
        {"term": [p.term for p in pairs], "id": [p.id for p in pairs], "bin": [p.bin for p in pairs],
         "popularity": [p.popularity for p in pairs]},
        schema={"term": pl.String, "id": pl.String, "bin": pl.Int32, "popularity": pl.Int64},
    ).write_csv(path)  # fmt: skip


def pairs_hash(pairs: Sequence[Pair]) -> str:
    """sha256 of the (term, id) list in order: identifies the training data in the adapter metadata."""
    payload = json.dumps([[p.term, p.id] for p in pairs], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def templates(ontology: str, n: int = 5) -> list[str]:
    """The first ``n`` of the paper's five wordings for ``ontology`` (``{term}`` placeholder)."""
    if not 1 <= n <= 5:
        raise EtlnormError("paraphrases must be between 1 and 5")
    return list(paraphrases(ontology)[:n])


def examples(
    tokenizer: Any, ontology: str, pairs: Sequence[Pair], n_templates: int = 5
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per pair and wording: labels are -100 on the prompt, the ID's tokens and EOS after."""
    wordings = templates(ontology, n_templates)
    answers = id_token_sequences(tokenizer, [p.id for p in pairs])
    eos = int(tokenizer.eos_token_id)
    texts = [render(tokenizer, t.replace("{term}", clean_term(p.term))) for p in pairs for t in wordings]
    prompts = tokenizer(texts, add_special_tokens=False).input_ids
    out = []
    for k, prompt in enumerate(prompts):
        answer = answers[k // len(wordings)] + [eos]
        prompt = prompt[-MAX_PROMPT_TOKENS:]
        out.append((prompt + answer, [-100] * len(prompt) + answer))
    return out
