"""The gene-symbol generator on the paper's withheld protein names: base vs fine-tuned, and the
cascade with it vs without it, in one run.

Trains ``etlnorm finetune --task generate --ontology hgnc``'s adapter in-process: a seeded sample of
the loaded HGNC release's pairs (approved name / alias / previous symbol -> symbol; none spelling a
withheld term) plus, with ``--with-paper``, the paper's 600 protein-name training pairs. Then scores a
seeded sample of the paper's withheld protein names (gene-disjoint from its train set):

- ``base`` / ``fine-tuned``: decoding constrained to current symbols (the llm tier's generation);
- ``lexical+retrieval`` (the shipped hgnc route) against ``lexical+llm+retrieval`` with the adapter,
  raw (no threshold: acc@1) and as shipped (``min_confidence`` 0.85, calibrated: precision and
  coverage of the written IDs).

    python bench/bench_genes.py --sample 400 --with-paper --epochs 1 --limit 150 --threads 1

Needs an etlnorm database with hgnc loaded; retrieval uses the approved-name index by default (the
full one holds ~147k strings: over 10 minutes to encode here), the lexical tier every string.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

from etlnorm.cascade.normalizer import Normalizer
from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.finetune import finetune, load_config
from etlnorm.finetune.data import read_pairs
from etlnorm.finetune.genes import release_gene_pairs
from etlnorm.finetune.predict import constrained_answers
from etlnorm.llm.constrain import trie_for
from etlnorm.llm.model import load_model
from etlnorm.ontology.store import resolve_gold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=800, help="release pairs trained on (seeded)")
    ap.add_argument("--with-paper", action="store_true", help="add the paper's 600 protein-name training pairs")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--paraphrases", type=int, default=1)
    ap.add_argument("--limit", type=int, default=200, help="withheld protein names scored (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--variant", default="labels", help="retrieval index: labels (approved names, minutes to build) or all")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    engine = ready_engine()
    settings = load_settings(index_variant=args.variant)
    withheld = read_pairs("paper-protein:withheld", "hgnc")
    names = read_pairs("paper:withheld", "hgnc")
    pairs = release_gene_pairs(engine, limit=args.sample, seed=args.seed, exclude=[p.term for p in withheld + names])
    if args.with_paper:
        pairs += read_pairs("paper-protein:train", "hgnc")
    test = random.Random(args.seed).sample(withheld, min(args.limit, len(withheld)))
    terms = [p.term for p in test]
    gold, _ = resolve_gold(engine, "hgnc", [p.id for p in test])
    lm = load_model()
    cfg = load_config(epochs=args.epochs, paraphrases=args.paraphrases, seed=args.seed, eval_limit=0)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        info = finetune("hgnc", pairs, f"{scratch}/hgnc", cfg, lm=lm, source="bench_genes")
        print(f"trained on {len(pairs)} pairs ({args.sample} release + {len(pairs) - args.sample} paper), "
              f"{info.metadata['metrics']['steps']} steps in {time.perf_counter() - started:.0f} s; "
              f"scoring {len(test)} withheld protein names")  # fmt: skip
        trie = trie_for(lm, engine, "hgnc")
        base = constrained_answers(lm, "hgnc", terms, trie, adapter=None)
        lm.load_adapter("hgnc", info.folder)
        tuned = constrained_answers(lm, "hgnc", terms, trie, adapter="hgnc")

        def acc(found) -> float:
            return sum(f is not None and f == g for f, g in zip(found, gold, strict=True)) / len(gold)

        print(f"{'model / route':<36} {'acc@1':>6} {'cover':>6} {'prec':>6} {'terms/s':>8}")
        print(f"{'base, constrained':<36} {acc(base):6.3f}")
        print(f"{'fine-tuned, constrained':<36} {acc(tuned):6.3f}")
        adapters = {"llm_adapters": {"hgnc": str(info.folder)}}
        for route in (["lexical", "retrieval"], ["lexical", "llm", "retrieval"]):
            for shipped in (False, True):
                s = settings.model_copy(update={**adapters, **({} if shipped else {"min_confidence": 0.0})})
                normalizer = Normalizer("hgnc", engine, s, route=route, lm=lm, calibrated=shipped)
                normalizer.prepare()
                started = time.perf_counter()
                answers = normalizer.normalize(terms)
                rate = len(terms) / (time.perf_counter() - started)
                written = [(a.id, g) for a, g in zip(answers, gold, strict=True) if a.id]
                precision = sum(a == g for a, g in written) / max(1, len(written))
                name = "+".join(route) + (", as shipped" if shipped else ", raw")
                print(f"{name:<36} {acc([a.id for a in answers]):6.3f} {len(written) / len(gold):6.3f} "
                      f"{precision:6.3f} {rate:8.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
