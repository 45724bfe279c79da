"""Tabular input files (CSV, TSV, Parquet) for the CLI's normalize, calibrate and evaluate commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from etlnorm.errors import TableError

READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_table(path: Path, columns: Sequence[str]) -> pl.DataFrame:
    """A CSV, TSV or Parquet file (by extension) with ``columns`` as strings; one-line errors."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise TableError(f"{path}: unknown file type {path.suffix!r}; use .csv, .tsv or .parquet")
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    try:
        if kind == "parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, separator="\t" if kind == "tsv" else ",", infer_schema=False,
                                quote_char=None if kind == "tsv" else '"')  # fmt: skip
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TableError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableError(
            f"{path}: no column {', '.join(map(repr, missing))}; columns: {', '.join(frame.columns)}"
        )
    return frame.select(pl.col(c).cast(pl.String) for c in columns)
