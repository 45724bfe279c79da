"""The encoder's network as ONNX (fp32, or with int8 weights), run by onnxruntime on the CPU.

optimum, the maintained exporter, pins transformers below 4.58 and etlnorm needs 5, so the
transformer module of a sentence-transformers model is exported with ``torch.onnx.export``; for
int8, each MatMul over a weight is rewritten (``quantize_per_token``) into onnxruntime's exact
integer ``MatMulInteger``; pooling (mean or CLS, the modes the model's ``Pooling`` module names) and
the unit-length normalization stay in numpy. The exported file
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
    return cache / fingerprint / ("model-int8-token.onnx" if backend == "onnx-int8" else "model.onnx")


def export(model: Any, target: Path) -> Path:
    """Export ``model`` (a SentenceTransformer) to ``target`` (``model.onnx`` or its int8 form) unless there."""
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
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                partial = Path(scratch) / target.name
                quantize_per_token(fp32, partial)
                os.replace(partial, target)
            log.info("encoder weights quantized to int8: %s", target)
    return target


def quantize_per_token(source: Path, target: Path) -> None:
    """Rewrite each MatMul of ``source`` over a 2-D weight as int8 with exact int32 products.

    Weights: symmetric int8 per output column. Activations: symmetric int8 per token (each row of the
    input scaled by its own largest magnitude), unlike onnxruntime's ``quantize_dynamic``, which
    scales a whole input tensor at once and so makes a string's vector depend on its batch-mates.
    Integer sums do not depend on how a kernel blocks them, so with no padding a string's vector is
    the same alone or in any batch, and per-token scales lose less than per-tensor ones. MatMuls
    sharing an input (query, key, value) share its quantization."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer if len(i.dims) == 2}
    consts = {"q_levels": np.float32(127), "q_tiny": np.float32(1e-12), "q_shift": np.float32(128),
              "q_zero": np.uint8(128)}  # fmt: skip
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items())
    nodes: list[Any] = []
    quantized: dict[str, str] = {}  # input name -> prefix of its quantized form
    for n, node in enumerate(graph.node):
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127
        p, x = f"q{n}_", node.input[0]
        graph.initializer.extend([numpy_helper.from_array(np.round(w / w_scale).astype(np.int8), p + "w"),
                                  numpy_helper.from_array(w_scale.astype(np.float32), p + "w_scale")])  # fmt: skip
        if x not in quantized:
            quantized[x] = p
            nodes += [helper.make_node("Abs", [x], [p + "abs"]),
                      helper.make_node("ReduceMax", [p + "abs"], [p + "max"], axes=[-1], keepdims=1),
                      helper.make_node("Max", [p + "max", "q_tiny"], [p + "max1"]),
                      helper.make_node("Div", [p + "max1", "q_levels"], [p + "scale"]),
                      helper.make_node("Div", [x, p + "scale"], [p + "scaled"]),
                      helper.make_node("Round", [p + "scaled"], [p + "rounded"]),
                      helper.make_node("Add", [p + "rounded", "q_shift"], [p + "shifted"]),
                      helper.make_node("Cast", [p + "shifted"], [p + "x"], to=TensorProto.UINT8)]  # fmt: skip
        q = quantized[x]
        nodes += [helper.make_node("MatMulInteger", [q + "x", p + "w", "q_zero"], [p + "int"]),
                  helper.make_node("Cast", [p + "int"], [p + "float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [p + "float", q + "scale"], [p + "rows"]),
                  helper.make_node("Mul", [p + "rows", p + "w_scale"], [node.output[0]])]  # fmt: skip
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for node in graph.node for i in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(target))


def length_batches(ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Row numbers of token lists grouped by length, ``batch_size`` at a time: batches with no padding."""
    lengths: dict[int, list[int]] = {}
    for row, tokens in enumerate(ids):
        lengths.setdefault(len(tokens), []).append(row)
    return [rows[i : i + batch_size] for rows in lengths.values() for i in range(0, len(rows), batch_size)]


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

    fp32 runs length-sorted batches. int8 (``quantize_per_token``) runs batches of strings of one
    token length, unpadded: its integer products are exact and each token is scaled on its own, so a
    string's vector is bit for bit the same in any batch (a term's answer never depends on the table
    it came in). ``threads`` single-threaded runs go at once (onnxruntime releases the GIL), which on
    short strings is faster than one batch spread over the cores (bench/RESULTS-encoder.md)."""

    def __init__(self, model: Any, cache: Path, fingerprint: str, backend: str, threads: int) -> None:
        import onnxruntime as ort

        pooling = getattr(model[1], "pooling_mode", None) if len(model) > 1 else None
        if pooling not in POOLINGS:
            raise ConfigError(f"encoder_backend {backend}: pooling {pooling!r} is not one of {POOLINGS}; use torch")
        self.pooling, self.tokenizer, self.max_length = pooling, model.tokenizer, model.max_seq_length
        self.names = _inputs(model)
        self.by_length = backend == "onnx-int8"
        self.workers = max(1, threads) if self.by_length else 1
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if self.by_length else threads
        path = export(model, onnx_file(cache, fingerprint, backend))
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if self.by_length:
            return self._by_length(texts, batch_size)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches pad little
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="np")  # fmt: skip
            out[rows] = self._run({n: batch[n].astype(np.int64) for n in self.names})
        return out

    def _by_length(self, texts: list[str], batch_size: int) -> np.ndarray:
        from concurrent.futures import ThreadPoolExecutor

        tokens = self.tokenizer(texts, truncation=True, max_length=self.max_length)  # unpadded lists
        out = np.zeros((len(texts), self.dim), dtype=np.float32)

        def run(rows: list[int]) -> None:
            out[rows] = self._run({n: np.asarray([tokens[n][i] for i in rows], dtype=np.int64) for n in self.names})

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(run, length_batches(tokens["input_ids"], batch_size)))
        return out

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Unit vectors of one input batch: the network, then the model's pooling."""
        hidden = self.session.run(None, feed)[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            mask = feed.get("attention_mask", np.ones_like(feed["input_ids"]))[..., None].astype(np.float32)
            vectors = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
