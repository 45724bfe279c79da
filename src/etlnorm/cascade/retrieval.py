"""The retrieval tier: a FAISS index over every label and synonym, for terms no string matches.

One index per (release content, encoder model, variant), persisted under
``ETLNORM_HOME/indexes``: built once (minutes on a CPU), loaded in seconds afterwards. The folder
is named by the release's content fingerprint and the encoder's weights fingerprint, so another
file with the same data-version, or a model re-trained in place, never reuses a stale index.

Builds are safe to race: one builder per folder holds an exclusive file lock, writes into a
folder of its own and renames it into place; the others wait and find it built. A build killed
midway leaves only its own temporary folder, removed by the next builder. A finished index whose
vector count disagrees with its IDs is rebuilt with a warning.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import faiss
import numpy as np
from sqlalchemy import Engine, text

from etlnorm.cascade.answer import Answer, Candidate, WorkItem
from etlnorm.cascade.chars import CharIndex, mix
from etlnorm.cascade.encoder import Encoder
from etlnorm.cascade.tier import ActsOn
from etlnorm.errors import EtlnormError
from etlnorm.ontology.store import current_fingerprint, current_release
from etlnorm.ontology.user_synonyms import user_synonyms

log = logging.getLogger(__name__)

VARIANTS = ("all", "labels")  # "labels": labels only; "view-<hash>": given strings (held-out protocols)
View = Sequence[tuple[str, str]]  # (id, string) pairs: the part of an ontology a normalizer may see


def strings_hash(strings: View) -> str:
    """Content hash of (id, string) pairs: names an index (or a model) built on exactly them."""
    digest = hashlib.sha256()
    for ident, string in sorted(set(strings)):
        digest.update(f"{ident}\x1f{string}\x1e".encode())
    return digest.hexdigest()[:16]


def view_variant(strings: View) -> str:
    return f"view-{strings_hash(strings)}"
POOL = 20  # candidates taken from each list before mixing
STRINGS_PER_ID = 4  # search this many strings per wanted candidate, then keep the best per ID


@dataclass
class RetrievalIndex:
    index: faiss.Index
    ids: list[str]  # the term ID of each vector
    labels: dict[str, str | None]
    folder: Path

    def search(self, vectors: np.ndarray, k: int) -> list[list[Candidate]]:
        """Top-k distinct IDs per query vector, by best cosine over the ID's strings."""
        if len(vectors) == 0:
            return []
        scores, rows = self.index.search(vectors, min(k * STRINGS_PER_ID, self.index.ntotal))
        results = []
        for score_row, id_row in zip(scores, rows, strict=True):
            best: dict[str, float] = {}
            for score, row in zip(score_row, id_row, strict=True):
                if row >= 0:
                    term_id = self.ids[row]
                    best.setdefault(term_id, float(score))  # rows come best first
            ranked = sorted(best.items(), key=lambda kv: -kv[1])[:k]
            results.append([Candidate(i, self.labels.get(i), min(1.0, max(0.0, s))) for i, s in ranked])
        return results


def index_folder(home: Path, ontology: str, content: str, fingerprint: str, variant: str) -> Path:
    """Where the index of a release's content (its fingerprint), an encoder (its fingerprint) and a variant lives."""
    safe = content.replace("/", "_").replace(":", "_")
    return home / "indexes" / ontology / safe / f"{fingerprint}-{variant}"


PARTIAL = ".partial-"  # a builder's own temporary folder: <folder name>.partial-<random>


def is_built(folder: Path) -> bool:
    """Every file of a finished index is there (``meta.json`` is written last, then the folder renamed)."""
    return all((folder / name).is_file() for name in ("index.faiss", "ids.json", "strings.json", "meta.json"))


@contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """One builder per index folder, across processes: an exclusive ``flock`` on ``<folder>.lock``,
    released by the kernel when the holder exits, however it dies."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def release_strings(engine: Engine, ontology: str, variant: str) -> list[tuple[str, str]]:
    """(id, string) for every current term's label and (unless labels only) synonyms."""
    labels = "SELECT id, label FROM etlnorm.term WHERE ontology = :o AND NOT obsolete AND label IS NOT NULL"
    synonyms = (" UNION SELECT s.id, s.text FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id)"
                " WHERE s.ontology = :o AND NOT t.obsolete")  # fmt: skip
    query = labels + ("" if variant == "labels" else synonyms) + " ORDER BY 1, 2"
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(text(query), {"o": ontology})]


