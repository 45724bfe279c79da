"""An ontology release as parsed from its file, before it goes into Postgres."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Term:
    id: str
    label: str | None
    namespace: str | None = None
    obsolete: bool = False
    replaced_by: str | None = None
    consider: tuple[str, ...] = ()
    accession: str | None = None
    definition: str | None = None


@dataclass(frozen=True, slots=True)
class Synonym:
    id: str
    text: str
    scope: str
    type: str | None = None


@dataclass
class Release:
    """Everything one file says: terms, their synonyms and their retired (alt) IDs."""

    name: str
    release: str
    source: str
    terms: list[Term] = field(default_factory=list)
    synonyms: list[Synonym] = field(default_factory=list)
    alt_ids: list[tuple[str, str]] = field(default_factory=list)  # (alt_id, current id)

    @property
    def n_obsolete(self) -> int:
        return sum(t.obsolete for t in self.terms)
