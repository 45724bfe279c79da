"""The review web app (Starlette, server-rendered Jinja2 templates, plain forms, one small script).

Routes: ``/`` the queue (one target or all) with pending decisions, ``/overview`` coverage, the
confidence histogram and the last runs, ``/search`` the search box's results (an HTML fragment),
``/export/sssom`` the SSSOM file, and the POST forms ``/curator``, ``/decide`` and ``/apply``.
Decisions go through ``etlnorm.ontology.curation.curate``; "apply now" is ``run_table`` limited to
the decided terms, the code ``etlnorm run`` runs. Blocking work runs in Starlette's thread pool.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import uvicorn
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from etlnorm.config import Settings, load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.errors import EtlnormError
from etlnorm.ontology.curation import curate
from etlnorm.review.charts import histogram_svg, methods_svg
from etlnorm.review.queue import (
    Target,
    cached_id,
    find_target,
    list_targets,
    pending_decisions,
    review_queue,
    target_histogram,
)
from etlnorm.review.search import Searcher
from etlnorm.review.security import CsrfError, Guard, check_bind, checked_form
from etlnorm.warehouse.export import cached_mappings, sssom_rows, write_sssom
from etlnorm.warehouse.records import list_runs
from etlnorm.warehouse.run import run_table

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
CURATOR_COOKIE = "etlnorm_curator"
TARGET_KEYS = ("table", "column", "ontology", "prefix")
QUEUE_LIMIT = 50
MAX_APPLY_TERMS = 200
ACTIONS = {"accept", "reject", "set"}


class ReadOnlyError(Exception):
    """A change asked of a read-only server."""


@dataclass
class Review:
    """What every request shares: settings, the database, the warm searcher, the mode."""

    settings: Settings
    engine: Engine
    searcher: Searcher
    read_only: bool
    templates: Jinja2Templates


def review(request: Request) -> Review:
    """The shared state of the app serving ``request``."""
    return request.app.state.review


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template with what every page needs (CSRF token, curator, mode); autoescaped."""
    r = review(request)
    return r.templates.TemplateResponse(request, name, {
        "csrf": request.state.csrf, "curator": request.cookies.get(CURATOR_COOKIE, ""), "read_only": r.read_only,
        "view": view_query(request.query_params), **context}, status_code=status)  # fmt: skip


def view_query(params: Any) -> str:
    """The target part of a query string (what a form sends back to return to the same view)."""
    return urlencode([(k, params[k]) for k in TARGET_KEYS if params.get(k)])


def chosen_target(request: Request, targets: list[Target]) -> Target | None:
    """The target the URL names (None: all of them); naming an unknown one is a user error."""
    params = request.query_params
    if not any(params.get(k) for k in TARGET_KEYS):
        return None
    return find_target(targets, *(params.get(k, "") for k in TARGET_KEYS))


def queue_page(request: Request) -> HTMLResponse:
    """The queue: pending decisions first, then the terms that need a person, most rows first."""
    r = review(request)
    targets = list_targets(r.engine)
    chosen = chosen_target(request, targets)
    shown = [chosen] if chosen else targets
    s = r.settings
    items = sorted((i for t in shown for i in review_queue(r.engine, t, s.review_below, s.min_confidence, QUEUE_LIMIT)),
                   key=lambda i: (-i.rows, i.term))[:QUEUE_LIMIT]  # fmt: skip
    pending = [p for t in shown for p in pending_decisions(r.engine, t)]
    return render(request, "queue.html", targets=targets, chosen=chosen, items=items, pending=pending,
                  note=request.query_params.get("note"), error=request.query_params.get("error"))  # fmt: skip


def overview_page(request: Request) -> HTMLResponse:
    """Coverage, rows by method and the confidence histogram per target; the last runs."""
    r = review(request)
    rows = []
    for t in list_targets(r.engine):
        buckets = target_histogram(r.settings, t)
        rows.append({"target": t, "methods": methods_svg(t.methods),
                     "histogram": histogram_svg(buckets) if buckets is not None else None})  # fmt: skip
    return render(request, "overview.html", rows=rows, runs=list_runs(r.engine, 20),
                  prefect=r.settings.prefect_ui_url.rstrip("/"))  # fmt: skip


def search_fragment(request: Request) -> HTMLResponse:
    """The search box's results for one queued term, as the HTML the page inserts."""
    r, params = review(request), request.query_params
    ontology, term = params.get("ontology", ""), params.get("term", "")
    hits = r.searcher.search(ontology, params.get("q", "")) if ontology else []
    return render(request, "search.html", hits=hits, ontology=ontology, term=term, view=params.get("view", ""))


