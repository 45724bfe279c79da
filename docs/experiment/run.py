"""The committed run: fine-tune and evaluate SmolLM2-135M on the paper's four tasks in one process.

Tasks: ``hp`` and ``go`` (term -> numeric ID), ``hgnc`` (HGNC approved name -> symbol) and
``hgnc-protein`` (the paper's own gene task: protein name -> symbol). One process loads the model
once and, per task, trains the adapter (``etlnorm.finetune``) on the train subset, then runs the
experiment (``etlnorm.experiment.paper``) on the train and withheld subsets, with the rerank adapter
of the ontology when one is given (``--rerank-adapter hp=FOLDER``, from ``etlnorm finetune --task
rerank``). Equivalent CLI per task:

    etlnorm finetune --ontology hp --train paper --limit 40 --config docs/experiment/finetune.toml --out ADAPTER
    etlnorm experiment --ontology hp --train paper:train --withheld paper:withheld --limit 40 \
        --adapter ADAPTER --rerank-adapter RERANK --labels-only --out docs/experiment/hp
    etlnorm experiment-summary docs/experiment/hp docs/experiment/go docs/experiment/hgnc \
        docs/experiment/hgnc-protein --out docs/experiment

Usage: python docs/experiment/run.py --limit 20 --threads 1 --rerank-adapter hp=FOLDER --notes docs/experiment/notes.md \
           hp go hgnc hgnc-protein
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from etlnorm.config import load_settings
from etlnorm.db.engine import ready_engine
from etlnorm.experiment.paper import balanced_subset, load_results, run_experiment
from etlnorm.experiment.report import write_summary
from etlnorm.finetune import finetune, load_config
from etlnorm.finetune.data import frame_to_pairs, read_frame
from etlnorm.llm.model import load_model
from etlnorm.ontology.store import loaded_release

HERE = Path(__file__).resolve().parent
TASKS = {"hp": ("hp", "paper"), "go": ("go", "paper"), "hgnc": ("hgnc", "paper"), "hgnc-protein": ("hgnc", "paper-protein")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks", nargs="+", choices=list(TASKS))
    parser.add_argument("--limit", type=int, default=40, help="terms per split, spread over the 20 bins")
    parser.add_argument("--config", type=Path, default=HERE / "finetune.toml")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--adapters", type=Path, default=Path("/tmp/etlnorm-exp/adapters"))
    parser.add_argument("--rerank-adapter", action="append", default=[], metavar="ONTOLOGY=FOLDER",
                        help="a rerank adapter (etlnorm finetune --task rerank) for the reranked row and the cascade")
    parser.add_argument("--base", default=None, help="base model (default SmolLM2-135M GGUF)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--notes", type=Path, default=None, help="Markdown added to the summary (how the run was made)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    rerank = dict(item.split("=", 1) for item in args.rerank_adapter)
    settings = load_settings(index_variant="labels")
    engine = ready_engine(settings)
    started = time.perf_counter()
    lm = load_model(args.base)
    log_file = args.out / "run-log.json"  # one call per task adds to the same log
    log = json.loads(log_file.read_text()) if log_file.is_file() else {}
    log.update({"load_model_s": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads(),
                "limit": args.limit, "device": str(lm.device)})
    cfg = load_config(args.config)
    for name in args.tasks:
        ontology, data = TASKS[name]
        t = time.perf_counter()
        pairs = frame_to_pairs(balanced_subset(read_frame(f"{data}:train", ontology), args.limit))
        info = finetune(ontology, pairs, args.adapters / name, cfg, lm=lm, release=loaded_release(engine, ontology).stamp,
                        source=f"{data}:train, {args.limit} terms balanced over bins")  # fmt: skip
        run_experiment(ontology, f"{data}:train", f"{data}:withheld", args.out / name, adapter=info.folder,
                       limit=args.limit, engine=engine, settings=settings, lm=lm, variant="labels", task=name,
                       rerank_adapter=rerank.get(ontology))  # fmt: skip
        log[f"{name}_s"] = round(time.perf_counter() - t, 1)
        log_file.write_text(json.dumps(log, indent=2))
    done = [t for t in TASKS if (args.out / t / "results.json").is_file()]
    notes = args.notes.read_text() if args.notes else ""
    write_summary(load_results([args.out / t for t in done]), args.out, notes)
    log["total_s"] = round(time.perf_counter() - started, 1)
    log_file.write_text(json.dumps(log, indent=2))


if __name__ == "__main__":
    main()
