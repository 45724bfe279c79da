"""The JSON file saved beside every fine-tuned model (adapter or encoder): what made it, and how well it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etlnorm.errors import EtlnormError


def read_json(folder: str | Path, name: str, kind: str) -> dict[str, Any]:
    """``folder/name``; a one-line error naming ``kind`` when the folder holds no such model."""
    path = Path(folder).expanduser() / name
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise EtlnormError(f"{path}: not an etlnorm {kind} ({exc.strerror or exc})") from exc


def write_json(folder: Path, name: str, metadata: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
