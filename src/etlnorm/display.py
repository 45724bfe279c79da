"""Rich tables for what the CLI and the demo show a person."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from etlnorm.ontology.store import LoadedOntology
from etlnorm.warehouse.records import RunRecord


def ontology_table(rows: Sequence[LoadedOntology]) -> Table | str:
    """Loaded releases, one row each; a hint when nothing is loaded."""
    if not rows:
        return "no ontology loaded: run `etlnorm ontology load hp`"
    table = Table("name", "release", "terms", "obsolete", "synonyms", "alt IDs", "loaded at", "source")
    for o in rows:
        table.add_row(o.name, o.release, str(o.n_terms), str(o.n_obsolete), str(o.n_synonyms), str(o.n_alt_ids),
                      f"{o.loaded_at:%Y-%m-%d %H:%M}", o.source)  # fmt: skip
    return table


def runs_table(rows: Sequence[RunRecord]) -> Table | str:
    """Recent runs, newest first."""
    if not rows:
        return "no runs yet: try `etlnorm run --table T --column C --ontology hp`"
    table = Table("started", "target", "ontology", "status", "rows", "updated", "distinct", "new", "seconds")
    for r in rows:
        seconds = sum((r.timings or {}).values())
        table.add_row(f"{r.started_at:%Y-%m-%d %H:%M:%S}", f"{r.table_name}.{r.column_name}",
                      f"{r.ontology} {r.release}", r.status + (f": {r.error[:60]}" if r.error else ""),
                      str(r.rows_seen or 0), str(r.rows_updated or 0), str(r.distinct_terms or 0),
                      str(r.new_terms or 0), f"{seconds:.1f}")  # fmt: skip
    return table
