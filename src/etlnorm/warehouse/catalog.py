"""Warehouse tables as the Postgres catalog knows them: names are looked up, never trusted.

Every table and column name a user gives is matched against ``pg_catalog`` and then only ever
used through ``psycopg.sql.Identifier`` (quoted), so a hostile name cannot become SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql
from sqlalchemy import Connection, text

from etlnorm.errors import TableError

TEXT_TYPES = {"text", "character varying", "character"}
OUTPUT_TYPES = {"id": "text", "label": "text", "confidence": "real", "method": "text"}


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: dict[str, str]  # column -> data type, in catalog order
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table``; a quoted part (``"a.b".c``) may hold dots."""
    parts: list[str] = []
    current, quoted, i = "", False, 0
    while i < len(name):
        ch = name[i]
        if ch == '"':
            if quoted and i + 1 < len(name) and name[i + 1] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    if quoted or len(parts) > 2 or not all(parts):
        raise TableError(f"not a table name: {name!r} (expected TABLE or SCHEMA.TABLE)")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def find_table(conn: Connection, name: str) -> Table:
    """The table named ``name`` (exact case; unqualified names follow the search_path)."""
    schema, table = split_name(name)
    row = conn.execute(
        text(
            "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = :t AND c.relkind IN ('r', 'p')"
            " AND (n.nspname = :s OR (CAST(:s AS text) IS NULL AND n.nspname = ANY (current_schemas(false))))"
            " ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1"
        ),
        {"t": table, "s": schema},
    ).first()
    if row is None:
        raise TableError(f"no table {name!r} in the database")
    columns = dict(
        conn.execute(
            text(
                "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a"
                " WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
            ),
            {"oid": row.oid},
        ).all()
    )
    pk = conn.execute(
        text(
            "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = :oid AND i.indisprimary ORDER BY k.n"
        ),
        {"oid": row.oid},
    ).scalars()
    return Table(row.nspname, row.relname, columns, tuple(pk))


def table_columns(conn: Connection, table: Table) -> set[str]:
    """The columns ``table`` has now (another run may have added some since it was planned); found
    by its exact schema and name, never by re-parsing its display name."""
    return set(conn.execute(
        text("SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
             " JOIN pg_namespace n ON n.oid = c.relnamespace"
             " WHERE n.nspname = :s AND c.relname = :t AND a.attnum > 0 AND NOT a.attisdropped"),
        {"s": table.schema, "t": table.name},
    ).scalars())  # fmt: skip


def require_text_column(table: Table, column: str) -> None:
    if column not in table.columns:
        raise TableError(f"table {table.qualified} has no column {column!r}")
    if table.columns[column] not in TEXT_TYPES:
        raise TableError(f"column {table.qualified}.{column} is {table.columns[column]}, not text")


def key_column(table: Table, key: str | None) -> str:
    """``key`` if given and present, else the single-column primary key."""
    if key is not None:
        if key not in table.columns:
            raise TableError(f"table {table.qualified} has no key column {key!r}")
        return key
    if len(table.primary_key) == 1:
        return table.primary_key[0]
    if not table.primary_key:
        raise TableError(f"table {table.qualified} has no primary key: name a unique column with --key")
    raise TableError(f"table {table.qualified} has a composite primary key: name one unique column with --key")


def output_columns(prefix: str) -> dict[str, str]:
    """The four columns a run writes: ``<prefix>_id``, ``_label``, ``_confidence``, ``_method``."""
    return {part: f"{prefix}_{part}" for part in OUTPUT_TYPES}


MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are truncated without a word


def check_name_length(name: str, what: str, prefix: str, suffix: str) -> None:
    """Refuse a derived name PostgreSQL would silently truncate, naming the ``--prefix`` that fits."""
    size = len(name.encode())
    if size > MAX_IDENTIFIER_BYTES:
        room = MAX_IDENTIFIER_BYTES - len(suffix.encode())
        raise TableError(f"{what} {name!r} would be {size} bytes, over PostgreSQL's {MAX_IDENTIFIER_BYTES} "
                         f"(it would be truncated): choose a --prefix of at most {room} bytes instead of {prefix!r}")  # fmt: skip


def check_output_columns(table: Table, prefix: str) -> None:
    """Output column names must fit PostgreSQL's limit, and existing ones have the types a run writes."""
    for part, column in output_columns(prefix).items():
        check_name_length(column, "output column", prefix, f"_{max(OUTPUT_TYPES, key=len)}")
        found = table.columns.get(column)
        if found is not None and found != OUTPUT_TYPES[part]:
            raise TableError(f"column {table.qualified}.{column} exists as {found}, expected {OUTPUT_TYPES[part]}")
