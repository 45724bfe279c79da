"""Scoring: accuracy@1, accuracy@5, coverage, accuracy by confidence; gold IDs resolved first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest
from sqlalchemy import text

from etlnorm.cascade.answer import Answer, Candidate
from etlnorm.errors import TableError
from etlnorm.experiment.evaluate import THRESHOLDS, evaluate
from etlnorm.files import read_table
from etlnorm.ontology.store import resolve_gold


def m(answer: str | None, confidence: float, method: str, *candidates: str) -> Answer:
    return Answer("t", answer, None, confidence, method, [Candidate(c, None, 0.5) for c in candidates])


def test_scores_by_hand():
    mappings = [
        m("A", 1.0, "exact", "A"),  # right
        m("B", 0.95, "synonym", "B", "C"),  # wrong, gold in candidates
        m("D", 0.7, "retrieval", "D", "E"),  # right
        m("F", 0.55, "retrieval", "F", "G", "H", "I", "J", "K"),  # wrong, gold 6th: not in top 5
        m(None, 0.4, "none", "L"),  # abstained, gold in candidates
        m(None, 0.0, "empty"),
        m("M", 0.9, "exact"),  # gold unusable: not scored
    ]
    gold = ["A", "C", "D", "K", "L", "Z", None]
    result = evaluate(mappings, gold, "hp", gold_resolved=1)
    assert (result.rows, result.scored, result.gold_unusable, result.gold_resolved) == (7, 6, 1, 1)
    overall = result.overall
    assert overall.accuracy_at_1 == pytest.approx(2 / 6)
    assert overall.accuracy_at_5 == pytest.approx(4 / 6)
    assert overall.coverage == pytest.approx(4 / 6)
    at = {t.threshold: t for t in overall.thresholds}
    assert list(at) == list(THRESHOLDS) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert (at[0.5].answered, at[0.5].precision) == (4, 0.5)
    assert (at[0.6].answered, at[0.6].precision) == (3, pytest.approx(2 / 3))
    assert (at[0.7].answered, at[0.7].coverage) == (3, 0.5)  # 0.7 counts as "at or above 0.7"
    assert (at[0.95].answered, at[0.95].precision) == (2, 0.5)
    methods = {s.method: s for s in result.by_method}
    assert list(methods) == ["exact", "synonym", "retrieval", "none", "empty"]
    assert (methods["retrieval"].rows, methods["retrieval"].accuracy_at_1) == (2, 0.5)
    assert methods["none"].coverage == 0.0 and methods["none"].accuracy_at_5 == 1.0
    assert methods["none"].thresholds[0].precision is None  # nothing answered: no precision
    assert json.loads(json.dumps(result.as_dict()))["overall"]["accuracy_at_1"] == pytest.approx(2 / 6)


def test_calibration_error_and_reliability_bins_by_hand(tmp_path):
    # 0.95-bin: 4 answers at 0.95, 2 right (precision 0.5); 0.65-bin: 2 at 0.65, both right.
    mappings = [m("A", 0.95, "retrieval")] * 4 + [m("A", 0.65, "retrieval")] * 2 + [m(None, 0.3, "none")]
    gold = ["A", "A", "X", "X", "A", "A", "A"]
    overall = evaluate(mappings, gold, "hp").overall
    assert [(b.low, b.answered, b.precision) for b in overall.bins] == [(0.6, 2, 1.0), (0.9, 4, 0.5)]
    assert overall.bins[1].mean_confidence == pytest.approx(0.95)
    assert overall.calibration_error == pytest.approx((2 * 0.35 + 4 * 0.45) / 6)  # abstentions not counted
    none = {s.method: s for s in evaluate(mappings, gold, "hp").by_method}["none"]
    assert none.bins == [] and none.calibration_error is None
    perfect = evaluate([m("A", 1.0, "exact")] * 3, ["A"] * 3, "hp").overall
    assert perfect.calibration_error == pytest.approx(0.0)

    from etlnorm.experiment.plots import plot_reliability

    path = plot_reliability([overall, none], tmp_path / "reliability.png", "by hand")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_read_table_formats_and_errors(tmp_path):
    frame = pl.DataFrame({"term": ["Seizure", "a, b"], "gold": ["HP:0001250", None], "n": [1, 2]})
    frame.write_csv(tmp_path / "t.csv")
    frame.write_csv(tmp_path / "t.tsv", separator="\t")
    frame.write_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.tsv", "t.parquet"):
        got = read_table(tmp_path / name, ["term", "gold", "n"])
        assert got.to_dict(as_series=False) == {"term": ["Seizure", "a, b"], "gold": ["HP:0001250", None],
                                                "n": ["1", "2"]}, name  # fmt: skip
    with pytest.raises(TableError, match="no column 'nope'"):
        read_table(tmp_path / "t.csv", ["term", "nope"])
    with pytest.raises(TableError, match="no such file"):
        read_table(tmp_path / "missing.csv", ["term"])
    with pytest.raises(TableError, match="unknown file type"):
        read_table(tmp_path / "t.xlsx", ["term"])


@pytest.fixture(scope="module")
def gold_cases(engine, hp):
    """An alt ID and an obsolete-with-replacement ID of the real HPO, with their current terms' labels."""
    with engine.connect() as conn:
        alt, alt_target, alt_label = conn.execute(text(
            "SELECT a.alt_id, a.id, t.label FROM etlnorm.alt_id a JOIN etlnorm.term t USING (ontology, id)"
            " WHERE a.ontology = 'hp' AND NOT t.obsolete ORDER BY a.alt_id LIMIT 1")).one()  # fmt: skip
        old, new, new_label = conn.execute(text(
            "SELECT o.id, r.id, r.label FROM etlnorm.term o JOIN etlnorm.term r"
            " ON r.ontology = o.ontology AND r.id = o.replaced_by"
            " WHERE o.ontology = 'hp' AND o.obsolete AND NOT r.obsolete ORDER BY o.id LIMIT 1")).one()  # fmt: skip
    return alt, alt_target, alt_label, old, new, new_label


