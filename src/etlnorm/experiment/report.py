"""Markdown for one experiment (``report.md``) and for several ontologies together (``README.md``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from etlnorm.experiment.plots import task
from etlnorm.finetune.paperdata import SPLITS

# The paper's figures (Llama 3.1 8B, n = 600 each, exact match, %): (base, fine-tuned).
PAPER = {
    ("hp", "train"): (0.5, 21.2), ("hp", "withheld"): (0.8, 0.3),
    ("go", "train"): (1.0, 43.7), ("go", "withheld"): (1.7, 1.5),
    ("hgnc-protein", "withheld"): (83.5, 87.3),  # the paper's gene task: protein name -> gene symbol
}  # fmt: skip


def pct(value: float | None) -> str:
    return (
        "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f} %"
    )

DESCRIPTIONS = {
    "base": "base model, free text, the paper's exact match of the extracted ID",
    "base_constrained": "base model, decoding constrained to current IDs",
    "finetuned": "base + LoRA adapter, free text, exact match (the paper's fine-tuned model)",
    "finetuned_constrained": "base + LoRA adapter, constrained decoding",
    "retrieval": "MiniLM + FAISS retrieval alone, top-1",
    "reranked": "retrieval's top 5, the fine-tuned LLM reranker's choice (etlnorm finetune --task rerank)",
    "cascade": "etlnorm's cascade (with the adapter when given)",
}


def _paper(name: str, split: str, which: int) -> str:
    ref = PAPER.get((name, split))
    return f"{ref[which]:.1f} %" if ref else "–"


def overall_table(results: Sequence[Mapping[str, Any]]) -> list[str]:
    methods = [m for m in DESCRIPTIONS if any(m in r["methods"] for r in results)]
    head = ["task", "split", "n", *methods, "paper base", "paper fine-tuned"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for split in SPLITS:
            if split not in r["splits"]:
                continue
            s = r["splits"][split]
            cells = [pct(s["accuracy"].get(m)) for m in methods]
            lines.append(f"| {task(r)} | {split} | {s['n']} | " + " | ".join(cells)
                         + f" | {_paper(task(r), split, 0)} | {_paper(task(r), split, 1)} |")  # fmt: skip
    return lines


def write_report(results: Mapping[str, Any], path: Path, plots: Mapping[str, str]) -> Path:
    r = results
    meta = r.get("adapter_metadata") or {}
    hp = meta.get("hyperparameters", {})
    metrics = meta.get("metrics", {})
    lines = [
        f"# The paper's experiment: `{task(r)}` ({r['ontology']} {r['release']})",
        "",
        f"- base model: `{r['base_model']}` on {r['device']}",
        f"- adapter: `{r['adapter']}`" if r["adapter"] else "- adapter: none (fine-tuned rows absent)",
    ]
    if meta:
        lines.append(
            f"  - trained on {meta['data']['pairs']} pairs × {len(meta['prompt_templates'])} prompt wordings, "
            f"{hp.get('epochs')} epochs, LoRA r={hp.get('lora_r')}, lr={hp.get('learning_rate')}, "
            f"batch {hp.get('batch_size_used')}, seed {hp.get('seed')}; final loss {metrics.get('final_loss')}, "
            f"train exact match {pct(metrics.get('train_exact_match'))}, {metrics.get('train_seconds')} s"
        )
    limit = r["data"]["limit_per_split"]
    lines += [
        f"- data: train `{r['data']['train']}`, withheld `{r['data']['withheld']}`"
        + (f"; subset of {limit} terms per split ({r['data']['selection']})" if limit else "; every row"),
        f"- retrieval index: `{r['index_variant']}` strings; cascade: {' → '.join(r['cascade'])}",
        f"- wall time: {r['seconds'].get('total')} s ({', '.join(f'{k} {v} s' for k, v in r['seconds'].items() if k != 'total')})",
        "",
        "## Accuracy",
        "",
        *overall_table([r]),
        "",
        "Methods: " + "; ".join(f"**{m}**: {DESCRIPTIONS[m]}" for m in r["methods"]) + ".",
        "Free-text rows are scored as in the paper (the extracted ID equals the gold string); the others "
        "against the gold ID resolved to its current ID in the loaded release.",
        "",
        "Cascade decisions by method: "
        + "; ".join(
            f"{s}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for s, c in r["cascade_methods"].items()
        ),
        "",
        f"![accuracy by popularity bin]({plots['accuracy_by_bin']})",
        "",
        "## Accuracy by popularity bin",
        "",
    ]
    for split, s in r["splits"].items():
        methods = r["methods"]
        lines += [f"### {split}", "", "| bin | n | median popularity | " + " | ".join(methods) + " |",
                  "|" + "---|" * (3 + len(methods))]  # fmt: skip
        for b, row in sorted(s["by_bin"].items(), key=lambda kv: int(kv[0])):
            cells = [pct(row["accuracy"].get(m)) for m in methods]
            lines.append(f"| {b} | {row['n']} | {row['median_popularity']} | " + " | ".join(cells) + " |")
        lines.append("")
    lex = r["lexicalization"]
    lines += [
        "## Lexicalization",
        "",
        f"Mean cosine between the all-MiniLM-L6-v2 embedding of each term and of its identifier string: "
        f"**{lex['mean']:.3f}** (sd {lex['sd']:.3f}, n = {lex['n']}; "
        + ", ".join(f"{k} {v:.3f}" for k, v in lex["by_split"].items())
        + ").",
        "",
        f"![lexicalization]({plots['lexicalization']})",
        "",
        "Per-term predictions and generated texts: `predictions.csv`; every number above: `results.json`.",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def write_summary(results: Sequence[Mapping[str, Any]], out: Path, notes: str = "") -> Path:
    """``out/README.md`` (+ summary plots) combining several ontologies' results."""
    from etlnorm.experiment.plots import plot_lexicalization, plot_summary

    out.mkdir(parents=True, exist_ok=True)
    plot_summary(results, out / "summary_accuracy.png")
    plot_lexicalization(
        {task(r): r["lexicalization"]["values"] for r in results}, out / "lexicalization.png"
    )
    lex_means = {task(r): r["lexicalization"] for r in results}
    lines = [
        "# The paper's experiment, reproduced small",
        "",
        *overall_table(results),
        "",
        "Paper columns: Llama 3.1 8B, n = 600 per set, exact match (base → fine-tuned), counted from the "
        "paper's result files; its gene task maps protein names to gene symbols.",
        "",
        "![accuracy per method](summary_accuracy.png)",
        "",
        "| task | lexicalization (mean cosine term vs identifier) | sd | n |",
        "|---|---|---|---|",
        *(f"| {o} | {v['mean']:.3f} | {v['sd']:.3f} | {v['n']} |" for o, v in lex_means.items()),
        "",
        "![lexicalization per ontology](lexicalization.png)",
        "",
    ]
    if notes:
        lines += [notes.rstrip(), ""]
    lines += [
        "Per task: " + ", ".join(f"[{task(r)}]({task(r)}/report.md)" for r in results),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))
    return out / "README.md"
