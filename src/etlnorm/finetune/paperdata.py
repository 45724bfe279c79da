"""The seed paper's term/identifier sets (HPO, GO, HGNC genes), loaded with uniform columns.

The six CSVs live in the repository's ``benchmarks/paper/`` (see its README for the source and quirks);
``ETLNORM_PAPER_DATA`` names another folder holding the same files. They are not package data: an
installed (non-editable) etlnorm needs ``ETLNORM_PAPER_DATA`` set.

Every set comes back as ``term, id, bin, popularity``:

- ``hp``: ``hpo_term``, ``hpo_id`` (``HP:nnnnnnn``), ``Bin``, ``pmc_hpo_id_hits`` (PubMed Central hits of
  the ID string).
- ``go``: ``GO_TERM``, ``GO_ID`` (``GO:nnnnnnn``), ``Bin``, ``Count`` (annotation count: the bins are built
  on it, per aspect; the PMC hit columns are empty for two of the three aspects).
- ``hgnc``: the HGNC approved name (``gene_name``, ``HGNC_name`` in the withheld file), ``HGNC_symbol`` (the
  HGNC-name task), ``Bin2``/``Bin``, ``PMC_ID`` (PubMed Central hits of the symbol). With
  ``terms="protein"`` the term is ``protein_name`` (UniProt's recommended name): the paper's own gene
  task, protein name -> symbol.

Terms and ids are stripped of surrounding whitespace, and rows with an empty id are dropped (one in the
gene withheld set). Source values are otherwise kept as the paper used them, quirks included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal, NamedTuple, get_args

import polars as pl

from etlnorm.config import env_path
from etlnorm.errors import EtlnormError, OntologyError

PAPER_DATA_ENV: Final = "ETLNORM_PAPER_DATA"

PaperOntology = Literal["hp", "go", "hgnc"]
PaperSplit = Literal["train", "withheld"]
ONTOLOGIES: Final[tuple[str, ...]] = get_args(PaperOntology)
SPLITS: Final[tuple[str, ...]] = get_args(PaperSplit)

SCHEMA: Final = pl.Schema({"term": pl.String, "id": pl.String, "bin": pl.Int32, "popularity": pl.Int64})


class _Columns(NamedTuple):
    """Source column names for term, id, bin and popularity in one file."""

    term: str
    id: str
    bin: str
    popularity: str


_HP = _Columns("hpo_term", "hpo_id", "Bin", "pmc_hpo_id_hits")
_GO = _Columns("GO_TERM", "GO_ID", "Bin", "Count")

FILES: Final[dict[tuple[str, str], tuple[str, _Columns]]] = {
    ("hp", "train"): ("hpo_train_600_revised.csv", _HP),
    ("hp", "withheld"): ("hpo_withheld_600_revised.csv", _HP),
    ("go", "train"): ("go_train_600.csv", _GO),
    ("go", "withheld"): ("go_withheld_600.csv", _GO),
    # The withheld gene file renames gene_name -> HGNC_name and Bin2 -> Bin.
    ("hgnc", "train"): ("gene_train_600.csv", _Columns("gene_name", "HGNC_symbol", "Bin2", "PMC_ID")),
    ("hgnc", "withheld"): ("gene_withheld_600.csv", _Columns("HGNC_name", "HGNC_symbol", "Bin", "PMC_ID")),
}
# The paper's own gene task: UniProt protein name -> HGNC symbol, from the same two files.
PROTEIN_FILES: Final[dict[str, tuple[str, _Columns]]] = {
    "train": ("gene_train_600.csv", _Columns("protein_name", "HGNC_symbol", "Bin2", "PMC_ID")),
    "withheld": ("gene_withheld_600.csv", _Columns("protein_name", "HGNC_symbol", "Bin", "PMC_ID")),
}
TermKind = Literal["name", "protein"]



def paper_data_dir() -> Path:
    """The folder holding the paper's CSVs: ``$ETLNORM_PAPER_DATA``, else the repo's ``benchmarks/paper``."""
    named = env_path(PAPER_DATA_ENV, folder=True)
    if named:
        return named
    # src/etlnorm/finetune/paperdata.py -> repository root
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "paper"
    if not path.is_dir():
        raise EtlnormError(
            f"paper data not found at {path} (etlnorm is not run from a source checkout); "
            f"set {PAPER_DATA_ENV} to a folder with the paper's CSVs (benchmarks/paper in the repository)"
        )
    return path


def paper_file(ontology: str, split: str, terms: TermKind = "name") -> Path:
    """The CSV behind one (ontology, split) set."""
    name, _ = _lookup(ontology, split, terms)
    path = paper_data_dir() / name
    if not path.is_file():
        raise EtlnormError(f"paper data file missing: {path}")
    return path


def load_paper_set(ontology: str, split: str, terms: TermKind = "name") -> pl.DataFrame:
    """One of the paper's six sets as ``term, id, bin, popularity`` (see the module docstring);
    ``terms="protein"``: the gene files' protein names as terms (the paper's gene task)."""
    _, cols = _lookup(ontology, split, terms)
    path = paper_file(ontology, split, terms)
    try:
        raw = pl.read_csv(path, infer_schema_length=0)  # every column as text
    except pl.exceptions.PolarsError as exc:
        raise EtlnormError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    missing = [c for c in cols if c not in raw.columns]
    if missing:
        raise EtlnormError(f"{path.name}: missing column(s) {', '.join(missing)}")
    try:
        return raw.select(
            pl.col(cols.term).str.strip_chars().alias("term"),
            pl.col(cols.id).str.strip_chars().alias("id"),
            pl.col(cols.bin).str.strip_chars().cast(pl.Int32).alias("bin"),
            pl.col(cols.popularity).str.strip_chars().cast(pl.Int64).alias("popularity"),
        ).filter(pl.col("id").is_not_null() & (pl.col("id") != ""))
    except pl.exceptions.InvalidOperationError as exc:
        raise EtlnormError(
            f"{path.name}: bin or popularity is not an integer: {exc}".splitlines()[0]
        ) from exc


def _lookup(ontology: str, split: str, terms: TermKind = "name") -> tuple[str, _Columns]:
    if ontology not in ONTOLOGIES:
        raise OntologyError(f"no paper data for ontology {ontology!r}; choose one of {', '.join(ONTOLOGIES)}")
    if split not in SPLITS:
        raise EtlnormError(f"unknown paper split {split!r}; choose one of {', '.join(SPLITS)}")
    if terms == "protein":
        if ontology != "hgnc":
            raise EtlnormError("protein-name terms exist only in the paper's gene (hgnc) files")
        return PROTEIN_FILES[split]
    return FILES[(ontology, split)]
