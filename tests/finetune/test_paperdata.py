"""The paper's six term/identifier sets load with uniform columns, from the repo or ETLNORM_PAPER_DATA."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from etlnorm.errors import EtlnormError, OntologyError
from etlnorm.finetune.paperdata import FILES, ONTOLOGIES, SCHEMA, SPLITS, load_paper_set, paper_data_dir

PAPER = Path(__file__).resolve().parents[2] / "benchmarks" / "paper"
ID_PATTERN = {"hp": r"^HP:\d{7}$", "go": r"^GO:\d{7}$", "hgnc": r"^[A-Z0-9][A-Z0-9-]*$"}


@pytest.fixture(autouse=True)
def _repo_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETLNORM_PAPER_DATA", raising=False)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("ontology", ONTOLOGIES)
def test_every_set_loads_with_uniform_columns(ontology: str, split: str) -> None:
    df = load_paper_set(ontology, split)
    assert df.schema == SCHEMA
    # 600 rows each; the gene withheld set has one row (POPD1_HUMAN / BVES) without an HGNC symbol
    assert df.height == (599 if (ontology, split) == ("hgnc", "withheld") else 600)
    assert df.null_count().row(0) == (0, 0, 0, 0)
    assert df["id"].str.contains(ID_PATTERN[ontology]).all(), df.filter(
        ~pl.col("id").str.contains(ID_PATTERN[ontology])
    )
    assert sorted(df["bin"].unique()) == list(range(1, 21))
    assert (df["popularity"] >= 0).all()
    assert (df["term"] == df["term"].str.strip_chars()).all() and (df["term"] != "").all()
    # 30 terms per bin (GO: 10 per bin in each of three aspects); only the dropped gene row breaks it
    counts = df.group_by("bin").len()["len"]
    assert counts.min() >= 29 and counts.max() == 30


def test_train_and_withheld_share_no_identifier() -> None:
    for ontology in ONTOLOGIES:
        train = set(load_paper_set(ontology, "train")["id"])
        withheld = set(load_paper_set(ontology, "withheld")["id"])
        assert not train & withheld, ontology


def test_values_come_from_the_right_columns() -> None:
    hp = load_paper_set("hp", "train").row(0, named=True)
    assert hp == {"term": "Webbed neck", "id": "HP:0000465", "bin": 1, "popularity": 7}
    go = load_paper_set("go", "withheld").row(1, named=True)
    assert go == {"term": "Golgi apparatus", "id": "GO:0005794", "bin": 1, "popularity": 1889}
    # gene train: term is the HGNC approved name (not the UniProt protein name), id the HGNC symbol
    gene = load_paper_set("hgnc", "train").row(0, named=True)
    assert gene == {
        "term": "prostaglandin-endoperoxide synthase 2",
        "id": "PTGS2",
        "bin": 1,
        "popularity": 100087,
    }
    # gene withheld: the renamed columns (HGNC_name, Bin)
    gene = load_paper_set("hgnc", "withheld").row(0, named=True)
    assert gene == {"term": "glucagon", "id": "GCG", "bin": 1, "popularity": 51972}
    # the one gene name with a trailing space in the source comes back stripped
    raw = pl.read_csv(PAPER / "gene_train_600.csv", infer_schema_length=0)
    (padded,) = raw.filter(pl.col("gene_name").str.ends_with(" "))["gene_name"]
    assert padded.rstrip() in set(load_paper_set("hgnc", "train")["term"])


def test_files_are_byte_identical_copies_with_their_line_endings() -> None:
    """Git must not normalize them (.gitattributes: -text); three are CRLF without a final newline."""
    names = {name for name, _ in FILES.values()}
    assert {p.name for p in PAPER.glob("*.csv")} == names
    crlf = {"go_train_600.csv", "go_withheld_600.csv", "gene_train_600.csv"}
    for name in names:
        data = (PAPER / name).read_bytes()
        if name in crlf:
            assert b"\r\n" in data and not data.endswith(b"\n"), name
        else:
            assert b"\r" not in data and data.endswith(b"\n"), name
    sums = (PAPER / "SHA256SUMS").read_text().split()
    expected = dict(zip(sums[1::2], sums[0::2], strict=True))
    for name in names:
        assert hashlib.sha256((PAPER / name).read_bytes()).hexdigest() == expected[name], name


def test_env_var_names_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = FILES[("hp", "train")]
    lines = (PAPER / name).read_text().splitlines(keepends=True)
    (tmp_path / name).write_text("".join(lines[:4]))
    monkeypatch.setenv("ETLNORM_PAPER_DATA", str(tmp_path))
    assert paper_data_dir() == tmp_path
    assert load_paper_set("hp", "train").height == 3
    with pytest.raises(EtlnormError, match="missing"):
        load_paper_set("go", "train")


def test_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OntologyError, match="hp, go, hgnc"):
        load_paper_set("mondo", "train")
    with pytest.raises(EtlnormError, match="train, withheld"):
        load_paper_set("hp", "test")
    monkeypatch.setenv("ETLNORM_PAPER_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(EtlnormError, match="ETLNORM_PAPER_DATA"):
        load_paper_set("hp", "train")
    monkeypatch.setenv("ETLNORM_PAPER_DATA", str(tmp_path))
    (tmp_path / "hpo_train_600_revised.csv").write_text("hpo_id,hpo_term,Bin\nHP:0000001,All,1\n")
    with pytest.raises(EtlnormError, match="pmc_hpo_id_hits"):
        load_paper_set("hp", "train")