def current_labels(engine: Engine, ontology: str) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, label FROM etlnorm.term WHERE ontology = :o AND NOT obsolete"),
                            {"o": ontology})  # fmt: skip
        return {r[0]: r[1] for r in rows}


def build_index(engine: Engine, ontology: str, encoder: Encoder, home: Path, variant: str = "all",
                progress: bool = True, strings: View | None = None) -> tuple[Path, bool]:  # fmt: skip
    """Build the index unless an up-to-date one exists; returns (folder, built).

    ``strings``: index exactly these (id, string) pairs (a held-out protocol's train part) under
    the variant ``view-<their hash>``, instead of the release's labels (and synonyms)."""
    if strings is not None:
        variant = view_variant(strings)
    elif variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    with engine.connect() as conn:
        release, content = current_release(conn, ontology), current_fingerprint(conn, ontology)
    folder = index_folder(home, ontology, content, encoder.fingerprint, variant)
    if is_built(folder):
        return folder, False
    with build_lock(folder):
        if is_built(folder):  # another process built it while this one waited
            return folder, False
        for stale in folder.parent.glob(folder.name + PARTIAL + "*"):  # left by a builder that died
            shutil.rmtree(stale, ignore_errors=True)
        pairs = sorted(set(strings)) if strings is not None else release_strings(engine, ontology, variant)
        start = time.perf_counter()
        log.info("indexing %d strings of %s %s (%s) ...", len(pairs), ontology, release, variant)
        vectors = encode_reusing(folder.parent, encoder, [s for _, s in pairs], progress)
        index = faiss.IndexFlatIP(encoder.dim)
        index.add(vectors)
        meta = {"ontology": ontology, "release": release, "content": content, "variant": variant,
                "model": str(encoder.path), "fingerprint": encoder.fingerprint, "strings": len(pairs),
                "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        partial = Path(tempfile.mkdtemp(prefix=folder.name + PARTIAL, dir=folder.parent))
        try:
            faiss.write_index(index, str(partial / "index.faiss"))
            (partial / "ids.json").write_text(json.dumps([i for i, _ in pairs]))
            (partial / "strings.json").write_text(json.dumps([t for _, t in pairs]))
            (partial / "meta.json").write_text(json.dumps(meta, indent=2))
        except (OSError, RuntimeError) as exc:  # faiss reports a failed write as RuntimeError
            shutil.rmtree(partial, ignore_errors=True)
            raise EtlnormError(f"cannot write the {ontology} index under {folder.parent} (disk full, or no "
                               f"permission?): {str(exc).strip().splitlines()[-1]}") from exc  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)  # a bad index being replaced
        partial.rename(folder)
    log.debug("index for %s %s built in %.1f s: %s", ontology, release, meta["seconds"], folder)
    return folder, True


def encode_reusing(release_folder: Path, encoder: Encoder, texts: list[str], progress: bool = True) -> np.ndarray:
    """Vectors of ``texts``, taken from the finished indexes made with the same encoder (its weights
    fingerprint) where they hold the string, so each string is encoded once: the release's other
    variants and views first, then earlier releases of the ontology (a new release encodes only the
    strings it adds); the rest is encoded here."""
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    missing = dict.fromkeys(range(len(texts)))
    same = sorted(release_folder.glob(f"{encoder.fingerprint}-*"))
    earlier = sorted(set(release_folder.parent.glob(f"*/{encoder.fingerprint}-*")) - set(same),
                     key=lambda f: -f.stat().st_mtime)  # fmt: skip
    for sibling in same + earlier:
        if not missing or PARTIAL in sibling.name or not is_built(sibling):
            continue
        rows = {t: r for r, t in enumerate(json.loads((sibling / "strings.json").read_text()))}
        found = [(i, rows[texts[i]]) for i in missing if texts[i] in rows]
        if found:
            stored = faiss.read_index(str(sibling / "index.faiss"))
            mine, theirs = zip(*found, strict=True)
            vectors[list(mine)] = stored.reconstruct_n(0, stored.ntotal)[list(theirs)]
            for i in mine:
                del missing[i]
    todo = list(missing)
    if todo:
        vectors[todo] = encoder.encode([texts[i] for i in todo], progress=progress)
    log.info("%d strings: %d vectors reused, %d encoded", len(texts), len(texts) - len(todo), len(todo))
    return vectors


