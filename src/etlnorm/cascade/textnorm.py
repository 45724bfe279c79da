"""String normalization shared by the lexical tier, the mapping cache and ``etlnorm.lookup`` in SQL.

Two keys, following the idea (not the code) of Gilda's ``process.py``:

* ``word_key`` — for names: Unicode NFKC, Greek letters spelled out, case-folded, dashes and
  punctuation to spaces, whitespace collapsed, each word singularized by a few plural rules.
* ``symbol_key`` — for gene symbols: NFKC and trimmed, case kept; symbols are matched by case
  rules of their own (see ``symbol_may_match``), never singularized (``RAS`` is not ``RA``).
"""

from __future__ import annotations

import re
import unicodedata

MAX_KEY_CHARS = 2000  # longer input is truncated before normalization: no real term is that long

GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi",
    "ο": "omicron", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma", "τ": "tau", "υ": "upsilon",
    "φ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
}  # fmt: skip
_GREEK_RE = re.compile("|".join(GREEK))
# Everything that is not a letter or digit separates words (dashes, slashes, quotes, commas ...).
_SEPARATORS = re.compile(r"[\W_]+", re.UNICODE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Invisible format characters (soft hyphen, zero-width spaces and joiners, bidi controls, BOM) and
# lone surrogates: removed, so "TP\u200b53" is TP53 and "seiz\u00adure" is seizure.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]")
# Words whose final "s" is not a plural ending.
_KEEP_S = ("ss", "us", "is")


def singular(word: str) -> str:
    """A few English plural rules (-ies, -sses, -s), applied alike to queries and ontology strings.

    Only a plural and its singular must meet on one key; the key need not be a real word
    ("headaches" and "headache" both give "headache"; "diabetes" gives "diabete" either way).
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(_KEEP_S):
        return word[:-1]
    return word


def clean(text: str) -> str:
    """Truncated, invisible characters dropped, NFKC, control characters to spaces: the common first
    step of both keys."""
    text = unicodedata.normalize("NFKC", _INVISIBLE.sub("", text[:MAX_KEY_CHARS]))
    return _CONTROL.sub(" ", text).strip()


def word_key(text: str | None) -> str:
    """The case- and punctuation-insensitive key of a name; ``''`` for nothing usable."""
    if not text:
        return ""
    text = _GREEK_RE.sub(lambda m: f" {GREEK[m.group(0)]} ", clean(text).casefold())
    words = _SEPARATORS.sub(" ", text).split()
    return " ".join(singular(w) for w in words)


def symbol_key(text: str | None) -> str:
    """The case-folded form of a symbol-like string; the original case is checked separately."""
    return clean(text).casefold() if text else ""


def looks_like_symbol(text: str) -> bool:
    """Short, one token: how a gene symbol (TP53, p53, HLA-DRB1) looks."""
    text = text.strip()
    return 0 < len(text) <= 20 and " " not in text


def symbol_may_match(query: str, symbol: str) -> bool:
    """Case rules for symbols: an all-lowercase word must match case exactly ("was" is not WAS);
    queries with digits or capitals match case-insensitively ("tp53", "Tp53" find TP53)."""
    query = clean(query)
    if query == symbol:
        return True
    if query.isalpha() and query.islower():
        return False
    return query.casefold() == symbol.casefold()
