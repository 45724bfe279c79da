"""OBO files (HPO, GO) to a Release.

Parsing uses ``obonet``: fastobo and pronto reject the real go-basic.obo 2021-12-15
(``xref: EC 2.7.1.190`` at line 195244), obonet reads it. obonet leaves synonym lines as
raw strings, so this module splits them into text, scope and type.
"""

from __future__ import annotations

import re
from pathlib import Path

from etlnorm.errors import OntologyError
from etlnorm.ontology.release import Release, Synonym, Term

_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|RELATED|BROAD|NARROW)(?:\s+([^\s\[]+))?')
_RELEASE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def parse_synonym(line: str) -> tuple[str, str, str | None] | None:
    """``"text" SCOPE [type] [xrefs]`` to (text, scope, type); None if malformed."""
    match = _SYNONYM.match(line)
    if not match:
        return None
    text = re.sub(r"\\(.)", r"\1", match.group(1)).strip()
    return (text, match.group(2), match.group(3)) if text else None


def release_of(data_version: str | None) -> str | None:
    """``hp/releases/2025-01-16`` to ``2025-01-16``; other versions as written."""
    if not data_version:
        return None
    match = _RELEASE.search(data_version)
    return match.group(1) if match else data_version


def definition_of(value: str | None) -> str | None:
    """The text of an OBO ``def:`` value, ``"text" [xrefs]``, without quotes, escapes or xrefs."""
    if not value:
        return None
    found = re.match(r'\s*"((?:[^"\\]|\\.)*)"', value)
    text = found.group(1) if found else value
    return re.sub(r"\\(.)", r"\1", text).strip() or None


def read_obo(name: str, path: Path, prefix: str, source: str, fallback_release: str) -> Release:
    """Terms whose ID starts with ``prefix`` (imports from other ontologies are left out)."""
    import obonet

    try:
        graph = obonet.read_obo(str(path), ignore_obsolete=False)
    except Exception as exc:  # obonet raises bare Exceptions on malformed stanzas
        raise OntologyError(f"cannot parse OBO file {path}: {exc}") from exc
    release = Release(
        name=name,
        release=release_of(graph.graph.get("data-version")) or fallback_release,
        source=source,
    )
    for term_id, data in graph.nodes(data=True):
        if not term_id.startswith(prefix):
            continue
        obsolete = str(data.get("is_obsolete", "false")).lower() == "true"
        replaced = data.get("replaced_by") or []
        release.terms.append(
            Term(
                id=term_id,
                label=data.get("name"),
                namespace=data.get("namespace"),
                obsolete=obsolete,
                replaced_by=replaced[0] if replaced else None,
                consider=tuple(data.get("consider") or ()),
                definition=definition_of(data.get("def")),
            )
        )
        for line in data.get("synonym") or ():
            parsed = parse_synonym(line)
            if parsed:
                release.synonyms.append(Synonym(term_id, *parsed))
        release.alt_ids.extend((alt, term_id) for alt in data.get("alt_id") or ())
    if not release.terms:
        raise OntologyError(f"{path} holds no {prefix} terms: is it the right file?")
    return release
