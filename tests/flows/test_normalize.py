"""Prefect flows against real Prefect (in-process test server, and a real `prefect server` + worker) and real Postgres."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from etlnorm.config import load_settings
from etlnorm.ontology.registry import fetch_source, spec_for
from etlnorm.threads import worker_share
from etlnorm.warehouse.phases import pending_terms, plan_run
from etlnorm.warehouse.synthetic import create_annotation_table, distinct_terms
from tests.warehouse.test_run import checksum, scalar

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def terms(engine, hp, hp_labels) -> list[str]:
    return distinct_terms(engine, "hp", 300, seed=23)


def copy_table(engine, source: str, target: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {target}"))
        conn.execute(text(f"CREATE TABLE {target} (LIKE {source} INCLUDING ALL)"))
        conn.execute(text(f"INSERT INTO {target} SELECT * FROM {source}"))  # noqa: S608 - test-owned names


def read_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found


def test_normalize_table_in_process_fills_columns_and_writes_the_artifact(engine, terms, harness):
    from etlnorm.warehouse.run import run_table
    from flows.normalize import normalize_table

    create_annotation_table(engine, "flows.basic", terms[:200], rows=4000, seed=5)
    copy_table(engine, "flows.basic", "flows.reference")
    result = normalize_table("flows.basic", "term", "hp", batch_size=40)
    stats = result["stats"]
    assert stats["rows_seen"] == 4000 and stats["rows_updated"] == 4000
    assert stats["distinct_terms"] == stats["new_terms"] + stats["cache_hits"] > 150
    assert scalar(engine, "SELECT count(*) FROM flows.basic WHERE term_hp_method IS NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM flows.basic WHERE term_hp_id IS NOT NULL") > 3000
    assert scalar(engine, "SELECT status FROM etlnorm.run WHERE run_id = :r", r=result["run_id"]) == "completed"
    # The flow run is recorded with the run (the review page links to it in the Prefect UI).
    assert scalar(engine, "SELECT flow_run_id IS NOT NULL FROM etlnorm.run WHERE run_id = :r", r=result["run_id"])
    # Several batch tasks, one process, one warm normalizer (get_normalizer's per-process cache).
    assert result["processes"] == [os.getpid()] and len(result["normalizers"]) == 1
    # Histogram from SQL: buckets cover every row with a confidence.
    assert sum(b["rows"] for b in result["histogram"]) == scalar(
        engine, "SELECT count(*) FROM flows.basic WHERE term_hp_confidence IS NOT NULL")  # fmt: skip
    # The library's own run over the same rows gives the same table.
    run_table("flows.reference", "term", "hp")
    assert checksum(engine, "flows.reference") == checksum(engine, "flows.basic")

    assert result["artifact"] == "normalize-flows-basic-term"
    (artifact,) = read_artifact("normalize-flows-basic-term")
    assert artifact.type == "markdown"
    body = artifact.data
    masked = make_url(os.environ["ETLNORM_DATABASE_URL"]).render_as_string(hide_password=True)
    assert body.startswith(f"database: `{masked}`")  # the run says which database it wrote to
    assert "flows.basic.term" in body and "| 4000 | 4000 |" in body
    assert "## Rows per method" in body and "| exact |" in body
    assert "## Confidence histogram" in body and "| 0.9–1.0 |" in body
    assert "## Time per phase" in body and "| update |" in body
    assert f"| {stats['cache_hits']} |" in body


def _terminate_during_update(engine, runner: threading.Thread, table: str, everyone: bool) -> int:
    """Wait for the run's UPDATE of ``table``, then terminate its backend (or, ``everyone``, as a
    database restart would, every backend of the database but this one): how many were terminated."""
    with engine.connect() as conn:
        conn.execute(text("SET application_name = 'flows-test-killer'"))
        conn.commit()
        deadline = time.monotonic() + 120
        while runner.is_alive() and time.monotonic() < deadline:
            pids = conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
                " AND pid <> pg_backend_pid() AND query LIKE :q"), {"q": f'UPDATE "flows"."{table}" AS t%'}).scalars().all()  # fmt: skip
            conn.commit()
            if pids:
                terminated = conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND (:all OR pid = ANY(:p))"), {"all": everyone, "p": pids}).scalar()  # fmt: skip
                conn.commit()
                return terminated
            time.sleep(0.005)
    return 0


def _update_task_retried() -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="update-range")))
    return any(run.run_count >= 2 for run in runs)


def test_a_terminated_database_connection_is_retried_and_the_table_is_right(engine, terms, harness):
    """A worker's connection terminated mid-UPDATE: the task is retried and the run completes. A
    restart that also ends the lock's session: the run stops with a clear error before its next
    write, and a rerun resumes. Either way the table equals an uninterrupted run's."""
    from flows.normalize import normalize_table

    create_annotation_table(engine, "flows.restart", terms[:200], rows=150_000, seed=6)
    copy_table(engine, "flows.restart", "flows.restart_ref")
    copy_table(engine, "flows.restart", "flows.restart_all")
    normalize_table("flows.restart_ref", "term", "hp")  # uninterrupted (terms cached by now: update phase only)

    for table, everyone in (("restart", False), ("restart_all", True)):
        outcome: dict = {}
        runner = threading.Thread(target=lambda t=table, o=outcome: o.update(
            state=normalize_table(f"flows.{t}", "term", "hp", update_batch_rows=25_000, return_state=True)))  # fmt: skip
        runner.start()
        terminated = _terminate_during_update(engine, runner, table, everyone)
        runner.join(300)
        assert terminated >= (2 if everyone else 1), "the update phase ended before a backend could be terminated"
        state = outcome["state"]
        if everyone:
            assert state.is_failed() and "LockLostError" in state.message and "Rerun to resume" in state.message
            assert normalize_table(f"flows.{table}", "term", "hp", return_state=True).is_completed()
            statuses = scalar(engine, "SELECT string_agg(status, ',' ORDER BY started_at) FROM etlnorm.run"
                                      " WHERE table_name = :t", t=f"flows.{table}")  # fmt: skip
            assert statuses == "failed,completed"
        else:
            assert state.is_completed(), state.message
            assert scalar(engine, "SELECT status FROM etlnorm.run WHERE run_id = :r",
                          r=state.result()["run_id"]) == "completed"  # fmt: skip
        assert checksum(engine, f"flows.{table}") == checksum(engine, "flows.restart_ref")
    assert _update_task_retried(), "no update task was retried"


