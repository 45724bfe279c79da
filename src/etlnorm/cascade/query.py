"""Query analysis before matching: hedges and qualifiers, negation, several concepts in one string.

A term from a clinical table often carries more than the concept: "history of seizures", "possible
autism", "seizures (suspected)", "denies fever", "seizures and ataxia", "Urticaria, Solar".
``analyze`` reads such a term once and says what to match (``core``), what it set aside
(``stripped``), whether the term denies the finding (``negated``), whether it holds several concepts
(``parts``) and how an inverted name reads in natural order (``inversions``). It looks nothing up
and never raises on a ``str``.

It is advice, not a verdict: many real labels contain these words ("Mild global developmental
delay", "Congenital hip dislocation", "Absence of the sacrum", "Furrowed palms and soles"). The caller tries
``Query.candidates`` against the lexicon in order (the cleaned raw string first, then its inversions,
each step of stripping, ``core``; for a negated term only those that keep the cue), and only when
none hits honours ``negated`` or sends ``core`` (or ``parts``) on to the other tiers.

Negation rule. A cue counts only as a whole word or phrase at a word boundary, in one of three
places: at the start ("no seizures", "denies fever", "absence of seizures", "patient denies fever"),
possibly after hedges ("possible absence of ..."), but never after a leading qualifier
("Congenital absence of uvula" is a phenotype); at the end after a separator
("seizures: absent", "seizures - negative", "seizures = no") or as a multi-word trailing cue
("seizures not present", "sepsis ruled out"); or alone in parentheses ("seizures (absent)").
A cue glued to a word is not one ("Nonprogressive", "Non-ketotic", "Notched teeth", "No-reflow").
"Absent X" at the start is how HPO names absences ("Absent thumb") and is never a negation; nor is
"X, absent" after a comma, HPO's inverted form ("Earlobe, absent"), nor "X absent" after a plain
space ("Deep tendon reflexes absent"). Cues inside a string ("seizures without aura") qualify a
part and do not negate the term. A cue with nothing after it ("no") negates nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from etlnorm.cascade.textnorm import clean

# --- what is set aside for matching ----------------------------------------------------------------
# Each phrase is matched case-insensitively as whole words (a space also matches any run of
# whitespace, a hyphen also a space), at the start, at the end, alone in parentheses, or as a whole
# segment after a comma. The canonical spelling below is what ``Query.stripped`` records.

HEDGES: tuple[str, ...] = (
    "history of", "past history of", "h/o", "hx of", "possible", "possibly", "probable", "probably",
    "suspected", "suspect", "suspicion of", "suspicious for", "likely", "presumed", "presumptive",
    "questionable", "query", "?", "rule out", "r/o", "consistent with", "suggestive of", "concerning for",
    "concern for", "complains of", "c/o", "reported", "self-reported",
)  # fmt: skip
"""Uncertainty and history: the finding is not (yet) asserted as a current one. "rule out" and "r/o"
are here, not among the negations: in clinical notes "r/o sepsis" means sepsis is being considered
(NegEx and ConText read it so too); only the past participle "ruled out" negates."""

FAMILY_HISTORY: tuple[str, ...] = ("family history of", "family hx of", "fh of", "fhx of")
"""Kept apart from ``HEDGES``: the finding belongs to a relative (``Query.family_history``)."""

QUALIFIERS: tuple[str, ...] = (
    "mild", "mildly", "moderate", "moderately", "severe", "severely", "profound",
    "mild to moderate", "moderate to severe", "mild to severe",
    "bilateral", "unilateral", "left", "right", "left-sided", "right-sided",
    "noted", "noted on exam", "noted on examination", "on exam", "on examination", "observed",
    "in childhood", "in infancy", "since birth", "congenital",
    "acute", "chronic", "recurrent", "progressive", "intermittent", "episodic", "isolated", "borderline",
    "slight", "slightly", "unspecified", "nos", "not otherwise specified",
    "present", "yes", "positive",
)  # fmt: skip
"""Severity, laterality, observation, onset and course: the concept stays, a detail goes (HPO models
course and severity as modifier terms of their own). Many are also parts of real labels ("Mild global
developmental delay", "Recurrent infections"), which is why the raw string is tried first."""

TRAILING_ONLY: frozenset[str] = frozenset(
    {"on exam", "on examination", "in childhood", "in infancy", "since birth", "unspecified", "nos",
     "not otherwise specified"}
)  # fmt: skip
"""Never stripped at the start: they only ever follow what they qualify."""

LATERALITY: frozenset[str] = frozenset({"left", "right", "left-sided", "right-sided"})
SIDED_ANATOMY: frozenset[str] = frozenset(
    """ventricular ventricle ventricles atrial atrium atria aortic aorta coronary bundle bundle-branch axis
    isomerism heart superior inferior posterior anterior pulmonary""".split()
)
"""A leading side is kept before these words: of the 97 HPO strings that begin with "Left" or "Right",
most name a side of the heart as anatomy ("Left ventricular noncompaction", "Right aortic arch",
"Right bundle branch block"), where the side is the concept, not a detail ("left hip dysplasia")."""

SEPARATED_ONLY: frozenset[str] = frozenset({"present", "yes", "positive"})
"""Stripped only after ":", "=", " - ", a comma or in parentheses ("seizures: present"), not after a
plain space ("HIV positive" is not "HIV")."""

LEADING_ONLY: frozenset[str] = frozenset(
    {p for p in HEDGES + FAMILY_HISTORY if p.split()[-1] in {"of", "for", "with"}}
    | {"h/o", "c/o", "r/o", "rule out", "query", "questionable"}
)
"""Phrases that introduce what follows; at the end they would eat a real word."""

LEADING_NEGATIONS: tuple[str, ...] = (
    "no", "not", "denies", "denied", "deny", "absence of", "negative for", "neg for", "without", "w/o",
    "no evidence of", "no signs of", "no sign of", "no symptoms of", "no history of", "no known",
    "free of", "ruled out", "never had", "never",
)  # fmt: skip
"""Cues that negate what follows them at the start of the term."""

NEGATION_SUBJECTS = ("the patient", "patient", "pt", "pt.", "proband", "child", "he", "she", "they")
"""An optional subject before a leading cue ("patient denies fever", "pt has no seizures")."""

TRAILING_NEGATIONS: tuple[str, ...] = (
    "not present", "ruled out", "was ruled out", "not seen", "not observed", "not detected", "not found",
    "not noted", "not reported", "excluded", "denied",
)  # fmt: skip
"""Multi-word (or unambiguous) cues that negate what precedes them after any separator."""

SEPARATED_NEGATIONS: tuple[str, ...] = ("absent", "negative", "neg", "no", "none")
"""Single-word trailing cues, counted only after ":", "=", " - " or in parentheses (see the module
docstring: after a comma or a space they are HPO's own wording)."""

NOT_NEGATIONS: tuple[str, ...] = (
    "not applicable", "not available", "not known", "not done", "not specified", "not assessed",
    "not tested", "not recorded",
)  # fmt: skip
"""Missing-value phrases that start like a negation but deny nothing."""

MAX_PASSES = 32  # each pass strips one phrase; a real term carries a handful at most

# --- multiple concepts -----------------------------------------------------------------------------

FUNCTION_WORDS: frozenset[str] = frozenset(
    "a an the of in on at to for by from or and with as is are be no not nor its it this that".split()
)
"""A side of a split made only of these is no concept ("with or without")."""

ADJECTIVES: frozenset[str] = frozenset(
    """acute chronic short long fine broad narrow thin thick small large big wide high low deep flat mild
    severe moderate profound multiple single double triple solar upper lower extreme early late absent
    diffuse posterior anterior inferior superior major minor adult complete partial total simple
    complex mixed benign malignant""".split()
)
"""Modifiers that the suffix rule below misses; used to tell "Urticaria, Solar" (an inverted name)
from "hypotonia, seizures" (two findings)."""

MODIFIER_NOUNS: frozenset[str] = frozenset({"type", "onset", "variant", "form", "grade", "stage"})

_ADJ_SUFFIXES = ("al", "ic", "ar", "ary", "ed", "ous", "ive", "oid", "ile", "ent", "ant", "ful", "less",
                 "ible", "able", "onset")  # fmt: skip
_NOUN_SUFFIXES = ("ia", "osis", "itis", "ism", "oma", "pathy", "aly", "ness", "ment", "ing", "tion", "sion",
                  "s")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Query:
    """One term as read before matching."""

    raw: str  # the input, untouched
    cleaned: str  # NFKC, control characters and runs of whitespace to one space, trimmed, truncated
    core: str  # what to match once hedges, qualifiers and cues are set aside; ``cleaned`` if none were
    stripped: tuple[str, ...] = ()  # the canonical hedges and qualifiers set aside, in reading order
    negated: bool = False
    negation: str | None = None  # the canonical cue, e.g. "denies", "absent"
    parts: tuple[str, ...] = ()  # two or more concepts found in ``core``; each can go through analyze()
    inversions: tuple[str, ...] = ()  # other word orders of ``cleaned`` and ``core`` ("Solar Urticaria")
    # The text after each cut, in cutting order (the end first: trailing phrases, brackets, comma
    # segments; then the start: hedges and cues before qualifiers); the last is ``core``. "Probable bilateral tonic-clonic seizure" passes "bilateral
    # tonic-clonic seizure" (a label) on its way to "tonic-clonic seizure".
    steps: tuple[str, ...] = ()
    # The strings to try against the lexicon, best first: ``cleaned`` and its inversions, each step,
    # ``core`` and its inversions. For a negated term only the strings that still carry the cue, so
    # that "Absence of memory B cells (possible)" can still hit its label while "no seizures" can
    # never hit "Seizure".
    candidates: tuple[str, ...] = ()

    @property
    def multiple(self) -> bool:
        """The term seems to hold two or more concepts (a flag: try the whole string first)."""
        return len(self.parts) >= 2

    @property
    def family_history(self) -> bool:
        """The finding is a relative's ("family history of seizures")."""
        return any(s in FAMILY_HISTORY for s in self.stripped)

    @property
    def hedged(self) -> bool:
        """The finding is uncertain or past ("possible autism", "history of seizures")."""
        return any(s in HEDGES or s in FAMILY_HISTORY for s in self.stripped)


# --- regular expressions ---------------------------------------------------------------------------


def _canon(phrase: str) -> str:
    """One spelling per phrase: case-folded, hyphens and whitespace runs as one space."""
    return re.sub(r"[-\s]+", " ", phrase.casefold()).strip()


def _alt(phrases: Iterable[str]) -> str:
    """An alternation of phrases, longest first; a space or hyphen matches either ("mild-to-moderate")."""
    spelled = sorted({p for p in phrases if p != "?"}, key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", r"[-\s]+").replace(r"\-", r"[-\s]") for p in spelled)


_ALL_STRIPPABLE = HEDGES + FAMILY_HISTORY + QUALIFIERS
_KIND = {_canon(p): "qualifier" for p in QUALIFIERS} | {_canon(p): "hedge" for p in HEDGES + FAMILY_HISTORY}
_CANON = {
    _canon(p): p for p in _ALL_STRIPPABLE + LEADING_NEGATIONS + TRAILING_NEGATIONS + SEPARATED_NEGATIONS
}
_NEGATION_WORDS = {_canon(p) for p in LEADING_NEGATIONS + TRAILING_NEGATIONS + SEPARATED_NEGATIONS}
_COMMA_STRIPPABLE = {_canon(p) for p in _ALL_STRIPPABLE if p not in LEADING_ONLY}
_COMMA_NEGATIONS = {_canon(p) for p in TRAILING_NEGATIONS}
_PAREN_NEGATIONS = {_canon(p) for p in TRAILING_NEGATIONS + SEPARATED_NEGATIONS}

_END = r"[\s.!]*$"  # what may follow a trailing phrase
_SEP = r"(?:\s*[:=]\s*|\s+[-\u2013\u2014]{1,3}\s*|\s*[-\u2013\u2014]{1,3}\s+)"  # ":", "=", " - " and kin
_ANY_SEP = rf"(?:{_SEP}|\s*[,;]\s*|\s+)"
_SUBJECT = rf"(?:(?:{_alt(NEGATION_SUBJECTS)})\s+(?:(?:has|had|have|reports|with)\s+)?)"

_LEAD_NEGATION = re.compile(rf"^{_SUBJECT}?(?P<p>{_alt(LEADING_NEGATIONS)})(?:\s*:\s*|\s+)", re.I)
_NOT_NEGATION = re.compile(rf"^(?:{_alt(NOT_NEGATIONS)})(?![\w-])", re.I)
_LEAD_PHRASE = re.compile(
    rf"^(?P<p>{_alt(p for p in _ALL_STRIPPABLE if p not in TRAILING_ONLY | SEPARATED_ONLY)})"
    r"(?:\s*[:,]\s*|\s+)",
    re.I,
)
_TRAIL_SEPARATED = re.compile(
    rf"{_SEP}(?P<p>{_alt(SEPARATED_NEGATIONS + TRAILING_NEGATIONS + tuple(SEPARATED_ONLY))}){_END}", re.I
)
_TRAIL_NEGATION = re.compile(rf"{_ANY_SEP}(?P<p>{_alt(TRAILING_NEGATIONS)}){_END}", re.I)
_TRAIL_PHRASE = re.compile(
    rf"{_ANY_SEP}(?P<p>{_alt(p for p in _ALL_STRIPPABLE if p not in LEADING_ONLY | SEPARATED_ONLY)}){_END}",
    re.I,
)
_LEAD_QUESTION = re.compile(r"^\?+\s*")
_TRAIL_QUESTION = re.compile(r"\s*\?+[\s.!]*$")
_TRIM = " \t,;:.-\u2013\u2014"
_WORD = re.compile(r"\w")
_OPEN, _CLOSE = "([{", ")]}"
_DANGLING_START = {"and", "or", "nor", "to", "&", "-"}  # "Mild and nonprogressive ..." keeps "Mild"
_DANGLING_END = {"of", "the", "a", "an", "and", "or", "nor", "to", "with", "in", "on", "at", "for", "by", "&"}


# --- the view being stripped -------------------------------------------------------------------------


class _View:
    """The text being stripped, with each character's offset in ``cleaned`` (for reading order)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = list(range(len(text)))
        self.cuts: list[tuple[int, str]] = []  # (offset in cleaned, canonical phrase)
        self.lead_qualified = False  # a qualifier was cut at the start: no leading negation after it
        self.negation: str | None = None
        self.steps: list[str] = []  # the text after each cut
        self.negated_at: int | None = None  # len(steps) when the negation cue was cut

    def leaves_content(self, start: int, end: int) -> bool:
        """Would cutting ``text[start:end]`` leave a concept, not a dangling "and ..." or "... of the"?"""
        words = (self.text[:start] + self.text[end:]).strip(_TRIM).casefold().split()
        if not words or not _WORD.search(" ".join(words)):
            return False
        return not (start == 0 and words[0] in _DANGLING_START) and not (
            end == len(self.text) and words[-1] in _DANGLING_END
        )

    def note(self, at: int, phrase: str) -> None:
        """Record ``phrase`` as set aside at ``text[at]`` (kept in reading order)."""
        self.cuts.append((self.at[min(at, len(self.at) - 1)] if self.at else 0, phrase))

    def deny(self, start: int, end: int, cue: str) -> None:
        """Cut the negation cue at ``text[start:end]``."""
        self.negation, self.negated_at = cue, len(self.steps)
        self.cut(start, end)

    def cut(self, start: int, end: int, phrase: str | None = None, at: int | None = None) -> None:
        """Remove ``text[start:end]``, record ``phrase`` if given, trim the ends."""
        if phrase is not None:
            self.note(start if at is None else at, phrase)
        self.text = self.text[:start] + self.text[end:]
        self.at = self.at[:start] + self.at[end:]
        left = len(self.text) - len(self.text.lstrip(_TRIM))
        right = len(self.text.rstrip(_TRIM))
        self.text, self.at = self.text[left:right], self.at[left:right]
        self.steps.append(" ".join(self.text.split()))


def _depths(text: str) -> list[int]:
    """Bracket depth at each character (unbalanced closers never go below zero)."""
    depth, out = 0, []
    for ch in text:
        if ch in _CLOSE:
            depth = max(0, depth - 1)
        out.append(depth)
        if ch in _OPEN:
            depth += 1
    return out


def _top_commas(text: str) -> list[int]:
    """Offsets of commas outside brackets and not between digits ("1,6-bisphosphate")."""
    depths = _depths(text)
    return [
        i
        for i, ch in enumerate(text)
        if ch == ","
        and depths[i] == 0
        and not (0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit())
    ]


def _groups(text: str) -> list[tuple[int, int]]:
    """(start, end) of each top-level bracketed group, brackets included."""
    spans, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            if depth == 0:
                start = i
            depth += 1
        elif ch in _CLOSE and depth:
            depth -= 1
            if depth == 0:
                spans.append((start, i + 1))
    return spans


def _strip_leading(view: _View, qualifiers: bool = False) -> bool:
    """A leading "?", negation cue or hedge; or, with ``qualifiers``, a leading qualifier only."""
    if qualifiers:
        m = _LEAD_PHRASE.match(view.text)
        if not m or _KIND[_canon(m.group("p"))] != "qualifier" or not view.leaves_content(0, m.end()):
            return False
        phrase, following = _CANON[_canon(m.group("p"))], view.text[m.end() :].split(maxsplit=1)
        if phrase in LATERALITY and following and following[0].casefold().strip(".,;:") in SIDED_ANATOMY:
            return False  # "Right aortic arch": the side is the concept
        view.lead_qualified = True
        view.cut(0, m.end(), phrase)
        return True
    if m := _LEAD_QUESTION.match(view.text):
        if view.leaves_content(0, m.end()):
            view.cut(0, m.end(), "?")
            return True
    if view.negation is None and not view.lead_qualified and not _NOT_NEGATION.match(view.text):
        if (m := _LEAD_NEGATION.match(view.text)) and view.leaves_content(0, m.end()):
            view.deny(0, m.end(), _CANON[_canon(m.group("p"))])
            return True
    m = _LEAD_PHRASE.match(view.text)
    if m and _KIND[_canon(m.group("p"))] == "hedge" and view.leaves_content(0, m.end()):
        view.cut(0, m.end(), _CANON[_canon(m.group("p"))])
        return True
    return False


def _strip_trailing(view: _View) -> bool:
    if (m := _TRAIL_QUESTION.search(view.text)) and view.leaves_content(m.start(), len(view.text)):
        view.cut(m.start(), len(view.text), "?", at=m.start() + m.group(0).index("?"))
        return True
    for pattern in (_TRAIL_SEPARATED, _TRAIL_NEGATION, _TRAIL_PHRASE):
        m = pattern.search(view.text)
        if not m or not view.leaves_content(m.start(), len(view.text)):
            continue
        phrase = _CANON[_canon(m.group("p"))]
        if _canon(phrase) in _NEGATION_WORDS:
            if view.negation is not None:
                continue
            view.deny(m.start(), len(view.text), phrase)
        else:
            view.cut(m.start(), len(view.text), phrase, at=m.start("p"))
        return True
    return False


def _strip_brackets(view: _View) -> bool:
    """A bracketed group of hedges and qualifiers only, or one negation cue: "(suspected)", "(mild, left)"."""
    for start, end in _groups(view.text):
        inner = view.text[start + 1 : end - 1]
        words = [_canon(w) for w in inner.split(",")]
        if not words or not view.leaves_content(start, end):
            continue
        if all(w in _KIND for w in words):
            while start and view.text[start - 1].isspace():
                start -= 1
            for i, w in enumerate(words):
                view.note(start + i, _CANON[w])  # each, in reading order
            view.cut(start, end)
            return True
        if len(words) == 1 and words[0] in _PAREN_NEGATIONS and view.negation is None:
            view.deny(start, end, _CANON[words[0]])
            return True
    return False


def _strip_commas(view: _View) -> bool:
    """A comma segment after the first that is one qualifier or multi-word negation: "seizures, mild"."""
    commas = _top_commas(view.text)
    bounds = [*commas, len(view.text)]
    for comma, end in zip(bounds, bounds[1:], strict=False):
        segment = _canon(view.text[comma + 1 : end])
        if segment in _COMMA_STRIPPABLE and view.leaves_content(comma, end):
            view.cut(comma, end, _CANON[segment], at=comma + 1)
            return True
        if segment in _COMMA_NEGATIONS and view.negation is None and view.leaves_content(comma, end):
            view.deny(comma, end, _CANON[segment])
            return True
    return False


# --- several concepts --------------------------------------------------------------------------------

_CONJUNCTION = re.compile(
    r"\s+(?P<c>and/or|and|&|\+|plus|as\s+well\s+as|along\s+with|together\s+with|with|w/(?!o\b))"
    r"(?:\s+|(?<=w/)(?=\w))",
    re.I,
)
_SLASHED = re.compile(
    r"(?<![\w/-])([^\W\d_][^\W\d]*(?:-[^\W\d_]+)*(?:/[^\W\d_][^\W\d]*(?:-[^\W\d_]+)*)+)(?![\w/])"
)
_NOT_SLASHED = {"and/or", "or/and", "either/or"}
_MODIFIER_EXTRA = re.compile(r"^(?:[ivx]+|\d+[a-z]?|[a-z])$", re.I)  # "type II", "type 2", "grade 3b"


def _words(text: str) -> list[str]:
    return text.split()


def _is_function_only(text: str) -> bool:
    return all(w.casefold().strip(".,;:") in FUNCTION_WORDS for w in _words(text))


def _adjectival(word: str) -> bool:
    """Does ``word`` read as a modifier ("Solar", "Comminuted", "acute") rather than a finding?"""
    w = word.casefold().strip(".,;:()")
    if w in ADJECTIVES or (w.startswith("non") and len(w) > 6):  # "nonimmune", "non-syndromic"
        return True
    if len(w) < 4 or not w.replace("-", "").isalpha():
        return False
    if w.endswith(_NOUN_SUFFIXES) and not w.endswith(("ous", "less")):
        return False
    return w.endswith(_ADJ_SUFFIXES)


def _is_modifier(segment: str) -> bool:
    """A short segment of modifiers: "Solar", "type 2", "proximal and distal", "exercise-induced"."""
    words = [w for w in _words(segment) if w.casefold() not in {"and", "or"}]
    if not 1 <= len(words) <= 3:
        return False
    heads = [w for w in words if _adjectival(w) or w.casefold() in MODIFIER_NOUNS]
    return bool(heads) and all(w in heads or _MODIFIER_EXTRA.match(w) for w in words)


def _comma_segments(text: str) -> list[str]:
    commas = _top_commas(text)
    bounds = [-1, *commas, len(text)]
    return [text[a + 1 : b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]


def _comma_items(text: str) -> list[tuple[str, bool]]:
    """Comma-separated items, each with whether it is atomic (an inverted name, coordinated adjectives)."""
    segments = [s for s in _comma_segments(text) if s]
    if len(segments) < 2:
        return [(text, False)]
    segments[-1] = re.sub(r"^(?:and|or|and/or)\s+", "", segments[-1], flags=re.I)
    if all(_is_modifier(s) for s in segments[1:]):
        return [(text, True)]  # "Urticaria, Solar", "Leukemia, Myeloid, Acute"
    if all(len(_words(s)) == 1 and _adjectival(s) for s in segments[:-1]):
        return [(text, True)]  # "Fine, reticulate skin pigmentation"
    return [(s, False) for s in segments]


def _conjunction_split(text: str) -> list[str]:
    """Split at "and", "&", "+", "with", ... outside brackets, unless a side is no concept."""
    depths = _depths(text)
    seps = [m for m in _CONJUNCTION.finditer(text) if depths[m.start("c")] == 0]
    pieces, start = [], 0
    for m in seps:
        left, right_end = text[start : m.start()], len(text)
        following = [n for n in seps if n.start() > m.start()]
        if following:
            right_end = following[0].start()
        right = text[m.end() : right_end]
        if not left.strip() or not right.strip() or _is_function_only(left) or _is_function_only(right):
            continue
        if left.endswith("-"):
            continue  # "pre- and post-capillary": one word, split in two
        if m.group("c").casefold() in {"with", "w/"}:
            before = _words(left)[-1].casefold()
            if _adjectival(before) or before.endswith("ing") or before in {"born", "along", "together"}:
                continue  # "associated with", "consistent with", "presenting with"
        pieces.append(left)
        start = m.end()
    pieces.append(text[start:])
    return _distribute(pieces)


def _distribute(pieces: list[str]) -> list[str]:
    """A lone modifier before a phrase shares its noun: "Proximal and distal muscle weakness"."""
    out: list[str] = []
    for i, piece in enumerate(pieces):
        words = _words(piece)
        after = _words(pieces[i + 1]) if i + 1 < len(pieces) else []
        if len(words) == 1 and _adjectival(words[0]) and after:
            if len(after) == 1:  # "proximal and distal": one concept's modifiers
                pieces[i + 1] = f"{piece} and {pieces[i + 1]}"
                continue
            out.append(" ".join([words[0], *after[1:]]))
        else:
            out.append(piece)
    return out


def _slash_expand(text: str) -> list[str]:
    """One slashed alternation expanded: "Cleft lip/palate" → "Cleft lip", "Cleft palate" (not "h/o", "1/2")."""
    depths = _depths(text)
    for m in _SLASHED.finditer(text):
        token = m.group(1)
        options = token.split("/")
        if depths[m.start()] or token.casefold() in _NOT_SLASHED or any(len(o) < 2 for o in options):
            continue
        return [text[: m.start()] + option + text[m.end() :] for option in options]
    return [text]


def split_concepts(text: str) -> tuple[str, ...]:
    """The concepts of a string that seems to list several ("seizures; ataxia", "hypotonia, seizures,
    ataxia", "seizures/ataxia", "seizures with ataxia"); ``()`` when it seems to hold one.

    Never inside brackets, never leaving a side of function words only, never through an inverted
    name ("Urticaria, Solar") or coordinated modifiers ("Fine, reticulate skin pigmentation").
    Bare "or" is not split: in labels it mostly joins alternatives of one concept ("abnormal or absent").
    """
    depths = _depths(text)
    bounds = [-1, *[i for i, ch in enumerate(text) if ch == ";" and depths[i] == 0], len(text)]
    found: list[str] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        for item, atomic in _comma_items(text[a + 1 : b].strip()):
            for piece in [item] if atomic else _conjunction_split(item):
                found.extend(_slash_expand(piece))
    parts = _unique(" ".join(p.strip(_TRIM).split()) for p in found)
    parts = tuple(p for p in parts if _WORD.search(p) and not _is_function_only(p))
    return parts if len(parts) >= 2 else ()


_PLAIN_PHRASE = re.compile(r"[\w'-]+(?: [\w'-]+){1,3}")  # 2-4 words, no punctuation between them


def inversions(term: str) -> list[str]:
    """Other word orders of a name, for lexical matching. An inverted name in natural order:
    "Urticaria, Solar" → ["Solar Urticaria"]; "Leukemia, Myeloid, Acute" → ["Acute Myeloid Leukemia",
    "Myeloid Acute Leukemia"]. A short comma-free phrase in the inverted order a lexicon may hold:
    "Male urethral atresia" → ["urethral atresia, Male"] (HPO: "Urethral atresia, male").

    Liberal on purpose (only an exact lexicon hit on a reading counts): any 2-4 comma segments whose
    trailing ones are short (at most three words) and do not start a list ("..., and ataxia"); or 2-4
    plain words (no punctuation between them, no function word first), the first moved to the end.
    """
    text = " ".join(clean(term).split())
    segments = _comma_segments(text)
    if len(segments) == 1:
        words = _words(text)
        plain = _PLAIN_PHRASE.fullmatch(text) and not {w.casefold() for w in words[:2]} & FUNCTION_WORDS
        return [f"{' '.join(words[1:])}, {words[0]}"] if plain else []
    if not 2 <= len(segments) <= 4 or not all(segments):
        return []
    head, mods = segments[0], segments[1:]
    if any(len(_words(m)) > 3 or re.match(r"(?:and|or)\b", m, re.I) or _is_function_only(m) for m in mods):
        return []
    readings = [" ".join([*reversed(mods), head]), " ".join([*mods, head])]
    return [r for r in _unique(readings) if r != text]


def _unique(strings: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for s in strings if s))


# --- the entry point ---------------------------------------------------------------------------------


def analyze(term: str) -> Query:
    """Read a term before matching; any ``str`` gives a ``Query`` (longer than ``MAX_KEY_CHARS``: its
    start is analyzed, as ``word_key`` keys only its start)."""
    cleaned = " ".join(clean(term).split()) if isinstance(term, str) else ""
    view = _View(cleaned)
    for _ in range(MAX_PASSES):  # one cut a pass, in the order ``steps`` documents
        if not (
            _strip_trailing(view)
            or _strip_brackets(view)
            or _strip_commas(view)
            or _strip_leading(view)
            or _strip_leading(view, qualifiers=True)
        ):
            break
    core = " ".join(view.text.split())  # ``cleaned`` itself when nothing was cut
    stripped = tuple(phrase for _, phrase in sorted(view.cuts, key=lambda cut: cut[0]))
    steps = view.steps if view.negated_at is None else view.steps[: view.negated_at]
    tail = [] if view.negated_at is not None else [core, *inversions(core)]
    return Query(
        raw=term,
        cleaned=cleaned,
        core=core or cleaned,
        stripped=stripped,
        negated=view.negation is not None,
        negation=view.negation,
        parts=split_concepts(core),
        inversions=_unique([r for text in _unique([cleaned, core]) for r in inversions(text)]),
        steps=tuple(view.steps),
        candidates=_unique([cleaned, *inversions(cleaned), *steps, *tail]),
    )
