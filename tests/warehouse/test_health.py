"""`etlnorm config check` (warehouse/health.py): what a run needs, checked before a scheduled run finds out."""

from __future__ import annotations

import json

from etlnorm.warehouse.health import LATER, MISSING, OK, check_all
from tests.test_cli import etlnorm


def test_config_check_says_what_is_missing(database_url, hp, tmp_path):
    config = tmp_path / "etlnorm.toml"
    config.write_text('reranker_models = {hp = "/nowhere/reranker"}\n'
                      '[[targets]]\ntable = "etl.no_such_table"\ncolumn = "term"\nontology = "hp"\n')  # fmt: skip
    done = etlnorm("config", "check", "--json", env={"ETLNORM_CONFIG": str(config)})
    assert done.returncode == 1, done.stderr
    checks = {c["what"]: c for c in json.loads(done.stdout)}
    assert checks["database"]["status"] == "ok" and checks["ontology hp"]["status"] == "ok"
    assert checks["target etl.no_such_table.term"]["failed"] and "no table" in checks["target etl.no_such_table.term"]["detail"]
    assert checks["reranker hp"]["failed"]
    assert {"encoder", "index hp", "calibration hp"} <= set(checks)
    healthy = etlnorm("config", "check")
    assert healthy.returncode == 0, healthy.stdout
    unset = etlnorm("config", "check", env={"ETLNORM_DATABASE_URL": ""})
    assert unset.returncode == 1 and "no database configured" in unset.stdout


def test_checks_name_a_fix_for_everything_not_ok(engine, hp):
    checks = check_all()
    assert checks[0].what == "config" and checks[1].what == "database" and checks[1].status == OK
    assert all(c.status in (OK, LATER, MISSING, "warning") for c in checks)
    assert all(c.detail for c in checks if c.status != OK)  # what to do about it
