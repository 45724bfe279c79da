"""``etlnorm config check``: is everything a run needs in place? Config, database, ontologies,
indexes, calibrations, models and targets, each checked without building or loading anything heavy,
so an operator learns what is missing before a scheduled run does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from etlnorm.cascade.calibration import calibration_folder, load_calibration
from etlnorm.cascade.encoder import encoder_stamp, model_path
from etlnorm.cascade.normalizer import LLM_TIERS, Normalizer
from etlnorm.cascade.retrieval import index_folder, is_built
from etlnorm.config import Settings, config_file, load_settings
from etlnorm.db.engine import get_engine, masked_database
from etlnorm.errors import EtlnormError
from etlnorm.llm.model import default_model_dir
from etlnorm.ontology.registry import ONTOLOGIES
from etlnorm.ontology.store import list_ontologies
from etlnorm.warehouse.catalog import find_table, require_text_column

OK, LATER, WARN, MISSING = "ok", "built on first use", "warning", "missing"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, its status and what to do about it."""

    what: str
    status: str  # OK, LATER (made when first needed), WARN (works, but probably not as meant) or MISSING
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == MISSING


def check_all(settings: Settings | None = None) -> list[Check]:
    """Every check, in the order a run meets them; stops early only when no database is reachable."""
    try:
        settings = settings or load_settings()
    except EtlnormError as exc:
        return [Check("config", MISSING, str(exc))]
    checks = [Check("config", OK, str(config_file() or "no file: defaults and ETLNORM_* variables"))]
    try:
        engine = get_engine(settings)
    except EtlnormError as exc:
        return [*checks, Check("database", MISSING, str(exc))]
    checks.append(Check("database", OK, masked_database(settings)))
    checks += _encoders(settings)
    loaded = {o.name: o for o in list_ontologies(engine)}
    for name in sorted(set(loaded) | {t.ontology for t in settings.targets}):
        if name not in ONTOLOGIES:
            checks.append(Check(f"ontology {name}", MISSING, f"unknown; known: {', '.join(sorted(ONTOLOGIES))}"))
        elif name not in loaded:
            checks.append(Check(f"ontology {name}", MISSING, f"not loaded: etlnorm ontology load {name}"))
        else:
            checks.append(Check(f"ontology {name}", OK, f"release {loaded[name].release}, {loaded[name].n_terms} terms"))
            checks += _prepared(Normalizer(name, engine, settings))
    checks += _models(settings)
    with engine.connect() as conn:
        for target in settings.targets:
            what = f"target {target.table}.{target.column}"
            try:
                require_text_column(find_table(conn, target.table), target.column)
                checks.append(Check(what, OK, f"-> {target.ontology}"))
            except EtlnormError as exc:
                checks.append(Check(what, MISSING, str(exc)))
    if not settings.targets:
        checks.append(Check("targets", WARN, "none: the nightly flow refuses to run; add [[targets]] to etlnorm.toml"))
    return checks


def _encoders(settings: Settings) -> list[Check]:
    names = {None: settings.encoder_model, **settings.encoder_models}
    checks = []
    for ontology, configured in names.items():
        what = "encoder" if ontology is None else f"encoder {ontology}"
        try:
            checks.append(Check(what, OK, str(model_path(configured))))
        except EtlnormError as exc:
            checks.append(Check(what, MISSING, str(exc)))
    return checks


def _prepared(normalizer: Normalizer) -> list[Check]:
    """The ontology's index (for its route) and the calibration of its configuration."""
    settings, name = normalizer.settings, normalizer.ontology
    checks = []
    if normalizer.uses_index:
        try:
            stamp = encoder_stamp(settings, name)
        except EtlnormError:
            return checks  # the encoder check says why
        folder = index_folder(settings.home_dir, name, normalizer.fingerprint, stamp, normalizer.variant)
        built = is_built(folder)
        checks.append(Check(f"index {name}", OK if built else LATER,
                            str(folder) if built else f"etlnorm index build --ontology {name}"))  # fmt: skip
    found = load_calibration(calibration_folder(settings), name, normalizer.release, normalizer.calibration_key())
    hint = "auto_calibrate is off: confidence stays raw" if not settings.auto_calibrate else "etlnorm index build"
    checks.append(Check(f"calibration {name}", OK if found else LATER,
                        f"methods {', '.join(sorted(found.curves))}" if found else hint))  # fmt: skip
    return checks


def _models(settings: Settings) -> list[Check]:
    """The LLM (when a route uses it), adapters and rerankers named in the settings exist."""
    checks = []
    if any(LLM_TIERS & set(route) for route in settings.routing.values()):
        try:
            where = Path(settings.llm_model).expanduser() if settings.llm_model else default_model_dir()
            checks.append(Check("llm", OK if where.exists() or not settings.llm_model else MISSING, str(where)))
        except FileNotFoundError as exc:
            checks.append(Check("llm", MISSING, str(exc)))
    for kind, folders in (("adapter", settings.llm_adapters), ("rerank adapter", settings.llm_rerank_adapters),
                          ("reranker", settings.reranker_models)):  # fmt: skip
        for ontology, folder in sorted(folders.items()):
            exists = Path(folder).expanduser().is_dir()
            checks.append(Check(f"{kind} {ontology}", OK if exists else MISSING, folder))
    return checks
