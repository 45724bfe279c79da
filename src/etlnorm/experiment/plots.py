"""PNG plots of the experiment (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

STYLE = {  # method -> (colour, line style, marker)
    "base": ("#1f77b4", "--", "o"), "base_constrained": ("#1f77b4", ":", "s"),
    "finetuned": ("#d62728", "-", "o"), "finetuned_constrained": ("#d62728", ":", "s"),
    "retrieval": ("#2ca02c", "-", "^"), "cascade": ("#000000", "-", "D"),
}  # fmt: skip



def task(results: Mapping[str, Any]) -> str:
    """What a result set is called: its task (hgnc-protein), else its ontology (older results)."""
    return results.get("task") or results["ontology"]

def plot_accuracy_by_bin(results: Mapping[str, Any], path: Path) -> Path:
    """Accuracy per popularity bin, one line per method, one panel per split."""
    splits = list(results["splits"])
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4.2), sharey=True, squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        by_bin = results["splits"][split]["by_bin"]
        bins = sorted(by_bin, key=int)
        for method in results["methods"]:
            colour, line, marker = STYLE.get(method, ("grey", "-", "."))
            ys = [by_bin[b]["accuracy"].get(method) for b in bins]
            ax.plot([int(b) for b in bins], [100 * y if y is not None else float("nan") for y in ys], line,
                    color=colour, marker=marker, markersize=4, label=method)  # fmt: skip
        n = results["splits"][split]["n"]
        ax.set_title(f"{task(results)} {split} (n={n})")
        ax.set_xlabel("popularity bin (paper's binning)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lexicalization(values: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Term-vs-identifier cosine per ontology: a box per ontology, its mean marked and printed."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(names), 4))
    ax.boxplot([list(values[n]) for n in names], showmeans=True, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    for i, name in enumerate(names, start=1):
        data = list(values[name])
        mean = sum(data) / len(data) if data else float("nan")
        ax.annotate(f"{mean:.2f}", (i, mean), textcoords="offset points", xytext=(14, 0), fontsize=8)
    ax.set_ylabel("cosine(term, identifier) — MiniLM")
    ax.set_title("lexicalization of identifiers")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_summary(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Overall accuracy per method, grouped by ontology and split (bars)."""
    groups = [(task(r), s) for r in results for s in r["splits"]]
    methods = [m for m in STYLE if any(m in r["methods"] for r in results)]
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(groups), 4.4))
    for k, method in enumerate(methods):
        ys = []
        for r in results:
            for s in r["splits"]:
                acc = r["splits"][s]["accuracy"].get(method)
                ys.append(100 * acc if acc is not None else 0.0)
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, ys, width, color=STYLE[method][0], hatch="//" if method.endswith("constrained") else None,
               edgecolor="white", label=method)  # fmt: skip
    ax.set_xticks(range(len(groups)), [f"{o}\n{s}" for o, s in groups])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability(summaries: Sequence[Any], path: Path, title: str) -> Path:
    """Reliability diagram: per method, each confidence bin's precision against its mean confidence
    (on the diagonal = confidence means precision), point size by answers."""
    shown = [s for s in summaries if s.bins]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.6 * max(1, len(shown)), 3.8), squeeze=False)
    for ax, summary in zip(axes[0], shown, strict=False):
        xs = [b.mean_confidence for b in summary.bins]
        ys = [b.precision for b in summary.bins]
        sizes = [12 + 120 * b.answered / max(x.answered for x in summary.bins) for b in summary.bins]
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        ax.plot(xs, ys, "-", color="#1f77b4", linewidth=1)
        ax.scatter(xs, ys, s=sizes, color="#1f77b4", zorder=3)
        ax.set_title(f"{summary.method} (n={sum(b.answered for b in summary.bins)}, ECE {summary.calibration_error:.3f})",
                     fontsize=9)  # fmt: skip
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("precision of the IDs written")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

