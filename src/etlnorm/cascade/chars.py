"""The character tier: TF-IDF over character n-grams, to be fused with dense retrieval.

A sentence encoder sees "Scleirtis" or "lowset ears" as other words; character n-grams inside word
boundaries (``char_wb``) still share most of their grams with "Scleritis" and "Low-set ears", and a
bag of grams ignores word order ("Ears, low-set"). ``CharIndex`` holds the same (id, string) pairs as
the dense index and answers, per query, the top-k distinct IDs by the best cosine over each ID's
strings, like ``RetrievalIndex.search``. Two ways to merge its list with retrieval's: ``fuse``
(reciprocal rank fusion) and ``mix`` (a weighted sum of the two cosines, the weight learned by
``learn_alpha``); ``compare`` measures dense, chars, RRF and the mix on labelled queries.

Measured on HPO 2025-01-16 (``bench/bench_chars.py``, acc@1 on 2,000 queries each): on misspelt
labels chars 0.960, dense 0.795, RRF 0.88-0.93, mix 0.93-0.96; on held-out EXACT synonyms (labels-only
index) dense 0.408, chars 0.363, RRF 0.38-0.41, mix 0.415. RRF never beats the better tier alone by
more than a point; one mix weight (0.5, learned on both sets) keeps 0.934 and 0.414.

Speed: nearly every string shares some common gram with any query ("al ", " ab"), so the full
sparse product has ~20k non-zeros per query on HPO. Candidates are therefore proposed by the rare
grams only (in at most ``max_df`` of the strings), the ``pool`` best strings per query are rescored
with their exact cosine (common grams included), and only those compete: 2.5-6x faster, and the
rank-1 ID is the full product's for 99-100 % of the benchmark's queries (``max_df=None``: the full
product). About 3,000 queries/s on one core against HPO's 41k strings; dense encode+search ~140/s.
"""

from __future__ import annotations

import os
import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from etlnorm.cascade.answer import Candidate
from etlnorm.cascade.textnorm import word_key

# Measured on HPO 2025-01-16 (bench/bench_chars.py), chars alone, acc@1: (2, 4) 0.960 on misspelt labels and
# 0.363 on held-out EXACT synonyms, (3, 5) 0.920 and 0.348; (3, 5) searches at about the same speed.
NGRAM_RANGE = (2, 4)
MAX_DF = 0.025  # grams in more than this share of the strings propose no candidates (they still score)
COMMON_PRIOR = 0.5  # share of the common grams' bound that ranks proposals (see _search_chunk)
POOL = 64  # strings per query rescored exactly
MIN_RARE_NORM = 0.5  # below this share of a query's norm in rare grams, it is scored in full
CHUNK = 512  # queries per sparse product: bounds the product's memory
MAX_CACHED_WORDS = 100_000  # query words whose gram columns are remembered (ontology words recur)
RRF_K = 60  # the usual constant of reciprocal rank fusion (Cormack et al. 2009)


def prepare(text: str) -> str:
    """What the vectorizer sees: ``word_key`` (case, punctuation, dashes and plurals folded), so
    "low-set-ears" and "Low-set ears" are one string and only real misspellings remain to bridge."""
    return word_key(text)


