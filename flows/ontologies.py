"""``refresh-ontologies``: load new ontology releases and build their retrieval indexes.

Cached mappings made under other content become stale by themselves (``pending_terms`` compares
content fingerprints), so the next normalize-table run recomputes what the new release could change.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.ontology.store import list_ontologies
from etlnorm.ontology.update import update_release

try:
    from flows.retry import RETRIES, RETRY_DELAYS, transient_db_error
except ImportError:  # pragma: no cover - entrypoint loaded with only flows/ on sys.path
    from retry import RETRIES, RETRY_DELAYS, transient_db_error  # type: ignore[no-redef]


@task(name="load-release", retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=transient_db_error,
      cache_policy=NO_CACHE)  # fmt: skip
def load_release_task(name: str, source: str | None, allow_shrink: bool, allow_downgrade: bool) -> dict[str, Any]:
    """Fetch, parse and store a release (source None: the official URL; unreachable, the loaded one is kept)."""
    settings = load_settings()
    update = update_release(ready_engine(settings), settings, name, source, allow_shrink=allow_shrink,
                            allow_downgrade=allow_downgrade)  # fmt: skip
    loaded, previous = update.loaded, update.previous.release if update.previous else None
    if update.kept:
        get_run_logger().warning(update.kept)
    else:
        get_run_logger().info("%s: release %s (was %s), %d terms, from %s", name, loaded.release, previous,
                              loaded.n_terms, loaded.source)  # fmt: skip
    return {"name": name, "release": loaded.release, "previous": previous, "terms": loaded.n_terms,
            "source": loaded.source, "fingerprint": loaded.fingerprint, "kept": update.kept}  # fmt: skip


@task(name="build-index", cache_policy=NO_CACHE)
def build_index_task(name: str, variant: str | None) -> dict[str, Any]:
    """The retrieval index of the current release (kept if it already exists)."""
    from etlnorm.cascade.encoder import encoder_for
    from etlnorm.cascade.retrieval import build_index

    settings = load_settings()
    encoder = encoder_for(settings, name)
    variant = variant or settings.index_variant
    folder, built = build_index(ready_engine(settings), name, encoder, settings.home_dir, variant, progress=False)
    get_run_logger().info("%s index (%s): %s %s", name, variant, "built" if built else "already present", folder)
    return {"name": name, "variant": variant, "folder": str(folder), "built": built}


@flow(name="refresh-ontologies")
def refresh_ontologies(ontologies: list[str] | None = None, sources: dict[str, str] | None = None,
                       allow_shrink: bool = False, variant: str | None = None,
                       allow_downgrade: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Reload each ontology (default: those loaded now) and build its index for ``variant`` (default: setting).

    sources: per ontology, a path, URL or "pinned" (default: the official URL; when it is unreachable
    the loaded release is kept and the flow says so). allow_downgrade: accept releases dated before the loaded ones.
    """
    names = ontologies or [o.name for o in list_ontologies(ready_engine(load_settings()))]
    if not names:
        get_run_logger().warning("no ontology loaded and none named: nothing to refresh")
    results = []
    for name in names:
        loaded = load_release_task(name, (sources or {}).get(name), allow_shrink, allow_downgrade)
        results.append({**loaded, "index": build_index_task(name, variant)})
    return results
