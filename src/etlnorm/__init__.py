"""etlnorm: biomedical term normalization inside the data warehouse.

    >>> from etlnorm import normalize
    >>> normalize(["seizures", "low-set ears"], "hp")[0].id
    'HP:0001250'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Answer", "Normalizer", "normalize", "resolve"]

if TYPE_CHECKING:
    from etlnorm.cascade.answer import Answer
    from etlnorm.cascade.normalizer import Normalizer, normalize
    from etlnorm.ontology.store import Resolution


def resolve(identifier: str, ontology: str | None = None) -> Resolution:
    """The current ID for ``identifier`` in the configured database (see ``etlnorm.ontology.store.resolve``)."""
    from etlnorm.db.engine import ready_engine
    from etlnorm.ontology.store import resolve as resolve_with

    return resolve_with(ready_engine(), identifier, ontology)


def __getattr__(name: str) -> Any:
    # Heavy modules (torch, faiss) load only when used, so `etlnorm --help` stays fast.
    if name in ("Normalizer", "normalize"):
        from etlnorm.cascade import normalizer

        return getattr(normalizer, name)
    if name == "Answer":
        from etlnorm.cascade.answer import Answer

        return Answer
    raise AttributeError(name)
