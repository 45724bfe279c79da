"""Per-table views: a normalized table joined with the ontology store as it is now."""

from __future__ import annotations

from psycopg import sql
from sqlalchemy import Engine

from etlnorm.db.engine import raw
from etlnorm.errors import TableError
from etlnorm.ontology.registry import spec_for
from etlnorm.warehouse.catalog import check_name_length, find_table, output_columns


def create_table_view(engine: Engine, table: str, column: str, ontology: str, prefix: str | None = None,
                      name: str | None = None) -> str:  # fmt: skip
    """Create (or replace) ``<table>_<prefix>_v`` next to the table: every row, plus the mapped ID's
    current label and whether that ID is now obsolete (or gone) in the loaded release."""
    spec_for(ontology)  # a known name only, before it becomes a literal in the view's text
    prefix = prefix or f"{column}_{ontology}"
    with engine.begin() as conn:
        found = find_table(conn, table)
        view = name or f"{found.name}_{prefix}_v"
        for derived, what, suffix in ((view, "view", f"{found.name}__v"), (f"{prefix}_current_label", "view column",
                                      "_current_label")):  # fmt: skip
            check_name_length(derived, what, prefix, suffix)
        id_column = output_columns(prefix)["id"]
        if id_column not in found.columns:
            raise TableError(f"{found.qualified} has no column {id_column}: run `etlnorm run` on it first")
        statement = sql.SQL(
            "CREATE OR REPLACE VIEW {view} AS SELECT t.*, o.label AS {label}, o.release AS {release},"
            " CASE WHEN t.{id} IS NULL THEN NULL ELSE coalesce(o.obsolete, true) END AS {obsolete}"
            " FROM {tbl} t LEFT JOIN (SELECT term.id, term.label, term.obsolete, ont.release FROM etlnorm.term"
            " JOIN etlnorm.ontology ont ON ont.name = term.ontology WHERE term.ontology = {ontology}) o"
            " ON o.id = t.{id}"
        ).format(
            view=sql.Identifier(found.schema, view), tbl=found.ident, id=sql.Identifier(id_column),
            label=sql.Identifier(f"{prefix}_current_label"), release=sql.Identifier(f"{prefix}_release"),
            obsolete=sql.Identifier(f"{prefix}_obsolete"), ontology=sql.Literal(ontology),
        )  # fmt: skip
        raw(conn).execute(statement)
    return f"{found.schema}.{view}"
