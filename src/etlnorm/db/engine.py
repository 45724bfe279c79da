"""Connections: one SQLAlchemy engine per URL, and the schema DDL from ``sql/``."""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from importlib import resources

import psycopg
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from etlnorm.config import Settings, load_settings
from etlnorm.db.embedded import embedded_url
from etlnorm.errors import ConfigError, DatabaseError

log = logging.getLogger(__name__)

SCHEMA = "etlnorm"


EMBEDDED = "embedded"  # database_url naming the private server under home (started on demand)
NO_DATABASE = ("no database configured: set ETLNORM_DATABASE_URL (or database_url in etlnorm.toml) to your "
               "PostgreSQL, e.g. postgresql+psycopg://user@host:5432/db, or use the private demo server with "
               "database_url = \"embedded\" or `etlnorm --embedded ...`")  # fmt: skip


def database_url(settings: Settings | None = None) -> str:
    """The configured URL, or the embedded server's when asked for by name; never a silent fallback,
    which would let a worker started without its environment write into the wrong database."""
    settings = settings or load_settings()
    if settings.database_url == EMBEDDED:
        return embedded_url(settings.home_dir)
    if settings.database_url:
        return settings.database_url
    raise ConfigError(NO_DATABASE)


@cache
def _engine_for(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"invalid database URL {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def get_engine(settings: Settings | None = None) -> Engine:
    """A pooled engine for the configured database; raises DatabaseError if it is unreachable."""
    engine = _engine_for(database_url(settings))
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(f"cannot connect to {where}: {reason}") from exc
    _announce(where)
    return engine


def masked_database(settings: Settings | None = None) -> str:
    """The database in use, as a URL with the password hidden (what logs and run artifacts show)."""
    return make_url(database_url(settings)).render_as_string(hide_password=True)


@cache
def _announce(masked: str) -> None:
    """Say once per process which database is used (password masked)."""
    log.info("database %s", masked)


def raw(conn: Connection) -> psycopg.Connection:
    """The psycopg connection under a SQLAlchemy one (for COPY), same transaction."""
    return conn.connection.driver_connection  # type: ignore[return-value]


def sql_files() -> list[str]:
    """Names of the DDL files shipped in ``etlnorm/sql``, in the order they apply (``NNN_name.sql``)."""
    folder = resources.files("etlnorm") / "sql"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))


def _shipped() -> list[tuple[int, str, str]]:
    """(version, file name, sha256 of its text) of every shipped migration."""
    folder = resources.files("etlnorm") / "sql"
    return [(int(name.split("_", 1)[0]), name, hashlib.sha256((folder / name).read_bytes()).hexdigest())
            for name in sql_files()]  # fmt: skip


def _recorded(conn: Connection) -> dict[int, str] | None:
    """The applied migrations' checksums by version; None when the database predates versioning."""
    exists = conn.execute(text("SELECT to_regclass('etlnorm.schema_version') IS NOT NULL")).scalar()
    if not exists:
        return None
    return dict(conn.execute(text("SELECT version, checksum FROM etlnorm.schema_version")).all())


def pending_migrations(conn: Connection) -> list[str]:
    """The migrations to apply: from the first one missing or changed, every file after it too.

    Every file is idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE``), so a database made before
    versioning (no ``etlnorm.schema_version``) gets them all, its data kept; re-applying a changed
    file re-applies the later ones, which may replace what it defines."""
    recorded = _recorded(conn) or {}
    for position, (version, _, checksum) in enumerate(shipped := _shipped()):
        if recorded.get(version) != checksum:
            return [name for _, name, _ in shipped[position:]]
    return []


def init_db(engine: Engine) -> list[str]:
    """Bring the schema up to date in one transaction; returns the migrations applied (none when current)."""
    folder = resources.files("etlnorm") / "sql"
    checksums = {name: (version, checksum) for version, name, checksum in _shipped()}
    with engine.begin() as conn:
        # One initializer at a time: concurrent CREATE ... IF NOT EXISTS can still collide.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('etlnorm.init_db'))"))
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS etlnorm"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS etlnorm.schema_version (version integer PRIMARY KEY,"
                          " name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"))  # fmt: skip
        applied = pending_migrations(conn)
        for name in applied:
            raw(conn).execute((folder / name).read_text(encoding="utf-8"))
            version, checksum = checksums[name]
            conn.execute(text("INSERT INTO etlnorm.schema_version (version, name, checksum) VALUES (:v, :n, :c)"
                              " ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, checksum = EXCLUDED.checksum,"
                              " applied_at = now()"), {"v": version, "n": name, "c": checksum})  # fmt: skip
    log.debug("schema %s: %s", SCHEMA, ", ".join(applied) if applied else "up to date")
    return applied


def ready_engine(settings: Settings | None = None) -> Engine:
    """An engine whose database has the etlnorm schema at this version (upgraded on first use)."""
    engine = get_engine(settings)
    if engine.url not in _current:
        with engine.connect() as conn:
            behind = bool(pending_migrations(conn))
        if behind:
            init_db(engine)
        _current.add(engine.url)  # checked once per database and process
    return engine


_current: set[object] = set()
