"""Index builds and the retrieval tier against a raw encode, ratios from one run (issue 16).

    python bench/bench_index.py [--ontology hp] [--change 0.02] [--queries 4001] [--backend torch] [--build-only]

In a fresh ETLNORM_HOME of its own (nothing to reuse), on the loaded release of ``--ontology``:

1. **raw**: stock ``SentenceTransformer.encode`` of every index string (batch 256, no deduplication);
2. **full build**: etlnorm's index build of the same strings (``cascade.retrieval.build_index``);
3. **incremental**: a synthetic change of ``--change`` of the release (that share of its strings
   dropped and as many new strings added: seeded variants of labels that no release string spells)
   built as a new index beside it; only the new strings are encoded (vectors reused by string and
   encoder fingerprint, the path a new release takes), counted and timed against the full build;
4. **retrieval tier**: the held-out synonym protocol's test strings (seed 13; never indexed) run
   through the ``retrieval`` route alone over the split's train part, against a raw encode of the
   same strings: the tier's terms/s over the raw encoder's strings/s.

5. **batch sizes**: etlnorm's encoder of ``--backend`` over a seeded sample of the index strings at
   each of ``--batch-sizes`` (what ``encode_batch_size`` is chosen by).

``--build-only`` times the full build alone (GO and HGNC, whose target is a time, not a ratio).

Needs an etlnorm database with the ontology loaded (ETLNORM_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from sentence_transformers import SentenceTransformer

from etlnorm.cascade.encoder import encoder_for, model_path
from etlnorm.cascade.heldout import heldout_split, string_key
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import build_index, current_labels, release_strings
from etlnorm.cascade.variants import variants
from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.threads import apply_threads


def changed_view(pairs: list[tuple[str, str]], labels: dict[str, str | None], share: float,
                 seed: int) -> tuple[list[tuple[str, str]], int]:  # fmt: skip
    """``pairs`` with ``share`` of them dropped and as many new (id, variant of its label) added."""
    rng = random.Random(seed)
    n = round(share * len(pairs))
    kept = rng.sample(pairs, len(pairs) - n // 2)
    known = {string_key(s) for _, s in pairs}
    added: list[tuple[str, str]] = []
    ids = sorted(i for i, label in labels.items() if label)
    while len(added) < n - n // 2:
        ident = rng.choice(ids)
        for _, text in variants(labels[ident], rng):  # type: ignore[arg-type]
            if string_key(text) not in known:
                known.add(string_key(text))
                added.append((ident, text))
                break
    return kept + added, len(added)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ontology", default="hp")
    ap.add_argument("--change", type=float, default=0.02, help="share of the release's strings changed")
    ap.add_argument("--queries", type=int, default=0, help="held-out queries for the tier (0: all)")
    ap.add_argument("--backend", default="torch", help="encoder_backend of etlnorm's side (torch, onnx, onnx-int8)")
    ap.add_argument("--batch-sizes", default="32,64,128,256,512", help="encode batch sizes compared (empty: none)")
    ap.add_argument("--batch-sample", type=int, default=5000, help="strings encoded at each batch size")
    ap.add_argument("--build-only", action="store_true", help="time the full build and stop")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="etlnorm-bench-index-") as scratch:
        settings = load_settings().model_copy(update={"home": Path(scratch), "encoder_backend": args.backend})
        engine = ready_engine(settings)
        threads = apply_threads(settings.threads)
        encoder = encoder_for(settings, args.ontology)
        pairs = release_strings(engine, args.ontology, "all")
        texts = [s for _, s in pairs]
        print(f"{args.ontology}: {len(texts):,} index strings, {threads} threads, backend {encoder.backend}")

        before = encoder.encoded
        start = time.perf_counter()
        build_index(engine, args.ontology, encoder, settings.home_dir, "all", progress=False)
        full = time.perf_counter() - start
        print(f"full build: {full:.1f} s ({encoder.encoded - before:,} strings encoded)")
        if args.build_only:
            return
        stock = SentenceTransformer(str(model_path(settings.encoder_model)), device="cpu", local_files_only=True)
        start = time.perf_counter()
        stock.encode(texts, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
        raw = time.perf_counter() - start
        print(f"raw SentenceTransformer.encode: {raw:.1f} s, {len(texts) / raw:,.0f} strings/s; "
              f"the full build is {raw / full:.2f}x the raw encode")  # fmt: skip

        view, added = changed_view(pairs, current_labels(engine, args.ontology), args.change, seed=13)
        before = encoder.encoded
        start = time.perf_counter()
        build_index(engine, args.ontology, encoder, settings.home_dir, strings=view, progress=False)
        incremental = time.perf_counter() - start
        print(f"incremental build after a {args.change:.0%} change ({added:,} new strings of {len(view):,}): "
              f"{incremental:.1f} s, {encoder.encoded - before:,} encoded, {incremental / full:.1%} of the full build")  # fmt: skip

        split = heldout_split(engine, args.ontology, "synonym", seed=13)
        queries = [q for q, _ in split.test]
        if args.queries:
            queries = random.Random(13).sample(queries, min(args.queries, len(queries)))
        tier = Normalizer(args.ontology, engine, settings, route=["retrieval"], calibrated=False, strings=split.train)
        tier.index  # noqa: B018 - built (from reused vectors) outside the timing
        tier.normalize(queries[:50])  # warm
        start = time.perf_counter()
        stock.encode(queries, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
        raw_q = time.perf_counter() - start
        start = time.perf_counter()
        answers = tier.normalize(queries)
        tiered = time.perf_counter() - start
        print(f"retrieval tier on {len(queries):,} held-out synonyms: {len(queries) / tiered:,.0f} terms/s; raw encode "
              f"{len(queries) / raw_q:,.0f} strings/s; tier / raw {raw_q / tiered:.2f}x "
              f"({sum(a.id is not None for a in answers):,} answered)")  # fmt: skip

        sample = random.Random(13).sample(texts, min(args.batch_sample, len(texts)))
        for size in [int(b) for b in args.batch_sizes.split(",") if b]:
            encoder.batch_size = size
            start = time.perf_counter()
            encoder.encode(sample)
            print(f"batch {size:>4}: {len(sample) / (time.perf_counter() - start):,.0f} strings/s")


if __name__ == "__main__":
    main()
