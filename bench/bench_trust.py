"""Trust on held-out strings: precision against coverage, etlnorm calibrated vs the stock script vs Gilda.

One held-out split (``--protocol``, seeded) of the loaded release; every system sees only its train
strings and answers its test queries:

- ``etlnorm``: the shipped route, calibrated the way it ships (``auto_calibrate``: curves fitted on
  held-out strings drawn from *inside* the train strings, so never on these queries), abstaining at
  nothing here so the whole curve is seen; confidence is calibrated precision;
- ``stock``: a plain MiniLM + FAISS script (dense retrieval alone, no lexical tier), ranked by cosine;
  ``stock, by lead``: the same answers ranked by their lead over the runner-up ID instead;
- ``gilda``: Gilda (PyPI) grounding over the same train strings (labels as names, synonyms as
  synonyms), ranked by its score: one operating point, since it answers only what it matches.

Prints precision at each coverage (share of all queries answered, most confident first), the
operating point at the shipped ``min_confidence``, the expected calibration error of etlnorm's
confidence per method on these queries, and writes the curves as a PNG with ``--plot``. Needs an
etlnorm database with the ontology loaded (``ETLNORM_DATABASE_URL``). Example::

    python bench/bench_trust.py --ontology hp --protocol synonym --plot bench/trust-hp.png
"""

from __future__ import annotations

import argparse
import time

from etlnorm.cascade.calibration import answer_feature, calibration_error
from etlnorm.cascade.heldout import PROTOCOLS, heldout_split, string_key
from etlnorm.cascade.normalizer import Normalizer
from etlnorm.cascade.retrieval import current_labels
from etlnorm.config import Settings, load_settings
from etlnorm.db.engine import ready_engine

THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
COVERAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
Scored = list[tuple[float, bool]]  # (confidence, right) of each answered query


def precision_at(scored: Scored, total: int, coverage: float) -> float | None:
    """Precision of the most confident ``coverage`` share of all ``total`` queries; None when fewer answered."""
    k = round(coverage * total)
    if k == 0 or k > len(scored):
        return None
    ranked = sorted(scored, key=lambda s: -s[0])[:k]
    return sum(ok for _, ok in ranked) / k


def at_threshold(scored: Scored, total: int, threshold: float) -> tuple[float, float | None]:
    """(coverage, precision) of the answers at or above ``threshold``."""
    kept = [ok for c, ok in scored if c >= threshold]
    return len(kept) / total, (sum(kept) / len(kept) if kept else None)


def etlnorm_answers(engine, settings: Settings, ontology: str, train, queries, gold) -> tuple[Scored, dict]:
    """The shipped route over the train strings, calibrated as it ships, abstaining at nothing."""
    normalizer = Normalizer(ontology, engine, settings.model_copy(update={"min_confidence": 0.0}), strings=train)
    start = time.perf_counter()
    calibration = normalizer.calibration
    print(f"etlnorm: calibrated in {time.perf_counter() - start:.0f} s on strings inside the train part "
          f"(methods {sorted(calibration.curves) if calibration else 'none'})")  # fmt: skip
    answers = normalizer.normalize(queries)
    scored = [(a.confidence, a.id == g) for a, g in zip(answers, gold, strict=True) if a.id is not None]
    by_method: dict[str, Scored] = {}
    for a, g in zip(answers, gold, strict=True):
        if a.id is not None:
            by_method.setdefault(a.method, []).append((a.confidence, a.id == g))
    return scored, by_method


def stock_answers(engine, settings: Settings, ontology: str, train, queries, gold) -> tuple[Scored, Scored]:
    """MiniLM + FAISS: dense retrieval alone, its top cosine as confidence; and the same answers
    ranked by their lead over the runner-up (what etlnorm calibrates ranking tiers on)."""
    plain = settings.model_copy(update={"min_confidence": 0.0, "char_tier": False})
    normalizer = Normalizer(ontology, engine, plain, route=["retrieval"], calibrated=False, strings=train)
    answered = [(a, a.id == g) for a, g in zip(normalizer.normalize(queries), gold, strict=True) if a.id is not None]
    return [(a.confidence, ok) for a, ok in answered], [(answer_feature(a), ok) for a, ok in answered]