def test_resolve_gold(engine, gold_cases):
    alt, alt_target, _, old, new, _ = gold_cases
    ids, moved = resolve_gold(engine, "hp", ["HP:0001250", alt, f" {old} ", "HP:9999999", "", None])
    assert ids == ["HP:0001250", alt_target, new, None, None, None]
    assert moved == 2


def test_evaluate_command(engine, hp_labels, gold_cases, tmp_path):
    alt, _, alt_label, old, _, new_label = gold_cases
    rows = [
        ("Seizure", "HP:0001250"),  # exact, right
        ("Epileptic seizure", "HP:0001250"),  # synonym, right
        (alt_label, alt),  # gold is an alt ID of the answer
        (new_label, old),  # gold is an obsolete ID replaced by the answer
        ("Seizure", "HP:0000369"),  # exact, wrong
        ("🙂", "HP:0001250"),  # none
        ("Seizure", "HP:9999999"),  # unknown gold: not scored
        ("Seizure", ""),  # no gold: not scored
    ]
    pl.DataFrame({"raw": [r[0] for r in rows], "gold": [r[1] for r in rows]}).write_csv(tmp_path / "gold.csv")
    done = subprocess.run(
        [sys.executable, "-m", "etlnorm", "evaluate", "--ontology", "hp", "--input", str(tmp_path / "gold.csv"),
         "--term-column", "raw", "--id-column", "gold", "--labels-only", "--json", str(tmp_path / "out.json"),
         "--plot", str(tmp_path / "reliability.png")],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "accuracy@1" in done.stdout and "0.95" in done.stdout and "synonym" in done.stdout
    result = json.loads((tmp_path / "out.json").read_text())
    assert (result["rows"], result["scored"], result["gold_resolved"], result["gold_unusable"]) == (
        8,
        6,
        2,
        2,
    )
    assert result["overall"]["accuracy_at_1"] == pytest.approx(4 / 6)
    assert result["overall"]["coverage"] == pytest.approx(5 / 6)
    by_method = {s["method"]: s for s in result["by_method"]}
    assert by_method["exact"]["rows"] == 4 and by_method["exact"]["accuracy_at_1"] == pytest.approx(3 / 4)
    assert by_method["synonym"]["accuracy_at_1"] == 1.0 and by_method["none"]["coverage"] == 0.0
    assert len(result["overall"]["thresholds"]) == 10
    assert "ECE" in done.stdout and (tmp_path / "reliability.png").stat().st_size > 5000
    exact = by_method["exact"]  # 4 exact answers at one confidence, 3 right: ECE is that gap
    assert exact["calibration_error"] == pytest.approx(abs(0.75 - exact["bins"][0]["mean_confidence"]))
