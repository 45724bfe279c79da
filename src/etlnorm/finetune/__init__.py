"""LoRA fine-tuning of the LLM tier on term -> ID pairs (the seed paper's memorization experiment).

``config``: hyper-parameters (a dataclass, loadable from a TOML ``[finetune]`` table);
``data``: term/ID pairs from the paper's CSVs, a generic CSV or the loaded ontology, and the
five-prompt training examples; ``train``: the training loop, adapter + ``etlnorm-adapter.json``;
``predict``: free and constrained answers of a model with or without its adapter.
"""

from etlnorm.finetune.config import FinetuneConfig, load_config
from etlnorm.finetune.data import Pair, examples, pairs_hash, read_pairs, sample_pairs
from etlnorm.finetune.train import METADATA_FILE, AdapterInfo, finetune, read_metadata

__all__ = [
    "METADATA_FILE",
    "AdapterInfo",
    "FinetuneConfig",
    "Pair",
    "examples",
    "finetune",
    "load_config",
    "pairs_hash",
    "read_metadata",
    "read_pairs",
    "sample_pairs",
]
