"""Files etlnorm reads: tabular input (CSV, TSV, Parquet) for the CLI, and the JSON beside every trained model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from etlnorm.errors import EtlnormError, TableError

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


def read_json(folder: str | Path, name: str, kind: str) -> dict[str, Any]:
    """The metadata ``folder/name`` of a trained model (adapter, encoder, reranker); a one-line
    error naming ``kind`` when the folder holds no such model."""
    path = Path(folder).expanduser() / name
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise EtlnormError(f"{path}: not an etlnorm {kind} ({exc.strerror or exc})") from exc


def write_json(folder: Path, name: str, metadata: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
