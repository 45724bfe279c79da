"""The encoder backends on the whole HPO release: speed against a raw stock-torch encode, and
retrieval accuracy on the held-out synonym protocol, all in one run.

    python bench/bench_encoder.py [--limit N] [--threads 2]

For each backend (torch, onnx, onnx-int8) the labels and synonyms of the loaded HPO release
(``--limit`` of them, sorted) are encoded by etlnorm's Encoder (strings it cannot tell apart encoded
once, length-sorted batches), timed against ``SentenceTransformer.encode`` of the same strings
(stock torch, no deduplication). Then the held-out protocol (synonym split, seed 13) for the
backends that give other vectors than torch's (fp32 ONNX gives torch's, tested): an index over the
whole train part, the test synonyms as queries, dense acc@1 of the top candidate. Needs an etlnorm
database with hp loaded; the ONNX exports are cached under ETLNORM_HOME/encoders.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from etlnorm.cascade.encoder import Encoder, model_path
from etlnorm.cascade.heldout import heldout_split
from etlnorm.cascade.retrieval import release_strings
from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="strings timed (0: the whole release)")
    ap.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: torch's default)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings()
    engine = ready_engine(settings)
    strings = sorted({s for _, s in release_strings(engine, "hp", "all")})
    timed = strings[: args.limit] if args.limit else strings
    split = heldout_split(engine, "hp", "synonym", seed=13)
    stock = Encoder(model_path(None), 256, "cpu").model
    start = time.perf_counter()
    stock.encode(timed, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    raw = time.perf_counter() - start
    print(f"{len(timed):,} strings (HPO labels and synonyms), {torch.get_num_threads()} threads")
    print(f"raw SentenceTransformer.encode (stock torch): {raw:.1f} s, {len(timed) / raw:.0f} strings/s\n")
    print("backend     seconds  strings/s  vs raw   held-out acc@1")
    for backend in ("torch", "onnx", "onnx-int8"):
        encoder = Encoder(model_path(None), 256, "cpu", backend, settings.home_dir / "encoders")
        start = time.perf_counter()
        encoder.encode(timed)
        seconds = time.perf_counter() - start
        if backend == "onnx":
            print(f"{backend:<10} {seconds:8.1f} {len(timed) / seconds:10.0f} {raw / seconds:7.2f}x")
            continue
        train_text = [s for _, s in split.train]
        index = faiss.IndexFlatIP(encoder.dim)
        index.add(encoder.encode(train_text))
        queries = [q for q, _ in split.test]
        _, rows = index.search(encoder.encode(queries), 1)
        hits = int(np.sum([split.train[r[0]][0] == gold for r, (_, gold) in zip(rows, split.test, strict=True)]))
        print(f"{backend:<10} {seconds:8.1f} {len(timed) / seconds:10.0f} {raw / seconds:7.2f}x {hits / len(queries):12.4f}"
              f"  ({hits:,} of {len(queries):,} queries)")  # fmt: skip


if __name__ == "__main__":
    main()