@dataclass
class CharIndex:
    """Character n-gram TF-IDF rows of every (id, string) pair; rows are L2-normalised (dot = cosine)."""

    vectorizer: TfidfVectorizer
    matrix: sp.csr_matrix  # strings × grams
    row_id: np.ndarray  # ID code of each row; codes follow sorted ID order, which breaks score ties
    ids: list[str]  # the ID of each code
    labels: dict[str, str | None]
    max_df: float | None = MAX_DF
    pool: int = POOL
    _parts: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # made on first search
    _grams: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]], labels: dict[str, str | None],
              ngram_range: tuple[int, int] = NGRAM_RANGE, max_df: float | None = MAX_DF,
              pool: int = POOL) -> CharIndex:  # fmt: skip
        """Fit on the index strings themselves, so IDF reflects this ontology's vocabulary. Strings
        equal after ``prepare`` are kept once per ID."""
        kept = sorted({(term_id, key) for term_id, text in pairs if (key := prepare(text))})
        ids = sorted({term_id for term_id, _ in kept})
        code = {term_id: n for n, term_id in enumerate(ids)}
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, lowercase=True,
                                     sublinear_tf=True, dtype=np.float32)  # fmt: skip
        matrix = sp.csr_matrix(vectorizer.fit_transform([key for _, key in kept]))
        row_id = np.array([code[term_id] for term_id, _ in kept], dtype=np.int64)
        return cls(vectorizer, matrix, row_id, ids, labels, max_df, pool)

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def search(self, queries: Sequence[str], k: int) -> list[list[Candidate]]:
        """Top-k distinct IDs per query by the best cosine over the ID's strings, best first, ties by
        ID; an empty list for a query sharing no gram with any string."""
        results: list[list[Candidate]] = []
        for start in range(0, len(queries), CHUNK):
            results.extend(self._search_chunk(queries[start : start + CHUNK], k))
        return results

    def vectors(self, queries: Sequence[str]) -> sp.csr_matrix:
        """``vectorizer.transform([prepare(q) ...])``, faster (1.5x on new words, 4x on known ones):
        ``char_wb`` grams never cross a space, so each word's gram columns are computed once and reused."""
        vocabulary, analyze, cache = (
            self.vectorizer.vocabulary_,
            self.vectorizer.build_analyzer(),
            self._grams,
        )
        pieces, indptr = [], [0]
        for query in queries:
            size = 0
            for word in prepare(query).split():
                grams = cache.get(word)
                if grams is None:
                    grams = np.array(
                        [vocabulary[g] for g in analyze(word) if g in vocabulary], dtype=np.int32
                    )
                    if len(cache) < MAX_CACHED_WORDS:
                        cache[word] = grams
                pieces.append(grams)
                size += len(grams)
            indptr.append(indptr[-1] + size)
        columns = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
        counts = sp.csr_matrix((np.ones(len(columns), dtype=np.float32), columns, np.array(indptr)),
                               shape=(len(queries), self.matrix.shape[1]))  # fmt: skip
        counts.sum_duplicates()  # term counts
        np.log(counts.data, counts.data)  # sublinear tf: 1 + log(count), as TfidfTransformer does
        counts.data += 1.0
        counts.data *= self.vectorizer.idf_[counts.indices].astype(np.float32)
        return sp.csr_matrix(normalize(counts, copy=False))

    def _derived(self) -> dict:
        """Split the grams once: rare ones propose candidates, common ones only complete scores."""
        if not self._parts:
            parts: dict = {"all_t": self.matrix.T.tocsr()}
            if self.max_df is not None:
                df = np.diff(self.matrix.tocsc().indptr)
                rare = df <= max(1, int(self.max_df * len(self)))
                parts |= {"rare": rare, "rare_t": self.matrix[:, rare].T.tocsr(),
                          "common": self.matrix[:, ~rare].tocsr()}  # fmt: skip
                parts["common_norm"] = np.sqrt(
                    np.asarray(parts["common"].multiply(parts["common"]).sum(axis=1)).ravel()
                )
            self._parts = parts
        return self._parts

    def _search_chunk(self, queries: Sequence[str], k: int) -> list[list[Candidate]]:
        parts, q = self._derived(), self.vectors(queries)
        pool = max(self.pool, 2 * k)  # strings that compete: enough for k distinct IDs in practice
        if self.max_df is None:
            product = sp.csr_matrix(q @ parts["all_t"])
            rows, cols, at = _top_per_row(product, pool)
            return self._rank(len(queries), rows, cols, product.data[at], k)
        rare, q_common = parts["rare"], q[:, ~parts["rare"]].toarray()
        q_rare = q[:, rare]
        proposed = sp.csr_matrix(q_rare @ parts["rare_t"])
        # Rank proposals by their rare-gram score plus a share of the common grams' bound
        # (|q_common| |x_common|), so strings strong in common grams are not crowded out of the pool.
        prior = COMMON_PRIOR * np.repeat(np.linalg.norm(q_common, axis=1), np.diff(proposed.indptr))
        rows, cols, at = _top_per_row(
            proposed, pool, proposed.data + prior * parts["common_norm"][proposed.indices]
        )
        scores = proposed.data[at] + _common_dots(q_common, parts["common"], rows, cols)
        # A query made mostly of common grams ("ear", "xyzq ear") is badly served by its rare grams'
        # proposals: score it against every string (a few per thousand queries on HPO).
        rare_norm = np.sqrt(np.asarray(q_rare.multiply(q_rare).sum(axis=1)).ravel())
        weak = (np.diff(proposed.indptr) < pool) | (rare_norm < MIN_RARE_NORM)
        full = np.flatnonzero(weak & (np.diff(q.indptr) > 0))
        if len(full):
            keep = ~np.isin(rows, full)
            product = sp.csr_matrix(q[full] @ parts["all_t"])
            more_rows, more_cols, at = _top_per_row(product, pool)
            rows = np.concatenate([rows[keep], full[more_rows]])
            cols = np.concatenate([cols[keep], more_cols])
            scores = np.concatenate([scores[keep], product.data[at]])
        return self._rank(len(queries), rows, cols, scores, k)

    def _rank(
        self, n: int, rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, k: int
    ) -> list[list[Candidate]]:
        """Best string per (query, ID), then the k best IDs per query; ties by ID code (= ID order)."""
        codes = self.row_id[cols]
        order = np.lexsort((codes, -scores, rows))
        rows, codes, scores = rows[order], codes[order], scores[order]
        _, first = np.unique(rows * len(self.ids) + codes, return_index=True)
        first.sort()  # the first row of each (query, ID) in this order is its best string
        rows, codes, scores = rows[first], codes[first], scores[first]
        starts = np.searchsorted(rows, np.arange(n + 1)).tolist()
        names = [self.ids[c] for c in codes.tolist()]
        values = np.clip(scores, 0.0, 1.0).tolist()
        labels = [self.labels.get(name) for name in names]
        return [
            [Candidate(names[j], labels[j], values[j]) for j in range(lo, min(hi, lo + k))]
            for lo, hi in zip(starts[:-1], starts[1:], strict=True)
        ]

    def save(self, folder: Path) -> Path:
        """Persist into ``folder/chars.joblib`` (written aside, then renamed); labels are not stored."""
        folder.mkdir(parents=True, exist_ok=True)
        path, partial = folder / "chars.joblib", folder / "chars.joblib.partial"
        state = {"vectorizer": self.vectorizer, "matrix": self.matrix, "row_id": self.row_id, "ids": self.ids,
                 "max_df": self.max_df, "pool": self.pool}  # fmt: skip
        joblib.dump(state, partial)
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, folder: Path, labels: dict[str, str | None]) -> CharIndex:
        """An index saved by ``save`` (a joblib pickle: load only files this code wrote)."""
        state = joblib.load(folder / "chars.joblib")
        return cls(state["vectorizer"], state["matrix"], state["row_id"], state["ids"], labels,
                   state["max_df"], state["pool"])  # fmt: skip