def read_built(folder: Path) -> tuple[faiss.Index, list[str]] | None:
    """The index and its IDs, or None (with a warning) when the files are unreadable or disagree."""
    try:
        ids = json.loads((folder / "ids.json").read_text())
        index = faiss.read_index(str(folder / "index.faiss"))
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("index %s is unreadable (%s): rebuilding it", folder, exc)
        return None
    if index.ntotal != len(ids):
        log.warning("index %s holds %d vectors for %d IDs: rebuilding it", folder, index.ntotal, len(ids))
        return None
    return index, ids


def load_index(engine: Engine, ontology: str, encoder: Encoder, home: Path, variant: str = "all",
               strings: View | None = None) -> RetrievalIndex:  # fmt: skip
    """The persisted index, built first if missing, plus the user's synonyms (encoded here: only
    their own strings, so adding a synonym file never rebuilds the release's index). A view
    (``strings``) holds exactly its strings."""
    folder, _ = build_index(engine, ontology, encoder, home, variant, strings=strings)
    found = read_built(folder)
    if found is None:
        with build_lock(folder):
            if read_built(folder) is None:
                shutil.rmtree(folder, ignore_errors=True)
        folder, _ = build_index(engine, ontology, encoder, home, variant, strings=strings)
        found = read_built(folder)
        if found is None:
            raise RuntimeError(f"index {folder} is unreadable right after its build")
    index, ids = found
    added = user_synonyms(engine, ontology) if strings is None else []
    if added:
        index.add(encoder.encode([s.text for s in added]))
        ids += [s.id for s in added]
    return RetrievalIndex(index, ids, current_labels(engine, ontology), folder)


class RetrievalTier:
    """Decides undecided items; abstains (method ``none``, candidates kept) below ``min_confidence``.

    With ``chars`` (a ``cascade.chars.CharIndex`` over the same strings), each term's dense and
    character lists (``POOL`` deep) are mixed, ``alpha`` · cosine + (1 − alpha) · character cosine,
    so one-letter typos, spacing and inverted names find their ID while paraphrases still rank by
    meaning (``bench/bench_chars.py`` chose the mix over rank fusion).

    Items an LLM already answered are searched too: when retrieval's best ID is the LLM's, the two
    independent tiers agree and the answer becomes ``llm+retrieval`` with a raised confidence.
    """

    name = "retrieval"
    acts_on: ClassVar[ActsOn] = ActsOn(decided_by=frozenset({"llm"}))

    def __init__(self, index: RetrievalIndex, encoder: Encoder, top_k: int = 5, min_confidence: float = 0.6,
                 chars: CharIndex | None = None, alpha: float = 0.5) -> None:  # fmt: skip
        self.index, self.encoder = index, encoder
        self.top_k, self.min_confidence = top_k, min_confidence
        self.chars, self.alpha = chars, alpha

    def search(self, texts: list[str], k: int | None = None) -> list[list[Candidate]]:
        """The top-k (default ``top_k``) candidates of each text: dense, or dense mixed with characters."""
        k = k or self.top_k
        vectors = self.encoder.encode(texts, progress=len(texts) > 5000)
        if self.chars is None:
            return self.index.search(vectors, k)
        depth = max(k, POOL)
        dense, chars = self.index.search(vectors, depth), self.chars.search(texts, depth)
        return [mix(d, c, self.alpha, top=k) for d, c in zip(dense, chars, strict=True)]

    def __call__(self, items: list[WorkItem]) -> None:
        for item, candidates in zip(items, self.search([item.text for item in items]), strict=True):
            if item.decision is not None:
                confirm(item, candidates)
                continue
            item.candidates = candidates
            if candidates and candidates[0].score >= self.min_confidence:
                best = candidates[0]
                item.decision = Answer(item.text, best.id, best.label, best.score, "retrieval", candidates)


def confirm(item: WorkItem, candidates: list[Candidate]) -> None:
    """Fold retrieval's view into an LLM answer: agreement raises confidence (noisy-or)."""
    decision = item.decision
    assert decision is not None
    known = {c.id for c in item.candidates}
    item.candidates = item.candidates + [c for c in candidates if c.id not in known]
    decision.candidates = item.candidates
    if candidates and candidates[0].id == decision.id:
        decision.method = "llm+retrieval"
        decision.confidence = 1 - (1 - decision.confidence) * (1 - candidates[0].score)
