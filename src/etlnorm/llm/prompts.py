"""Per-ontology prompt wording, defaulting to the paper's, rendered through the chat template.

The paper fine-tuned on five paraphrases per term (``paraphrases``); inference uses the first one
unless configured otherwise. HGNC's "identifier" is the gene symbol (as in the paper's data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What the paper's training files call each ontology (see shared/paper-data/PROMPTS.md).
ONTOLOGY_NAMES = {"hp": "HPO", "go": "GO", "hgnc": "HGNC"}

# The five paper templates, with {name} for the ontology's display name and {term} for the term.
_PAPER = (
    "What is the {name} identifier for the {name} term {{term}}?",
    "The {name} term {{term}} has what {name} identifier? Respond only with the {name} identifier.",
    "Provide the {name} identifier for: {{term}}",
    "What is the ontology identifier for {{term}} in {name}?",
    "Return only the {name} identifier for the term: {{term}}",
)

MAX_TERM_CHARS = 300  # a longer term is cut: no biomedical term is that long, and prompts must stay short


def paraphrases(ontology: str) -> tuple[str, ...]:
    """The paper's five templates for ``ontology`` (the fine-tuning data uses all five per term)."""
    name = ONTOLOGY_NAMES.get(ontology, ontology.upper())
    return tuple(t.format(name=name) for t in _PAPER)


def template_for(ontology: str, templates: Mapping[str, str] | None = None) -> str:
    """The configured template for ``ontology``, else the paper's first wording."""
    if templates and ontology in templates:
        return templates[ontology]
    return paraphrases(ontology)[0]


def clean_term(term: str | None, max_chars: int = MAX_TERM_CHARS) -> str:
    """The term as it goes into a prompt: one line, no control characters, at most ``max_chars``."""
    text = " ".join(str(term or "").split())
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:max_chars]


def user_message(ontology: str, term: str, templates: Mapping[str, str] | None = None) -> str:
    """The question asked about ``term`` (template filled; braces in the term are kept as-is)."""
    return template_for(ontology, templates).replace("{term}", clean_term(term))


def render(tokenizer: Any, message: str) -> str:
    """``message`` as the model expects it: the chat template with the assistant turn opened, or the
    bare text followed by a newline for a base model without one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
        )
    return message + "\n"


def build_prompt(tokenizer: Any, ontology: str, term: str, templates: Mapping[str, str] | None = None) -> str:
    """The full prompt text for one term, ready to tokenize (without extra special tokens)."""
    return render(tokenizer, user_message(ontology, term, templates))
