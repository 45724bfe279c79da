"""LLM tier throughput: terms/s by batch size, constrained vs free, against a one-at-a-time loop.

    .venv/bin/python bench/bench_llm.py [--n 128] [--n-single 32] [--batch-sizes 1,8,32,128] [--rerank] [--model M]

Terms are HPO labels from the pinned release (no database needed); the constraint trie is built
from that release's current IDs. The baseline calls ``model.generate`` once per term, the way a
naive loop would; the ratio is the best batched rate over it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time
from pathlib import Path

import torch

from etlnorm.cascade.answer import Candidate
from etlnorm.llm.constrain import build_trie
from etlnorm.llm.generate import generate
from etlnorm.llm.model import load_model
from etlnorm.llm.prompts import build_prompt
from etlnorm.llm.rerank import rerank
from etlnorm.ontology.registry import read_release


def _terms(cache: Path):
    release = read_release("hp", "pinned", cache)
    current = [(t.id, t.label) for t in release.terms if not t.obsolete and t.label]
    return release, current


def baseline(lm, prompts: list[str], max_new_tokens: int) -> float:
    """terms/s of one plain ``generate`` call per prompt."""
    tok, model = lm.tokenizer, lm.model
    start = time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt", add_special_tokens=False).to(lm.device)
            model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    return len(prompts) / (time.perf_counter() - start)


def rerank_rates(lm, release, current, n: int = 24) -> dict[str, float]:
    """Top-1 of the reranker by label / id / both on the fixed synonym set of tests/test_llm_rerank.py."""
    labels = dict(current)
    by_word: dict[str, list[str]] = {}
    for ident, label in current:
        for w in set(label.lower().split()):
            by_word.setdefault(w, []).append(ident)
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    syns = [(s.id, s.text) for s in release.synonyms if s.scope == "EXACT" and s.id in labels]
    queries = []
    for ident, syn in sorted(syns, key=lambda r: h(r[0] + r[1])):
        label = labels[ident]
        if syn.lower() == label.lower() or len(label) > 60:
            continue
        word = max(label.lower().split(), key=len)
        others = sorted((i for i in by_word.get(word, []) if i != ident), key=lambda i: h(ident + i))[:4]
        if len(others) == 4:
            queries.append((syn, ident, [Candidate(i, labels[i], 0.0) for i in [*others, ident]]))
        if len(queries) == n:
            break
    rates = {}
    for by in ("label", "id", "both"):
        ranked = rerank(lm, "hp", [(q, c) for q, _, c in queries], by=by, batch_size=40)
        rates[by] = sum(r[0].id == g for r, (_, g, _) in zip(ranked, queries, strict=True)) / len(queries)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128, help="terms per batched measurement")
    ap.add_argument("--n-single", type=int, default=32, help="terms for batch size 1 and the baseline loop")
    ap.add_argument("--batch-sizes", default="1,8,32,128")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--model", default=None, help="a model folder or .gguf file (default: SmolLM2-135M GGUF)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "etlnorm-test-ontologies")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--rerank", action="store_true", help="also compare reranking by label / id / both")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = load_model(args.model, dtype=args.dtype, device=args.device)
    load_s = time.perf_counter() - t0
    release, current = _terms(args.cache)
    t0 = time.perf_counter()
    trie = build_trie(lm.tokenizer, current)
    trie_s = time.perf_counter() - t0
    step = max(1, len(current) // args.n)
    terms = [label for _, label in current[::step]][: args.n]
    prompts = [build_prompt(lm.tokenizer, "hp", t) for t in terms]
    print(f"host: {platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"device {lm.device}, dtype {next(lm.model.parameters()).dtype}")  # fmt: skip
    print(f"model load {load_s:.1f} s; HPO trie ({len(trie.labels)} IDs) {trie_s:.1f} s; "
          f"{len(terms)} terms, max_new_tokens {args.max_new_tokens}")  # fmt: skip
    generate(lm, prompts[:2], batch_size=2, max_new_tokens=2)  # warm-up

    rates: dict[tuple[int, bool], float] = {}
    print(f"{'batch':>6} {'mode':>12} {'terms':>6} {'seconds':>8} {'terms/s':>8}")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        subset = prompts[: args.n_single] if bs == 1 else prompts
        for constrained in (False, True):
            start = time.perf_counter()
            generate(lm, subset, ontology="hp", batch_size=bs, max_new_tokens=args.max_new_tokens,
                     constraint=trie if constrained else None)  # fmt: skip
            if lm.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - start
            rates[(bs, constrained)] = len(subset) / dt
            mode = "constrained" if constrained else "free"
            print(f"{bs:>6} {mode:>12} {len(subset):>6} {dt:>8.2f} {len(subset) / dt:>8.2f}", flush=True)
    base = baseline(lm, prompts[: args.n_single], args.max_new_tokens)
    best_bs, best = max(((bs, r) for (bs, c), r in rates.items() if not c), key=lambda x: x[1])
    print(f"baseline one-at-a-time generate loop: {base:.2f} terms/s")
    print(f"best batched (free, batch {best_bs}): {best:.2f} terms/s = {best / base:.1f}x the baseline")
    if args.rerank:
        print("rerank top-1, 24 HPO synonyms, 5 candidates:", rerank_rates(lm, release, current))


if __name__ == "__main__":
    main()
