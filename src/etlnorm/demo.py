"""The README's first command: set up, load HPO, normalize a demo annotation table, show coverage."""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from etlnorm.config import load_settings
from etlnorm.db.engine import EMBEDDED, get_engine, init_db
from etlnorm.display import ontology_table
from etlnorm.ontology.registry import read_release
from etlnorm.ontology.store import list_ontologies, save_release
from etlnorm.warehouse.run import run_table
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms

DEMO_TABLE = "demo.annotations"


def run_demo(out: Console, err: Console, rows: int = 5000, distinct: int = 800) -> None:
    """Everything a new user needs to see etlnorm work, on the embedded database by default."""
    start = time.perf_counter()
    if not load_settings().database_url:  # the demo is the one command that picks the embedded server itself
        os.environ["ETLNORM_DATABASE_URL"] = EMBEDDED
    settings = load_settings()
    engine = get_engine(settings)
    init_db(engine)
    if not list_ontologies(engine, "hp"):
        with err.status("loading HPO ..."):
            save_release(engine, read_release("hp", None, settings.home_dir / "ontologies", settings.http_timeout))
    out.print(ontology_table(list_ontologies(engine)))
    create_annotation_table(engine, DEMO_TABLE, distinct_terms(engine, "hp", distinct), rows)
    out.print(f"created {DEMO_TABLE}: {rows} rows of raw phenotype strings ({distinct} distinct)")
    summary = run_table(DEMO_TABLE, "term", "hp", settings=settings, progress=True)
    s = summary.stats
    out.print(f"normalized {DEMO_TABLE}.term: {s.rows_updated} rows updated, {s.new_terms} distinct terms "
              f"normalized, {s.cache_hits} from cache")  # fmt: skip
    out.print(sample_table(engine))
    out.print(coverage_table(engine))
    out.print(f"demo finished in {time.perf_counter() - start:.1f} s; rerun it: only new terms are normalized")


def sample_table(engine: Engine, n: int = 12) -> Table:
    """A few normalized rows, one per method where possible."""
    table = Table("term", "term_hp_id", "term_hp_label", "confidence", "method", title=f"{DEMO_TABLE} (sample)")
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT term, term_hp_id, term_hp_label, term_hp_confidence, term_hp_method FROM"
            " (SELECT *, row_number() OVER (PARTITION BY term_hp_method ORDER BY id) AS n FROM demo.annotations) s"
            " WHERE n <= 3 ORDER BY term_hp_method, id LIMIT :n"), {"n": n}).all()  # fmt: skip
    for r in rows:
        table.add_row(repr(r[0]), r[1] or "", r[2] or "", "" if r[3] is None else f"{r[3]:.2f}", r[4])
    return table


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def coverage_table(engine: Engine) -> Table:
    """The etlnorm.coverage view."""
    table = Table("table", "column", "ontology", "rows", "blank", "mapped", "of non-blank", "by method", "mean confidence",
                  title="etlnorm.coverage")  # fmt: skip
    with engine.connect() as conn:
        for r in conn.execute(text("SELECT * FROM etlnorm.coverage")).mappings():
            methods = ", ".join(f"{k}={v}" for k, v in sorted(r["rows_by_method"].items()))
            table.add_row(r["table_name"], r["column_name"], f"{r['ontology']} {r['release']}", str(r["rows"]),
                          str(r["blank_rows"]), str(r["mapped"]), _share(r["mapped_of_nonblank"]), methods, f"{r['mean_confidence']:.3f}")  # fmt: skip
    return table
