"""The encoder's network as ONNX (fp32, or with int8 weights), run by onnxruntime on the CPU.

optimum, the maintained exporter, pins transformers below 4.58 and etlnorm needs 5, so the
transformer module of a sentence-transformers model is exported with ``torch.onnx.export`` and its
weights quantized with onnxruntime's own ``quantize_dynamic``; pooling (mean or CLS, the modes the
model's ``Pooling`` module names) and the unit-length normalization stay in numpy. The exported file
is cached under ``HOME/encoders/<weights fingerprint>/``, written once under a file lock and renamed
into place, so a model re-trained in place gets a new export.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etlnorm.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
POOLINGS = ("mean", "cls")


def onnx_file(cache: Path, fingerprint: str, backend: str) -> Path:
    return cache / fingerprint / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")


def export(model: Any, target: Path) -> Path:
    """Export ``model`` (a SentenceTransformer) to ``target`` (``model.onnx`` or ``model-int8.onnx``) unless there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        fp32 = target.with_name("model.onnx")
        if not fp32.is_file():
            network = _Network(model[0].auto_model).eval()
            sample = model.tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
            inputs = tuple(sample[name] for name in _inputs(model))
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch, torch.no_grad():
                partial = Path(scratch) / "model.onnx"
                torch.onnx.export(network, inputs, str(partial), input_names=list(_inputs(model)),
                                  output_names=["hidden"], opset_version=17, dynamo=False,
                                  dynamic_axes={n: {0: "batch", 1: "tokens"} for n in (*_inputs(model), "hidden")})  # fmt: skip
                os.replace(partial, fp32)
            log.info("encoder exported to ONNX: %s", fp32)
        if target != fp32:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                partial = Path(scratch) / target.name
                quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8, per_channel=True)
                os.replace(partial, target)
            log.info("encoder weights quantized to int8: %s", target)
    return target


def _inputs(model: Any) -> tuple[str, ...]:
    names = model.tokenizer.model_input_names
    return tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in names)


class _Network(torch.nn.Module):
    """The transformer alone, returning its last hidden state (ONNX needs one plain output)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        names = ("input_ids", "attention_mask", "token_type_ids")[: len(tensors)]
        return self.inner(**dict(zip(names, tensors, strict=True))).last_hidden_state


class OnnxNetwork:
    """The exported network with the model's tokenizer and pooling: texts -> unit vectors.

    fp32 runs length-sorted batches. int8 runs each string on its own: onnxruntime's dynamic
    quantization scales the activations per input tensor, so in a batch a string's vector would
    depend on its batch-mates (and a term's answer on the table it came in); alone it is always the
    same. ``threads`` single-threaded runs go at once instead (onnxruntime releases the GIL), which
    on short strings is faster than one batch spread over the cores (bench/RESULTS-encoder.md)."""

    def __init__(self, model: Any, cache: Path, fingerprint: str, backend: str, threads: int) -> None:
        import onnxruntime as ort

        pooling = getattr(model[1], "pooling_mode", None) if len(model) > 1 else None
        if pooling not in POOLINGS:
            raise ConfigError(f"encoder_backend {backend}: pooling {pooling!r} is not one of {POOLINGS}; use torch")
        self.pooling, self.tokenizer, self.max_length = pooling, model.tokenizer, model.max_seq_length
        self.names = _inputs(model)
        self.alone = backend == "onnx-int8"
        self.workers = max(1, threads) if self.alone else 1
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if self.alone else threads
        path = export(model, onnx_file(cache, fingerprint, backend))
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if self.alone:
            return self._each(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches pad little
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="np")  # fmt: skip
            vectors = self._run({n: batch[n].astype(np.int64) for n in self.names})
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        return out  # type: ignore[return-value]

    def _each(self, texts: list[str]) -> np.ndarray:
        from concurrent.futures import ThreadPoolExecutor

        tokens = self.tokenizer(texts, truncation=True, max_length=self.max_length)  # unpadded lists

        def one(i: int) -> np.ndarray:
            return self._run({n: np.asarray([tokens[n][i]], dtype=np.int64) for n in self.names})[0]

        with ThreadPoolExecutor(self.workers) as pool:
            return np.stack(list(pool.map(one, range(len(texts))))).astype(np.float32)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Unit vectors of one input batch: the network, then the model's pooling."""
        hidden = self.session.run(None, feed)[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            mask = feed.get("attention_mask", np.ones_like(feed["input_ids"]))[..., None].astype(np.float32)
            vectors = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