def test_dask_runner_on_two_local_workers_gives_the_same_table(engine, terms, harness):
    from flows.normalize import normalize_table

    create_annotation_table(engine, "flows.dask", terms[100:300], rows=6000, seed=7)
    copy_table(engine, "flows.dask", "flows.threads")
    on_dask = normalize_table("flows.dask", "term", "hp", batch_size=25, force=True, runner="dask",
                              dask_workers=2, update_batch_rows=1000)  # fmt: skip
    assert on_dask["stats"]["new_terms"] == on_dask["stats"]["distinct_terms"] > 150
    # Batches ran in the Dask worker processes, each of which loaded its normalizer once.
    assert os.getpid() not in on_dask["processes"] and 1 <= len(on_dask["processes"]) <= 2
    assert len(on_dask["normalizers"]) == len(on_dask["processes"])
    assert {n for _, n in on_dask["threads"]} == {worker_share(2)}  # the cores split between the workers
    default = normalize_table("flows.threads", "term", "hp", batch_size=25, force=True, update_batch_rows=1000)
    assert default["stats"]["new_terms"] == on_dask["stats"]["new_terms"]
    # Same IDs, labels and methods row for row; confidences equal to 1e-4 (Dask workers run the encoder
    # single-threaded, and float sums in another order differ in the last bits of a real).
    differ = scalar(engine, "SELECT count(*) FROM flows.dask d JOIN flows.threads t USING (id) WHERE"
                            " (d.term_hp_id, d.term_hp_label, d.term_hp_method) IS DISTINCT FROM"
                            " (t.term_hp_id, t.term_hp_label, t.term_hp_method)"
                            " OR abs(coalesce(d.term_hp_confidence, -1) - coalesce(t.term_hp_confidence, -1)) > 1e-4")  # fmt: skip
    assert differ == 0
    assert scalar(engine, "SELECT count(*) FROM flows.dask WHERE term_hp_method IS NULL") == 0


