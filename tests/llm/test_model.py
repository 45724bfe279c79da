"""Model loading (cached, offline) and LoRA adapters trained here, saved, loaded back per ontology."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from etlnorm.config import load_settings
from etlnorm.llm.generate import generate
from etlnorm.llm.model import (
    DEFAULT_GGUF,
    LanguageModel,
    default_model_dir,
    load_from_settings,
    load_model,
    pick_dtype,
    resolve_source,
)
from etlnorm.llm.prompts import build_prompt


def test_default_model_is_cached_offline_and_pads_left(smollm) -> None:
    assert (default_model_dir() / DEFAULT_GGUF).is_file()
    assert load_model(device="cpu") is smollm  # loaded once per process
    assert load_from_settings(load_settings(llm_device="cpu")) is smollm
    assert smollm.tokenizer.padding_side == "left" and smollm.tokenizer.pad_token is not None
    assert smollm.device.type == "cpu" and next(smollm.model.parameters()).dtype == torch.float32


def test_source_and_dtype_choices(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    assert resolve_source(gguf, None) == (str(tmp_path), "m.gguf")
    assert resolve_source(tmp_path, None) == (str(tmp_path), None)
    assert resolve_source(None, None)[1] == DEFAULT_GGUF
    assert pick_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError):
        pick_dtype("int3", torch.device("cpu"))


PAIRS = {  # term -> target: what each adapter is taught (a few steps on three prompts)
    "hp": {"Webbed neck": "HP:0000465", "Seizure": "HP:0001250", "Short stature": "HP:0004322"},
    "hgnc": {"Webbed neck": "TP53", "Seizure": "BRCA1", "Short stature": "INS"},
}


def _train_adapter(lm: LanguageModel, ontology: str, folder: Path, steps: int = 12) -> None:
    """A tiny LoRA fine-tune on a private copy of the base, saved with save_pretrained."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = copy.deepcopy(lm.model)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    tok = lm.tokenizer
    rows = []
    for term, target in PAIRS[ontology].items():
        prompt = tok(build_prompt(tok, ontology, term), add_special_tokens=False).input_ids
        answer = tok(target, add_special_tokens=False).input_ids + [lm.eos_token_id]
        rows.append((prompt + answer, [-100] * len(prompt) + answer))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(s)) + s for s, _ in rows])
    labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in rows])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(s) for s, _ in rows])[:, None]).long()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(folder)
    del model, base


def test_lora_adapters_change_outputs_and_are_picked_per_ontology(smollm, tmp_path: Path) -> None:
    for ontology in PAIRS:
        _train_adapter(smollm, ontology, tmp_path / ontology)
        assert (tmp_path / ontology / "adapter_config.json").is_file()
    # A private copy of the base model: PEFT injects adapter layers in place.
    lm = LanguageModel(copy.deepcopy(smollm.model), smollm.tokenizer, smollm.key + "#test", smollm.device)
    tok = smollm.tokenizer
    terms = list(PAIRS["hp"])

    def answers(ontology: str) -> list[str]:
        prompts = [build_prompt(tok, ontology, t) for t in terms]
        return [a.text for a in generate(lm, prompts, ontology=ontology, batch_size=4, max_new_tokens=8)]

    base_hp, base_go = answers("hp"), answers("go")
    lm.load_adapter("hp", tmp_path / "hp")
    lm.load_adapter("hgnc", tmp_path / "hgnc")
    tuned_hp, tuned_hgnc, still_go = answers("hp"), answers("hgnc"), answers("go")
    print("base:", base_hp, "\nhp adapter:", tuned_hp, "\nhgnc adapter:", tuned_hgnc)
    # Measured after 12 steps: the hp adapter answers "HP:000046..."-shaped strings (the base model
    # answers sentences), the hgnc adapter 2 of 3 symbols exactly (TP53, INS, INS).
    assert tuned_hp != base_hp and all(a.startswith("HP:") for a in tuned_hp)
    assert not any(a.startswith("HP:") for a in base_hp)
    assert set(tuned_hgnc) <= set(PAIRS["hgnc"].values())
    assert sum(a == b for a, b in zip(tuned_hgnc, PAIRS["hgnc"].values(), strict=True)) >= 2
    assert still_go == base_go  # an ontology without an adapter runs on the bare base model
    assert answers("hp") == tuned_hp  # switching back and forth is stable