def _top_per_row(
    product: sp.csr_matrix, pool: int, by: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, position in ``data``) of the ``pool`` entries of each row of a sparse product
    that are largest ``by`` (default: the values themselves)."""
    indptr, cols = product.indptr, product.indices
    by = product.data if by is None else by
    sizes = np.diff(indptr)
    picked = [np.flatnonzero(np.repeat(sizes <= pool, sizes))]
    for r in np.flatnonzero(sizes > pool).tolist():
        lo, hi = indptr[r], indptr[r + 1]
        picked.append(lo + np.argpartition(-by[lo:hi], pool - 1)[:pool])
    at = np.sort(np.concatenate(picked))
    rows = np.searchsorted(indptr, at, side="right") - 1
    return rows.astype(np.int64), cols[at].astype(np.int64), at


def _common_dots(
    q_common: np.ndarray, x_common: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The common grams' share of each (query, string) pair's cosine: the string's few common grams,
    gathered, times the (small, dense) query rows."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float32)
    gathered = x_common[cols]
    counts = np.diff(gathered.indptr)
    weights = gathered.data * q_common[np.repeat(rows, counts), gathered.indices]
    return np.bincount(np.repeat(np.arange(len(rows)), counts), weights, len(rows)).astype(np.float32)


# ---------------------------------------------------------------------------------------- fusion


@dataclass(frozen=True, slots=True)
class Fused:
    """One fused candidate with what each list said of it (rank from 1; None: not in that list)."""

    id: str
    label: str | None
    score: float  # fused, in [0, 1]
    dense: float | None  # the dense cosine
    chars: float | None  # the character cosine
    dense_rank: int | None
    char_rank: int | None

    def candidate(self) -> Candidate:
        return Candidate(self.id, self.label, self.score)


def fuse_detailed(dense: Sequence[Candidate], chars: Sequence[Candidate], k: int = RRF_K,
                  weights: tuple[float, float] = (1.0, 1.0), top: int | None = None,
                  ) -> list[Fused]:  # fmt: skip
    """Reciprocal rank fusion, keeping each list's cosine and rank beside the fused score.

    ``score = Σ w / (k + rank)`` over the lists holding the ID (ranks from 1, an ID's first place in a
    list counts), divided by ``Σ w / (k + 1)``: 1.0 means first in both lists, and an ID first in one
    list only gets that list's share of the weights. Ranks alone decide, so the two tiers' scores need
    no common scale. Best first, ties by ID.
    """
    if k < 0 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("fusion needs k >= 0 and non-negative weights, not all zero")
    seen: dict[str, dict] = {}
    for source, weight, candidates in (("dense", weights[0], dense), ("chars", weights[1], chars)):
        for rank, candidate in enumerate(candidates, start=1):
            entry = seen.setdefault(candidate.id, {"label": candidate.label, "rrf": 0.0})
            if source in entry:
                continue
            entry[source] = (candidate.score, rank)
            entry["rrf"] += weight / (k + rank)
            entry["label"] = entry["label"] if entry["label"] is not None else candidate.label
    best = sum(weights) / (k + 1)
    fused = [Fused(term_id, e["label"], min(1.0, e["rrf"] / best),
                   e.get("dense", (None,))[0], e.get("chars", (None,))[0],
                   e.get("dense", (None, None))[1], e.get("chars", (None, None))[1])
             for term_id, e in seen.items()]  # fmt: skip
    fused.sort(key=lambda f: (-f.score, f.id))
    return fused[:top] if top is not None else fused


def fuse(dense: Sequence[Candidate], chars: Sequence[Candidate], k: int = RRF_K,
         weights: tuple[float, float] = (1.0, 1.0), top: int | None = None) -> list[Candidate]:  # fmt: skip
    """Reciprocal rank fusion of dense retrieval's and the character tier's lists for one query, as
    ``Candidate``s whose ``score`` is the fused score in [0, 1] (see ``fuse_detailed``)."""
    return [f.candidate() for f in fuse_detailed(dense, chars, k, weights, top)]


def mix(
    dense: Sequence[Candidate], chars: Sequence[Candidate], alpha: float, top: int | None = None
) -> list[Candidate]:
    """The learned alternative to RRF: ``alpha · dense cosine + (1 − alpha) · char cosine`` (a list
    that lacks the ID counts 0), in [0, 1] like a cosine; best first, ties by ID. ``alpha`` comes from
    ``learn_alpha``."""
    scored = _mixed(fuse_detailed(dense, chars), alpha)
    return scored[:top] if top is not None else scored


def _mixed(fused: Iterable[Fused], alpha: float) -> list[Candidate]:
    scored = [
        Candidate(f.id, f.label, alpha * (f.dense or 0.0) + (1 - alpha) * (f.chars or 0.0)) for f in fused
    ]
    scored.sort(key=lambda c: (-c.score, c.id))
    return scored


ALPHAS = tuple(a / 20 for a in range(21))  # the grid ``learn_alpha`` searches


def learn_alpha(gold: Sequence[str | Collection[str]], dense: Sequence[Sequence[Candidate]],
                chars: Sequence[Sequence[Candidate]]) -> float:  # fmt: skip
    """The ``mix`` weight with the best acc@1 on these labelled queries (ties: the more even mix).
    Learn it on queries like the ones to be normalized: typos want chars, new synonyms want dense."""
    golds, detailed = _aligned(gold, dense, chars)
    return _best_alpha(golds, detailed, range(len(golds)))


def compare(gold: Sequence[str | Collection[str]], dense: Sequence[Sequence[Candidate]],
            chars: Sequence[Sequence[Candidate]], ks: Sequence[int] = (10, 30, 60),
            weights: Sequence[tuple[float, float]] = ((1.0, 1.0), (1.0, 2.0), (2.0, 1.0)),
            ) -> dict[str, float]:  # fmt: skip
    """acc@1 on labelled queries of dense alone, chars alone, RRF for each (k, weights), and ``mix``
    with ``alpha`` learned by 2-fold cross-validation (its key names the two folds' mean ``alpha``).

    ``gold[i]`` is the ID, or the set of acceptable IDs, of query i; ``dense[i]`` and ``chars[i]`` are
    the two tiers' candidate lists for it. The integrator ships whichever scores best.
    """
    golds, detailed = _aligned(gold, dense, chars)
    out = {"dense": _acc(golds, dense), "chars": _acc(golds, chars)}
    for k in ks:
        for w in weights:
            out[f"rrf k={k} w={w[0]:g}:{w[1]:g}"] = _acc(
                golds, [fuse(d, c, k, w) for d, c in zip(dense, chars, strict=True)]
            )
    order = list(range(len(golds)))
    random.Random(0).shuffle(order)
    folds = (sorted(order[::2]), sorted(order[1::2]))
    alphas, hits = [], 0.0
    for train, test in (folds, folds[::-1]):
        alpha = _best_alpha(golds, detailed, train)
        alphas.append(alpha)
        hits += _acc([golds[i] for i in test], [_mixed(detailed[i], alpha) for i in test]) * len(test)
    out[f"mix alpha={sum(alphas) / 2:.2f} (2-fold cv)"] = hits / len(golds) if golds else 0.0
    return out


def _aligned(gold: Sequence[str | Collection[str]], dense: Sequence[Sequence[Candidate]],
             chars: Sequence[Sequence[Candidate]]) -> tuple[list[set[str]], list[list[Fused]]]:  # fmt: skip
    golds = [{g} if isinstance(g, str) else set(g) for g in gold]
    if not len(golds) == len(dense) == len(chars):
        raise ValueError("gold, dense and chars must be aligned, one entry per query")
    return golds, [fuse_detailed(d, c) for d, c in zip(dense, chars, strict=True)]


def _acc(golds: Sequence[set[str]], lists: Sequence[Sequence[Candidate]]) -> float:
    hits = sum(1 for g, c in zip(golds, lists, strict=True) if c and c[0].id in g)
    return hits / len(golds) if golds else 0.0


def _best_alpha(golds: list[set[str]], detailed: list[list[Fused]], which: Iterable[int]) -> float:
    chosen = list(which)
    subset = [golds[i] for i in chosen]
    return max(ALPHAS, key=lambda a: (_acc(subset, [_mixed(detailed[i], a) for i in chosen]), -abs(a - 0.5)))