def test_refresh_ontologies_loads_a_new_release_and_cached_mappings_become_stale(engine, terms, harness, tmp_path):
    from flows.normalize import normalize_table
    from flows.ontologies import refresh_ontologies

    create_annotation_table(engine, "flows.stale", terms[:60], rows=600, seed=8)
    first = normalize_table("flows.stale", "term", "hp")
    # A "new release": the pinned HPO cut to its first 400 terms, versioned 2099-01-01 (small, so its index builds fast).
    pinned = fetch_source(spec_for("hp"), "pinned", Path(os.environ["ETLNORM_HOME"]) / "ontologies" / "hp", 30).path
    text_ = pinned.read_text(encoding="utf-8")
    head, *stanzas = text_.split("\n[Term]\n")
    head = re.sub(r"(?m)^data-version: .*$", "data-version: hp/releases/2099-01-01", head)
    newer = tmp_path / "hp-2099.obo"
    newer.write_text(head + "".join("\n[Term]\n" + s.split("\n[Typedef]\n")[0] for s in stanzas[:400]) + "\n")
    try:
        (loaded,) = refresh_ontologies(["hp"], sources={"hp": str(newer)}, allow_shrink=True)
        assert (loaded["release"], loaded["previous"]) == ("2099-01-01", "2025-01-16") and loaded["terms"] < 1000
        # The index is keyed by the new content, not by the label.
        assert loaded["index"]["built"] and loaded["fingerprint"].replace(":", "_") in loaded["index"]["folder"]
        plan = plan_run(load_settings(), "flows.stale", "term", "hp")
        pending, distinct = pending_terms(plan)
        assert len(pending) == distinct == first["stats"]["distinct_terms"]  # every cached answer is of other content
        assert scalar(engine, "SELECT count(*) FROM etlnorm.stale_mapping WHERE term = ANY (CAST(:t AS text[]))",
                      t=pending) == distinct  # fmt: skip
        again = normalize_table("flows.stale", "term", "hp")
        kept, redone = again["stats"]["carried_over"], again["stats"]["new_terms"]
        # Kept: exact matches to one of the 400 terms left; the rest (most IDs are gone) recomputed.
        assert again["release"] == "2099-01-01" and kept + redone == distinct and redone > kept
        assert scalar(engine, "SELECT count(*) FROM etlnorm.stale_mapping WHERE term = ANY (CAST(:t AS text[]))",
                      t=pending) == 0  # fmt: skip
    finally:  # the rest of the session expects the pinned release (its index exists: not rebuilt)
        (restored,) = refresh_ontologies(["hp"], sources={"hp": "pinned"}, allow_downgrade=True)  # 2025 < 2099
        with engine.begin() as conn:  # and no stale mappings left behind by this test
            conn.execute(text("DELETE FROM etlnorm.mapping WHERE ontology = 'hp' AND release = '2099-01-01'"))
    assert restored["release"] == "2025-01-16" and not restored["index"]["built"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process this test started, and its children (its own process group, by its PID)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _project(tmp_path: Path, database_url: str) -> Path:
    """A checkout as the README's walk leaves it: prefect.yaml, flows/ and an etlnorm.toml beside them."""
    project = tmp_path / "checkout"
    project.mkdir()
    shutil.copy(REPO / "prefect.yaml", project)
    shutil.copytree(REPO / "flows", project / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "etlnorm.toml").write_text(
        f'database_url = "{database_url}"\nhome = "{os.environ["ETLNORM_HOME"]}"\nindex_variant = "labels"\n'
        '[[targets]]\ntable = "flows.e2e"\ncolumn = "term"\nontology = "hp"\n'
    )
    return project


def _wait_for_run(api: str, flow_run_id: str, log: Path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    state = None
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=5).json()["state"]["type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(1)
    assert state == "COMPLETED", f"flow run {flow_run_id} ended {state}:\n{log.read_text()[-6000:]}"


def test_end_to_end_readme_walk(engine, terms, hp_labels, tmp_path):
    """The README's production walk, terminal by terminal: config in ./etlnorm.toml and Prefect's
    profile (no ETLNORM_* or PREFECT_API_URL exported to any terminal), server, pool, worker, deploy
    (schedules paused), a backfill and the nightly run, watched from the CLI, worker stopped by Ctrl-C."""
    create_annotation_table(engine, "flows.e2e", terms[:150], rows=3000, seed=9)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    project = _project(tmp_path, os.environ["ETLNORM_DATABASE_URL"])
    home = tmp_path / "prefect-home"
    home.mkdir()
    # No ETLNORM_* (the walk's configuration is etlnorm.toml) and no PREFECT_* but PREFECT_HOME (its profile).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ETLNORM_"))}
    env.update(PREFECT_HOME=str(home))
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("server", "worker")}
    started: list[subprocess.Popen] = []

    def command(*args: str, timeout: float = 120) -> str:
        done = subprocess.run(list(args), cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def prefect(*args: str, timeout: float = 120) -> str:
        return command(PREFECT, *args, timeout=timeout)

    def start(*args: str, log: str) -> subprocess.Popen:
        proc = subprocess.Popen([PREFECT, *args], cwd=project, env=env, stdout=logs[log], stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        started.append(proc)
        return proc

    try:
        prefect("config", "set", f"PREFECT_API_URL={api}", "PREFECT_SERVER_ANALYTICS_ENABLED=false",
                "PREFECT_WORKER_QUERY_SECONDS=2", "PREFECT_UI_ENABLED=false")  # fmt: skip
        checked = command(str(Path(PREFECT).with_name("etlnorm")), "config", "check", "--json")
        assert not [c for c in json.loads(checked) if c["failed"]], checked
        server = start("server", "start", "--host", "127.0.0.1", "--port", str(port), log="server")
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server did not come up"
            time.sleep(0.5)
        prefect("work-pool", "create", "etlnorm", "--type", "process")
        worker = start("worker", "start", "--pool", "etlnorm", "--type", "process", log="worker")
        deployed = prefect("--no-prompt", "deploy", "--all")
        assert "normalize-table/backfill" in deployed and "normalize-warehouse/nightly" in deployed
        for name in ("normalize-warehouse/nightly", "refresh-ontologies/weekly"):  # deployed paused
            schedules = httpx.get(f"{api}/deployments/name/{name}", timeout=5).json()["schedules"]
            assert schedules and not any(s["active"] for s in schedules), schedules
        out = prefect("deployment", "run", "normalize-table/backfill", "--param", "table=flows.e2e",
                      "--param", "column=term", "--param", "ontology=hp")  # fmt: skip
        backfill = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
        _wait_for_run(api, backfill, tmp_path / "worker.log")
        assert "COMPLETED" in prefect("flow-run", "inspect", backfill).upper()
        nightly = re.search(r"UUID:\s*([0-9a-f-]{36})", prefect("deployment", "run", "normalize-warehouse/nightly"))
        _wait_for_run(api, nightly.group(1), tmp_path / "worker.log")
        worker.send_signal(signal.SIGINT)  # Ctrl-C in terminal 2
        worker.wait(60)
    finally:
        for proc in reversed(started):
            _stop(proc)
        for fh in logs.values():
            fh.close()
    assert all(proc.poll() is not None for proc in started)
    log = (tmp_path / "worker.log").read_text()
    masked = make_url(os.environ["ETLNORM_DATABASE_URL"]).render_as_string(hide_password=True)
    assert f"database {masked}" in log  # the nightly run says where it writes
    assert scalar(engine, "SELECT count(*) FROM flows.e2e WHERE term_hp_method IS NULL") == 0
    written = scalar(engine, "SELECT count(*) FROM flows.e2e WHERE term_hp_id IS NOT NULL")
    cached = scalar(engine, "SELECT count(*) FROM flows.e2e e JOIN etlnorm.mapping m ON m.ontology = 'hp' AND"
                            " m.term_md5 = md5(e.term)::uuid WHERE m.id IS NOT NULL")  # fmt: skip
    assert written == cached > 1500
    assert scalar(engine, "SELECT count(*) FROM etlnorm.run WHERE table_name = 'flows.e2e' AND status = 'completed'") == 2


def test_the_nightly_flow_without_targets_fails_and_says_where_it_looked(harness, tmp_path, monkeypatch):
    from flows.warehouse import normalize_warehouse

    monkeypatch.chdir(tmp_path)  # no ./etlnorm.toml
    monkeypatch.delenv("ETLNORM_CONFIG", raising=False)
    monkeypatch.delenv("ETLNORM_TARGETS", raising=False)
    with pytest.raises(ValueError, match="no targets configured .*ETLNORM_CONFIG or ./etlnorm.toml"):
        normalize_warehouse()


def test_normalize_warehouse_runs_every_configured_target(engine, terms, harness, tmp_path, monkeypatch):
    from flows.warehouse import normalize_warehouse

    create_annotation_table(engine, "flows.wh_a", terms[:30], rows=300, seed=31)
    create_annotation_table(engine, "flows.wh_b", terms[30:60], rows=200, seed=32)
    config = tmp_path / "etlnorm.toml"
    targets = ('[[targets]]\ntable = "flows.wh_a"\ncolumn = "term"\nontology = "hp"\n\n'
               '[[targets]]\ntable = "flows.wh_b"\ncolumn = "term"\nontology = "hp"\nprefix = "phen"\n')  # fmt: skip
    config.write_text(targets)
    monkeypatch.setenv("ETLNORM_CONFIG", str(config))
    results = normalize_warehouse()
    assert [r["stats"]["rows_seen"] for r in results] == [300, 200]
    assert scalar(engine, "SELECT count(*) FROM flows.wh_a WHERE term_hp_method IS NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM flows.wh_b WHERE phen_method IS NULL") == 0
    # A broken target fails the warehouse run, but only after the others ran.
    config.write_text('[[targets]]\ntable = "flows.missing"\ncolumn = "term"\nontology = "hp"\n\n' + targets)
    with engine.begin() as conn:
        conn.execute(text("UPDATE flows.wh_b SET phen_method = NULL, phen_id = NULL, phen_label = NULL,"
                          " phen_confidence = NULL"))  # fmt: skip
    with pytest.raises(RuntimeError, match="1 of 3 targets failed"):
        normalize_warehouse()
    assert scalar(engine, "SELECT count(*) FROM flows.wh_b WHERE phen_method IS NULL") == 0
