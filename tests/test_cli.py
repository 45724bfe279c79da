"""The command line as a user runs it: real subprocesses, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def etlnorm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etlnorm", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=600,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    # Log lines (the database in use) may come first; the error itself is one line, no traceback.
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert needle in lines[0]


def test_help_lists_every_command():
    done = etlnorm("--help")
    assert done.returncode == 0
    for command in ("config", "db", "ontology", "demo"):
        assert command in done.stdout


def test_db_init_twice_is_harmless_and_says_it_once(database_url):
    first, second = etlnorm("db", "init"), etlnorm("db", "init")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert second.stdout.count("schema etlnorm ready") == 1 and "ready" not in second.stderr
    assert "database postgresql+psycopg://" in second.stderr  # which database, logged once, password masked
    assert second.stderr.count("database postgresql") == 1
    assert "ready" not in etlnorm("-q", "db", "init").stderr


def test_no_configured_database_is_a_one_line_error_not_the_embedded_server(tmp_path):
    """A shell (or a worker) without ETLNORM_DATABASE_URL must not silently get the demo's database."""
    env = {k: v for k, v in os.environ.items() if k != "ETLNORM_DATABASE_URL"}
    done = subprocess.run([sys.executable, "-m", "etlnorm", "ontology", "list"], capture_output=True, text=True,
                          env={**env, "ETLNORM_HOME": str(tmp_path), "COLUMNS": "200"}, cwd=tmp_path, timeout=120)  # fmt: skip
    assert_one_line_error(done, "no database configured: set ETLNORM_DATABASE_URL")
    assert not (tmp_path / "pgdata").exists() and not any(tmp_path.iterdir())  # nothing was started


def test_password_is_masked_wherever_the_database_is_named():
    done = etlnorm("db", "init", env={"ETLNORM_DATABASE_URL": "postgresql+psycopg://bob:s3cret@127.0.0.1:1/nowhere"})
    assert_one_line_error(done, "cannot connect to")
    assert "s3cret" not in done.stderr and "***" in done.stderr


def test_unknown_setting_in_the_config_file_is_an_error(tmp_path):
    config = tmp_path / "etlnorm.toml"
    config.write_text('min_confidnce = 0.5\n[[targets]]\ntable = "t"\ncolumn = "c"\nontology = "hp"\nprefx = "p"\n')
    done = etlnorm("config", "show", env={"ETLNORM_CONFIG": str(config)})
    assert_one_line_error(done, "unknown setting 'min_confidnce'")
    assert "unknown setting 'targets.0.prefx'" in done.stderr and str(config) in done.stderr


def test_json_output_for_scripts(database_url, hp):
    listed = etlnorm("ontology", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (hp_row,) = [o for o in json.loads(listed.stdout) if o["name"] == "hp"]
    assert hp_row["release"] == "2025-01-16" and hp_row["n_terms"] > 19000


def test_unknown_ontology(database_url):
    assert_one_line_error(etlnorm("ontology", "load", "mesh"), "unknown ontology 'mesh'")


def test_missing_file(database_url, tmp_path):
    assert_one_line_error(etlnorm("ontology", "load", "hp", "--source", str(tmp_path / "nope.obo")), "no such file")


def test_unreachable_database():
    done = etlnorm("db", "init", env={"ETLNORM_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"})
    assert_one_line_error(done, "cannot connect to")


def test_ontology_list_and_resolve(database_url, hp):
    listed = etlnorm("ontology", "list")
    assert listed.returncode == 0 and "2025-01-16" in listed.stdout
    resolved = etlnorm("ontology", "resolve", "HP:0001250")
    assert resolved.returncode == 0 and "Seizure" in resolved.stdout
    assert_one_line_error(etlnorm("ontology", "resolve", "HP:9999999"), "not a known identifier")


@pytest.mark.parametrize("value", ["not-a-number"])
def test_bad_setting_is_one_line(value):
    assert_one_line_error(etlnorm("config", "show", env={"ETLNORM_TOP_K": value}), "invalid configuration")


def test_config_show_names_sources(tmp_path):
    cfg = tmp_path / "etlnorm.toml"
    cfg.write_text("top_k = 7\n")
    done = etlnorm("config", "show", env={"ETLNORM_CONFIG": str(cfg), "ETLNORM_MIN_CONFIDENCE": "0.7"})
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 3}
    assert "file" in rows["top_k"] and " 7 " in rows["top_k"]
    assert "env ETLNORM_MIN_CONFIDENCE" in rows["min_confidence"]
    assert "default" in rows["normalize_batch_size"]
