"""The README's first command: everything a new user needs to see etlnorm work, end to end."""

from __future__ import annotations

import time

from rich.console import Console

from etlnorm.config import load_settings
from etlnorm.db import get_engine, init_db
from etlnorm.display import ontology_table
from etlnorm.ontologies import read_release
from etlnorm.store import list_ontologies, save_release


def run_demo(out: Console, err: Console) -> None:
    """Set up the database, load HPO, show what is loaded."""
    start = time.perf_counter()
    settings = load_settings()
    engine = get_engine(settings)
    out.print(f"database: {engine.url.render_as_string(hide_password=True)}")
    init_db(engine)
    loaded = {o.name for o in list_ontologies(engine)}
    if "hp" not in loaded:
        with err.status("loading HPO ..."):
            release = read_release("hp", None, settings.home_dir / "ontologies", settings.http_timeout)
            save_release(engine, release)
    out.print(ontology_table(list_ontologies(engine)))
    out.print(f"demo finished in {time.perf_counter() - start:.1f} s")
