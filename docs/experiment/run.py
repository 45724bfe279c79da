"""The committed run: fine-tune and evaluate SmolLM2-135M on hp, go and hgnc in one process.

One process loads the model once (de-quantizing the GGUF costs minutes on a busy CPU) and, per
ontology, trains the adapter (``etlnorm.finetune``) on the train subset, then runs the experiment
(``etlnorm.experiment.paper``) on the train and withheld subsets. Equivalent CLI per ontology:

    etlnorm finetune --ontology hp --train paper --limit 60 --config docs/experiment/finetune.toml --out ADAPTER
    etlnorm experiment --ontology hp --train paper:train --withheld paper:withheld --limit 60 \
        --adapter ADAPTER --labels-only --out docs/experiment/hp
    etlnorm experiment-summary docs/experiment/hp docs/experiment/go docs/experiment/hgnc --out docs/experiment

Usage: python docs/experiment/run.py --limit 60 --threads 1 hp hgnc go
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
from etlnorm.llm.constrain import loaded_release
from etlnorm.llm.model import load_model

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ontologies", nargs="+")
    parser.add_argument("--limit", type=int, default=60, help="terms per split, spread over the 20 bins")
    parser.add_argument("--config", type=Path, default=HERE / "finetune.toml")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--adapters", type=Path, default=Path("/tmp/etlnorm-exp/adapters"))
    parser.add_argument("--base", default=None, help="base model (default SmolLM2-135M GGUF)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings(index_variant="labels")
    engine = ready_engine(settings)
    started = time.perf_counter()
    lm = load_model(args.base)
    log = {"load_model_s": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads()}
    cfg = load_config(args.config)
    for ontology in args.ontologies:
        t = time.perf_counter()
        pairs = frame_to_pairs(balanced_subset(read_frame("paper:train", ontology), args.limit))
        info = finetune(ontology, pairs, args.adapters / ontology, cfg, lm=lm, release=loaded_release(engine, ontology),
                        source=f"paper:train, {args.limit} terms balanced over bins")  # fmt: skip
        run_experiment(ontology, "paper:train", "paper:withheld", args.out / ontology, adapter=info.folder,
                       limit=args.limit, engine=engine, settings=settings, lm=lm, variant="labels")  # fmt: skip
        log[f"{ontology}_s"] = round(time.perf_counter() - t, 1)
        (args.out / "run-log.json").write_text(json.dumps(log, indent=2))
    done = [o for o in ("hp", "go", "hgnc") if (args.out / o / "results.json").is_file()]
    write_summary(load_results([args.out / o for o in done]), args.out)
    log["total_s"] = round(time.perf_counter() - started, 1)
    (args.out / "run-log.json").write_text(json.dumps(log, indent=2))


if __name__ == "__main__":
    main()
