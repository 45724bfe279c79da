"""Connections: one SQLAlchemy engine per URL, and the schema DDL from ``sql/``."""

from __future__ import annotations

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
    """Names of the DDL files shipped in ``etlnorm/sql``, in the order they apply."""
    folder = resources.files("etlnorm") / "sql"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))


def init_db(engine: Engine) -> list[str]:
    """Apply every DDL file; each is idempotent, so running this twice is harmless."""
    folder = resources.files("etlnorm") / "sql"
    applied = []
    with engine.begin() as conn:
        # One initializer at a time: concurrent CREATE ... IF NOT EXISTS can still collide.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('etlnorm.init_db'))"))
        for name in sql_files():
            raw(conn).execute((folder / name).read_text(encoding="utf-8"))
            applied.append(name)
    log.debug("schema %s ready (%s)", SCHEMA, ", ".join(applied))
    return applied


def ready_engine(settings: Settings | None = None) -> Engine:
    """An engine whose database has the etlnorm schema (applied on first use)."""
    engine = get_engine(settings)
    with engine.connect() as conn:
        # The newest object of the DDL: a database made by an older etlnorm gets the new parts too.
        found = conn.execute(text("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
                                  "'etlnorm' AND table_name = 'mapping' AND column_name = 'candidates')")).scalar()  # fmt: skip
    if not found:
        init_db(engine)
    return engine