def gilda_answers(ontology: str, train, labels: dict[str, str], queries, gold) -> Scored:
    """Gilda's top grounding of each query over the same train strings, its score as confidence."""
    from gilda.grounder import Grounder
    from gilda.process import normalize
    from gilda.term import Term

    terms = [Term(normalize(s), s, ontology.upper(), i, labels.get(i, s), "name" if labels.get(i) == s else "synonym",
                  "etlnorm") for i, s in train if normalize(s)]  # fmt: skip
    grounder = Grounder(terms)
    scored = []
    for query, g in zip(queries, gold, strict=True):
        matches = grounder.ground(query)
        if matches:
            scored.append((float(matches[0].score), matches[0].term.id == g))
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ontology", default="hp")
    parser.add_argument("--protocol", default="synonym", choices=PROTOCOLS)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, help="score a seeded sample of this many queries")
    parser.add_argument("--plot", help="write the precision-coverage curves to this PNG")
    args = parser.parse_args()
    settings = load_settings()
    engine = ready_engine(settings)
    split = heldout_split(engine, args.ontology, args.protocol, seed=args.seed)
    test = split.test[: args.limit] if args.limit else split.test
    # A label's variant in etlnorm's own calibration set can spell a held-out synonym: not scored.
    probe = Normalizer(args.ontology, engine, settings, strings=split.train)
    fitted = {string_key(q) for q, _ in probe.calibration_split().test}
    dropped = [q for q, _ in test if string_key(q) in fitted]
    test = [(q, g) for q, g in test if string_key(q) not in fitted]
    print(f"{len(dropped)} queries left out: also in the calibration set ({dropped[:4]})")
    queries, gold = [q for q, _ in test], [g for _, g in test]
    labels = {i: lab for i, lab in current_labels(engine, args.ontology).items() if lab}
    print(f"{args.ontology} {split.release}, protocol {args.protocol} (seed {args.seed}): "
          f"{len(split.train)} train strings, {len(test)} held-out queries\n")  # fmt: skip
    systems: dict[str, Scored] = {}
    start = time.perf_counter()
    systems["etlnorm"], by_method = etlnorm_answers(engine, settings, args.ontology, split.train, queries, gold)
    print(f"etlnorm: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    systems["stock"], systems["stock, by lead"] = stock_answers(engine, settings, args.ontology, split.train,
                                                                queries, gold)  # fmt: skip
    print(f"stock: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    systems["gilda"] = gilda_answers(args.ontology, split.train, labels, queries, gold)
    print(f"gilda: {time.perf_counter() - start:.0f} s\n")
    total = len(queries)
    print("| precision at coverage | " + " | ".join(f"{c:.1f}" for c in COVERAGES) + " | answered |")
    print("|---|" + "---|" * (len(COVERAGES) + 1))
    for name, scored in systems.items():
        cells = [precision_at(scored, total, c) for c in COVERAGES]
        print(f"| {name} | " + " | ".join("-" if p is None else f"{p:.3f}" for p in cells)
              + f" | {len(scored) / total:.3f} |")  # fmt: skip
    print("\n| etlnorm at min_confidence | " + " | ".join(f"{t:.2f}" for t in THRESHOLDS) + " |")
    print("|---|" + "---|" * len(THRESHOLDS))
    points = [at_threshold(systems["etlnorm"], total, t) for t in THRESHOLDS]
    print("| coverage | " + " | ".join(f"{c:.3f}" for c, _ in points) + " |")
    print("| precision | " + " | ".join("-" if p is None else f"{p:.3f}" for _, p in points) + " |")
    default = load_settings().min_confidence
    coverage, precision = at_threshold(systems["etlnorm"], total, default)
    g_cov, g_prec = at_threshold(systems["gilda"], total, 0.0)
    print(f"\netlnorm at the shipped min_confidence {default}: coverage {coverage:.3f}, "
          f"precision {precision if precision is None else round(precision, 3)}")  # fmt: skip
    print(f"gilda (all its answers): coverage {g_cov:.3f}, precision {g_prec if g_prec is None else round(g_prec, 3)}; "
          f"etlnorm at that coverage: {precision_at(systems['etlnorm'], total, g_cov):.3f}")  # fmt: skip
    print("\n| etlnorm method | answers | precision | mean confidence | ECE |\n|---|---|---|---|---|")
    for method, scored in sorted(by_method.items()):
        conf, ok = [c for c, _ in scored], [o for _, o in scored]
        print(f"| {method} | {len(scored)} | {sum(ok) / len(ok):.3f} | {sum(conf) / len(conf):.3f} | "
              f"{calibration_error(conf, ok):.3f} |")  # fmt: skip
    if args.plot:
        plot(systems, total, args.plot, f"{args.ontology} {args.protocol}: {total} held-out queries")
        print(f"\nwrote {args.plot}")


def plot(systems: dict[str, Scored], total: int, path: str, title: str) -> None:
    """Precision against coverage, one line per system (most confident answers first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, scored in systems.items():
        ranked = sorted(scored, key=lambda s: -s[0])
        hits, xs, ys = 0, [], []
        for k, (_, ok) in enumerate(ranked, 1):
            hits += ok
            if k % 10 == 0 or k == len(ranked):
                xs.append(k / total)
                ys.append(hits / k)
        ax.plot(xs, ys, label=name, marker="o" if len(xs) < 3 else None)
    ax.set(xlabel="coverage (share of queries answered)", ylabel="precision of the answers", title=title,
           xlim=(0, 1), ylim=(0, 1.02))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
