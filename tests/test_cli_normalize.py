"""`etlnorm normalize` and `etlnorm index build` as a user runs them (subprocesses, real HPO)."""

from __future__ import annotations

import json

import polars as pl

from tests.test_cli import assert_one_line_error, etlnorm


def test_normalize_file_to_csv(hp_labels, tmp_path):
    terms = ["Seizures", "low set ears", "", "Epileptic seizure", "wobbly unsteady walking", "Seizures", "🙂"]
    pl.DataFrame({"raw": terms, "other": range(len(terms))}).write_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.csv"
    done = etlnorm("normalize", "--ontology", "hp", "--labels-only", "--input", str(tmp_path / "in.parquet"),
                   "--column", "raw", "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(terms)} rows" in done.stdout
    frame = pl.read_csv(out, infer_schema=False)
    assert frame.columns == ["term", "id", "label", "confidence", "method", "candidates"]
    rows = frame.to_dicts()
    assert [r["term"] or "" for r in rows] == terms
    assert [(r["id"], r["method"]) for r in rows[:4]] == [
        ("HP:0001250", "exact"), ("HP:0000369", "exact"), (None, "empty"), ("HP:0001250", "synonym")]  # fmt: skip
    # A paraphrase: retrieval's answer, or (below min_confidence) an abstention that keeps it as a candidate.
    assert rows[4]["method"] in ("retrieval", "none") and (rows[4]["id"] is None) == (rows[4]["method"] == "none")
    assert rows[6]["method"] == "none" and rows[6]["id"] is None
    candidates = json.loads(rows[4]["candidates"])
    assert 1 <= len(candidates) <= 5 and set(candidates[0]) == {"id", "label", "score"}
    assert candidates[0]["id"].startswith("HP:") and rows[4]["id"] in (None, candidates[0]["id"])
    assert float(rows[4]["confidence"]) == candidates[0]["score"]


def test_normalize_terms_to_table(hp):
    done = etlnorm("normalize", "--ontology", "hp", "Seizures", "Melotia")
    assert done.returncode == 0, done.stderr
    assert "HP:0001250" in done.stdout and "HP:0000369" in done.stdout and "synonym" in done.stdout


def test_normalize_errors(hp, tmp_path):
    pl.DataFrame({"raw": ["Seizure"]}).write_csv(tmp_path / "in.csv")
    assert_one_line_error(etlnorm("normalize", "--ontology", "hp", "--input", str(tmp_path / "in.csv"),
                                  "--column", "term"), "no column 'term'")  # fmt: skip
    assert_one_line_error(etlnorm("normalize", "--ontology", "hp", "--input", str(tmp_path / "nope.tsv"),
                                  "--column", "raw"), "no such file")  # fmt: skip
    assert_one_line_error(etlnorm("normalize", "--ontology", "mesh", "x"), "unknown ontology 'mesh'")
    assert_one_line_error(etlnorm("normalize", "--ontology", "hp"), "nothing to normalize")


def test_index_build_reports_up_to_date(hp_labels):
    done = etlnorm("index", "build", "--ontology", "hp", "--labels-only")
    assert done.returncode == 0, done.stderr
    assert "already up to date" in done.stdout and str(hp_labels.index.folder) in done.stdout.replace(
        "\n", ""
    )