def export_sssom(request: Request) -> Response:
    """The SSSOM/TSV file of ``etlnorm export sssom``, for one ontology or one target."""
    r, params = review(request), request.query_params
    ontology = params.get("ontology", "")
    release, mappings = cached_mappings(r.engine, ontology, params.get("table") or None, params.get("column") or None)
    rows = sssom_rows(ontology, release, mappings)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mappings.sssom.tsv"
        write_sssom(path, ontology, release, rows)
        body = path.read_bytes()
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{ontology}-{release}.sssom.tsv")
    return Response(body, media_type="text/tab-separated-values; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


async def changing_form(request: Request) -> FormData:
    """A POST's form once CSRF and the mode allow a change."""
    form = await checked_form(request)
    if review(request).read_only:
        raise ReadOnlyError("the review page runs read-only (--read-only): no decision or apply")
    return form


def back(form: FormData, **message: str) -> RedirectResponse:
    """Back to the queue view the form came from, with a note or an error to show."""
    view = [(k, v) for k, v in parse_qsl(str(form.get("view") or "")) if k in TARGET_KEYS]
    return RedirectResponse("/?" + urlencode(view + list(message.items())) + "#top", 303)


async def set_curator(request: Request) -> Response:
    """Remember the curator's name (a cookie): every decision is recorded with it."""
    form = await checked_form(request)
    name = str(form.get("curator") or "").strip()
    if not 1 <= len(name) <= 100:
        return back(form, error="give your name (1 to 100 characters) to record decisions")
    response = back(form, note=f"decisions are recorded as {name}")
    response.set_cookie(CURATOR_COOKIE, name, samesite="strict")
    return response


async def decide(request: Request) -> Response:
    """Accept a candidate (a set-id unless it is the cached answer), reject one, or set a searched ID."""
    form = await changing_form(request)
    r = review(request)
    curator = request.cookies.get(CURATOR_COOKIE, "").strip()
    action, ontology, term = (str(form.get(k) or "") for k in ("action", "ontology", "term"))
    ident = str(form.get("id") or "").strip() or None
    if not curator:
        return back(form, error="give your name first: each decision is recorded with it")
    if action not in ACTIONS or ident is None:
        return back(form, error="unknown action, or no ID given")
    try:
        if action == "reject":
            decision = "reject"
        else:
            current = await run_in_threadpool(cached_id, r.engine, ontology, term)
            decision = "accept" if action == "accept" and ident == current else "set-id"
        recorded = await run_in_threadpool(curate, r.engine, ontology, term, decision, ident, curator,
                                           "review page", form.get("synonym") == "1")  # fmt: skip
    except EtlnormError as exc:
        return back(form, error=str(exc))
    return back(form, note=f"{decision} {term!r} -> {recorded} by {curator}; apply it below, or the next run will")


async def apply(request: Request) -> Response:
    """Run the target for the posted terms only, now: ``run_table(..., terms=...)``."""
    form = await changing_form(request)
    r = review(request)
    terms = [str(t) for t in form.getlist("term")][:MAX_APPLY_TERMS]
    try:
        target = find_target(await run_in_threadpool(list_targets, r.engine), *(str(form.get(k) or "") for k in TARGET_KEYS))
        if not terms:
            return back(form, error="no term to apply")
        report = await run_in_threadpool(run_table, target.table, target.column, target.ontology, target.key,
                                         target.prefix, settings=r.settings, terms=terms)  # fmt: skip
    except EtlnormError as exc:
        return back(form, error=str(exc))
    return back(form, note=f"applied {len(terms)} term(s) to {target.name}: {report.stats.rows_updated} rows updated "
                           f"(run {report.plan.run_id})")  # fmt: skip


async def refused(request: Request, exc: Exception) -> Response:
    """403 for a form without its CSRF token, or a change asked of a read-only server."""
    return PlainTextResponse(str(exc), 403)


async def user_error(request: Request, exc: Exception) -> Response:
    """A user error (unknown target, ontology not loaded) as a page, not a traceback."""
    return render(request, "error.html", 400, message=str(exc))


def create_app(settings: Settings | None = None, *, read_only: bool = False) -> Starlette:
    """The app over the database of ``settings`` (the one ``etlnorm run`` uses)."""
    settings = settings or load_settings()
    engine = ready_engine(settings)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    routes = [
        Route("/", queue_page), Route("/overview", overview_page), Route("/search", search_fragment),
        Route("/export/sssom", export_sssom), Route("/curator", set_curator, methods=["POST"]),
        Route("/decide", decide, methods=["POST"]), Route("/apply", apply, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]  # fmt: skip
    token = settings.review_token.get_secret_value() if settings.review_token else None
    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token)],
                    exception_handlers={CsrfError: refused, ReadOnlyError: refused, EtlnormError: user_error})  # fmt: skip
    app.state.review = Review(settings, engine, Searcher(settings, engine), read_only, Jinja2Templates(env=env))
    return app


def serve(host: str = "127.0.0.1", port: int = 8765, *, read_only: bool = False,
          settings: Settings | None = None) -> None:  # fmt: skip
    """Serve the review page until interrupted; off loopback only with a token."""
    settings = settings or load_settings()
    check_bind(host, settings.review_token.get_secret_value() if settings.review_token else None)
    app = create_app(settings, read_only=read_only)
    log.info("review page on http://%s:%d/%s (Ctrl-C stops it)", host, port, " read-only" if read_only else "")
    uvicorn.run(app, host=host, port=port, log_level="warning")
