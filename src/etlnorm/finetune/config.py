"""Fine-tuning hyper-parameters: defaults here, overridable by a TOML ``[finetune]`` table.

The same file drives a CPU run with SmolLM2-135M and a CUDA run with an 8B model: batch size and
dtype default to ``0``/``"auto"`` and are picked from the device at run time (8 / fp32 on CPU,
32 / bf16 on CUDA), so no code or config changes between the two.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from etlnorm.errors import ConfigError

SECTION = "finetune"


@dataclass(frozen=True)
class FinetuneConfig:
    """LoRA and optimizer settings; ``seed`` fixes initialization, shuffling and dropout."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05  # linear warm-up over this share of the steps, then linear decay to 0
    max_grad_norm: float = 1.0
    epochs: int = 3
    batch_size: int = 0  # 0: auto, 8 on CPU and 32 on CUDA
    paraphrases: int = 5  # how many of the paper's five prompt wordings each pair is trained under
    dtype: str = "auto"  # model weights: auto (bf16 on CUDA, fp32 on CPU), bf16, fp32
    device: str = "auto"
    seed: int = 0
    eval_limit: int = 600  # training pairs scored for train exact-match after training (0: none)

    def with_overrides(self, **values: Any) -> FinetuneConfig:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def resolved_batch_size(self, device: torch.device) -> int:
        if self.batch_size > 0:
            return self.batch_size
        return 32 if device.type == "cuda" else 8

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


def load_config(path: str | Path | None = None, **overrides: Any) -> FinetuneConfig:
    """Defaults, then the ``[finetune]`` table of ``path`` (or the whole file if it has none), then overrides."""
    config = FinetuneConfig()
    if path is not None:
        path = Path(path).expanduser()
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read fine-tuning config {path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        table = data.get(SECTION, data)
        known = {f.name for f in fields(FinetuneConfig)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown fine-tuning setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "target_modules" in table:
            table = {**table, "target_modules": tuple(table["target_modules"])}
        config = replace(config, **table)
    return config.with_overrides(**overrides)
