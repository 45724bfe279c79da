"""A run's report as Markdown: the Prefect flow's artifact, readable anywhere Markdown is."""

from __future__ import annotations

import re
from collections import Counter

from etlnorm.warehouse.run import RunReport


def artifact_key(table: str, column: str) -> str:
    """``normalize-<table>-<column>`` in the characters Prefect allows in a key (a-z, 0-9, dashes)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"normalize-{table}-{column}".lower())).strip("-")


def run_markdown(report: RunReport, runner: str) -> str:
    """Rows, cache use, rows per method, the confidence histogram and time per phase of one run."""
    plan, stats = report.plan, report.stats
    processes = Counter(b.pid for b in report.batches)
    loads = {pid: len({b.normalizer for b in report.batches if b.pid == pid}) for pid in processes}
    mean = stats.mean_confidence if stats.mean_confidence is not None else "–"
    lines = [
        f"# etlnorm: {plan.table.qualified}.{plan.column} → {plan.ontology}",
        "",
        f"Run `{plan.run_id}`, {plan.ontology} release {plan.release}, outputs `{plan.prefix}_*`, runner `{runner}`.",
        "",
        "| rows | rows updated | mapped rows | distinct terms | new terms | cache hits | mean confidence |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {stats.rows_seen} | {stats.rows_updated} | {stats.mapped_rows} | {stats.distinct_terms} |"
        f" {stats.new_terms} | {stats.cache_hits} | {mean} |",
        "",
        "## Rows per method",
        "",
        "| method | rows |",
        "|---|---:|",
        *(f"| {method} | {n} |" for method, n in sorted(stats.methods.items(), key=lambda kv: -kv[1])),
        "",
        "## Confidence histogram",
        "",
        "| confidence | rows | mapped | abstained |",
        "|---|---:|---:|---:|",
        *(f"| {b.low:.1f}–{b.high:.1f} | {b.rows} | {b.mapped} | {b.rows - b.mapped} |" for b in report.histogram),
        "",
        "## Time per phase (s)",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *(f"| {phase} | {seconds:.2f} |" for phase, seconds in stats.timings.items()),
        "",
        f"{len(report.batches)} normalize batches in {len(processes)} process(es)"
        f" (normalizer loads per process: {', '.join(str(n) for n in loads.values()) or '–'}),"
        f" {report.ranges} update ranges.",
    ]
    return "\n".join(lines) + "\n"
