"""Rich tables for what the CLI and the demo show a person."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from etlnorm.store import LoadedOntology


def ontology_table(rows: Sequence[LoadedOntology]) -> Table | str:
    """Loaded releases, one row each; a hint when nothing is loaded."""
    if not rows:
        return "no ontology loaded: run `etlnorm ontology load hp`"
    table = Table("name", "release", "terms", "obsolete", "synonyms", "alt IDs", "loaded at", "source")
    for o in rows:
        table.add_row(o.name, o.release, str(o.n_terms), str(o.n_obsolete), str(o.n_synonyms), str(o.n_alt_ids),
                      f"{o.loaded_at:%Y-%m-%d %H:%M}", o.source)  # fmt: skip
    return table
