"""Other fast encoders against the shipped int8 one (issue 16's levers), all in one run.

    python bench/bench_int8.py [--sample 6000] [--calibration 400]

Each variant encodes the same seeded sample of the loaded HPO release's labels and synonyms on the
CPU and prints strings/s against the shipped path, the cosine of its vectors to stock torch's, and
whether a string's vector is bit-identical in batches of 256 and of 5 (the guarantee etlnorm keeps):

1. ``shipped``: ``cascade.onnx_encoder.OnnxNetwork`` (``quantize_per_token``: int8 weights per
   column, activations per token, exact integer products), batches of strings of one token length,
   one single-threaded run per thread at once;
2. ``per-tensor-alone``: the default before it, onnxruntime's ``quantize_dynamic`` (activations
   scaled per input tensor, so a batch would change a string's vector), each string run alone, one
   single-threaded run per thread at once;
3. ``fused-alone``: the same on a graph onnxruntime's transformer optimizer fused (eager attention
   exported: embeddings, attention, bias+GELU, residual+LayerNorm each one node, 516 nodes to 46);
4. ``static``: static int8 (activation scales calibrated once, MinMax, on ``--calibration`` other
   strings), every MatMul, in batches of strings of one token length (no padding);
5. ``static-ffn-fp32``: the same with each layer's FFN output projection left in fp32 (the one
   whose input, after GELU, quantizes worst);
6. ``torch-bf16``: no int8 at all: the torch model's weights in bf16 (AMX tiles on CPUs that have
   them, as this machine's Xeon does), in batches of strings of one token length.

Needs an etlnorm database with hp loaded (ETLNORM_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.transformers.optimizer import optimize_model
from sentence_transformers import SentenceTransformer

from etlnorm.cascade.encoder import Encoder, fingerprint, model_path
from etlnorm.cascade.onnx_encoder import OnnxNetwork, _inputs, _Network, length_batches
from etlnorm.cascade.retrieval import release_strings
from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.threads import apply_threads


def export_eager(model, target: Path) -> None:
    """The transformer with eager attention (the graph onnxruntime's optimizer recognizes)."""
    inner = model[0].auto_model
    before = inner.config._attn_implementation
    inner.set_attn_implementation("eager")
    names = _inputs(model)
    sample = model.tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.onnx.export(_Network(inner).eval(), tuple(sample[n] for n in names), str(target),
                          input_names=list(names), output_names=["hidden"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in (*names, "hidden")})  # fmt: skip
    inner.set_attn_implementation(before)


class Calibration(CalibrationDataReader):
    def __init__(self, tokenizer, texts: list[str], names: tuple[str, ...]) -> None:
        self.rows = iter(texts)
        self.tokenizer, self.names = tokenizer, names

    def get_next(self) -> dict[str, np.ndarray] | None:
        text = next(self.rows, None)
        return None if text is None else feed(self.names, [self.tokenizer(text, truncation=True)["input_ids"]])


def feed(names: tuple[str, ...], ids: list[list[int]]) -> dict[str, np.ndarray]:
    tokens = np.asarray(ids, dtype=np.int64)
    every = {"input_ids": tokens, "attention_mask": np.ones_like(tokens), "token_type_ids": np.zeros_like(tokens)}
    return {n: every[n] for n in names}


def unit_means(hidden: np.ndarray) -> np.ndarray:
    vectors = hidden.mean(axis=1)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def by_length(session: ort.InferenceSession, names: tuple[str, ...], ids: list[list[int]], batch: int) -> np.ndarray:
    """Strings of one token length together (no padding), ``batch`` at a time."""
    out = np.zeros((len(ids), session.get_outputs()[0].shape[-1] or 384), dtype=np.float32)
    for part in length_batches(ids, batch):
        out[part] = unit_means(session.run(None, feed(names, [ids[r] for r in part]))[0])
    return out


def alone(session: ort.InferenceSession, names: tuple[str, ...], ids: list[list[int]], threads: int) -> np.ndarray:
    """Each string on its own, ``threads`` single-threaded runs at once (onnxruntime releases the GIL)."""
    with ThreadPoolExecutor(threads) as pool:
        return np.stack(list(pool.map(lambda tokens: unit_means(session.run(None, feed(names, [tokens]))[0])[0], ids)))


def bf16_by_length(model: SentenceTransformer, texts: list[str], ids: list[list[int]], batch: int) -> np.ndarray:
    out = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    for part in length_batches(ids, batch):
        hidden = model.encode([texts[r] for r in part], batch_size=len(part), convert_to_tensor=True)
        out[part] = torch.nn.functional.normalize(hidden.float(), dim=1).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=6000, help="strings encoded by each variant (seeded)")
    ap.add_argument("--calibration", type=int, default=400, help="other strings the static scales are fitted on")
    args = ap.parse_args()
    settings = load_settings()
    threads = apply_threads(settings.threads)
    strings = sorted({s for _, s in release_strings(ready_engine(settings), "hp", "all")})
    picked = random.Random(13).sample(strings, args.sample + args.calibration)
    texts, calibration = picked[: args.sample], picked[args.sample :]
    encoder = Encoder(model_path(None), 256, "cpu")
    model, names = encoder.model, _inputs(encoder.model)
    reference = encoder.encode(texts)
    ids = model.tokenizer(texts, truncation=True)["input_ids"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="etlnorm-bench-int8-") as scratch:
        folder = Path(scratch)
        shipped = OnnxNetwork(model, folder / "cache", fingerprint(encoder.path), "onnx-int8", threads)
        export_eager(model, folder / "eager.onnx")
        optimize_model(str(folder / "eager.onnx"), model_type="bert", num_heads=model[0].auto_model.config.num_attention_heads,
                       hidden_size=encoder.dim, opt_level=1).save_model_to_file(str(folder / "fused.onnx"))  # fmt: skip
        single = ort.SessionOptions()
        single.intra_op_num_threads = 1
        per_tensor = {}
        for name, source in (("per-tensor-alone", folder / "cache" / fingerprint(encoder.path) / "model.onnx"),
                             ("fused-alone", folder / "fused.onnx")):  # fmt: skip
            quantize_dynamic(str(source), str(folder / f"{name}.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
            per_tensor[name] = ort.InferenceSession(str(folder / f"{name}.onnx"), single)
        graph = onnx.load(str(folder / "eager.onnx")).graph
        ffn = [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name and "attention" not in n.name]
        variants: dict[str, Callable[[int], np.ndarray]] = {"shipped": lambda batch: shipped.encode(texts, batch)}
        for name, session in per_tensor.items():
            variants[name] = lambda _, session=session: alone(session, names, ids, threads)
        for name, excluded in (("static", []), ("static-ffn-fp32", ffn)):
            target = folder / f"{name}.onnx"
            quantize_static(str(folder / "eager.onnx"), str(target), Calibration(model.tokenizer, calibration, names),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded,
                            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
            session = ort.InferenceSession(str(target), options)
            variants[name] = lambda batch, session=session: by_length(session, names, ids, batch)
        half = SentenceTransformer(str(encoder.path), device="cpu", local_files_only=True,
                                   model_kwargs={"torch_dtype": torch.bfloat16})  # fmt: skip
        variants["torch-bf16"] = lambda batch: bf16_by_length(half, texts, ids, batch)
        print(f"{len(texts):,} HPO strings, {threads} threads; static scales fitted on {len(calibration)} others")
        print(f"{'variant':<16} {'strings/s':>9} {'vs shipped':>10} {'min cos':>8} {'mean cos':>8}  same in batches of 256 and 5")
        base = 0.0
        for name, run in variants.items():
            start = time.perf_counter()
            vectors = run(256)
            rate = len(texts) / (time.perf_counter() - start)
            base = base or rate
            cosine = (vectors * reference).sum(axis=1)
            same = bool(np.array_equal(vectors, run(5)))
            print(f"{name:<16} {rate:9.0f} {rate / base:9.2f}x {cosine.min():8.4f} {cosine.mean():8.4f}  {same}")


if __name__ == "__main__":
    main()
