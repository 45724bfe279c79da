"""``normalize-warehouse``: every configured target (``targets`` in etlnorm.toml / ETLNORM_TARGETS), as subflows."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from etlnorm.config import config_file, load_settings
from etlnorm.db.engine import masked_database

try:
    from flows.normalize import normalize_table
except ImportError:  # pragma: no cover - entrypoint loaded with only flows/ on sys.path
    from normalize import normalize_table  # type: ignore[no-redef]


@flow(name="normalize-warehouse")
def normalize_warehouse(force: bool = False, runner: str = "default", dask_address: str | None = None,
                        dask_workers: int = 2) -> list[dict[str, Any]]:  # fmt: skip
    """Run normalize-table for each target in turn; a failed target does not stop the others, but fails this run."""
    logger = get_run_logger()
    settings = load_settings()
    targets = settings.targets
    if not targets:  # a nightly run that normalizes nothing must not look like success
        where = config_file() or "none; the worker reads ETLNORM_CONFIG or ./etlnorm.toml in its working directory"
        raise ValueError(f"no targets configured (config file: {where}): add [[targets]] with table, column, ontology")
    logger.info("%d targets, database %s", len(targets), masked_database(settings))
    results, failed = [], []
    for target in targets:
        state = normalize_table(target.table, target.column, target.ontology, key=target.key, prefix=target.prefix,
                                force=force, runner=runner, dask_address=dask_address, dask_workers=dask_workers,
                                return_state=True)  # fmt: skip
        name = f"{target.table}.{target.column} ({target.ontology})"
        if state.is_completed():
            results.append(state.result())
            logger.info("%s: completed", name)
        else:
            failed.append(name)
            logger.error("%s: %s", name, state.message)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(targets)} targets failed: {', '.join(failed)}")
    return results
