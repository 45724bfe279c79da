"""A private PostgreSQL under ``ETLNORM_HOME`` for when no database URL is configured.

Uses the ``pgserver`` wheel (PostgreSQL 16 binaries shipped on PyPI): it needs no system package,
works as root (it runs the server as a ``pgserver`` system user) and is shared by concurrent
etlnorm processes; the server stops when the last of them exits.
"""

from __future__ import annotations

import logging
import warnings
from functools import cache
from pathlib import Path

from etlnorm.errors import DatabaseError

log = logging.getLogger(__name__)


@cache
def embedded_url(home: Path) -> str:
    """Start (or join) the embedded server whose data lives in ``home/pgdata``; return its URL."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise DatabaseError(
            "no ETLNORM_DATABASE_URL set and the embedded PostgreSQL is unavailable: "
            "`pip install pgserver`, or set ETLNORM_DATABASE_URL=postgresql+psycopg://user@host/db"
        ) from exc
    home.mkdir(parents=True, exist_ok=True)
    pgdata = home / "pgdata"
    log.info("starting embedded PostgreSQL in %s", pgdata)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise DatabaseError(f"embedded PostgreSQL failed to start in {pgdata}: {exc}") from exc
    # Keep a reference so the server outlives this call and stops at interpreter exit.
    _servers.append(server)
    return server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


_servers: list[object] = []
