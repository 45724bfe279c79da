"""Seeded synthetic variants of ontology strings: typos, MeSH-style inversions, spelling, number, hedges.

Used twice, so both uses must agree: to fine-tune the encoder on strings a user might type rather
than only the ontology's own, and to evaluate on strings nothing was trained or indexed on
(``etlnorm.cascade.heldout``). Every random choice goes through the ``random.Random`` the caller
passes, so a seed fixes the output. Pure Python (``random``, ``re``): no model, no database.

Each generator returns ``None`` (or, for ``typo`` and ``hedged``, the input) when it does not
apply, and none raises on odd input (empty, emoji, very long). The rules are heuristics tuned on
HPO and GO labels: a variant must look like something a person would write, not be correct English.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

KINDS = ("typo", "inversion", "spelling", "number", "hedged")
MAX_PHRASE_CHARS = 200  # inversion works on short noun phrases only; longer text is left alone

_LETTERS = r"[^\W\d_]"  # a Unicode letter
_WORD_RE = re.compile(_LETTERS + "+")
_TYPO_WORD_RE = re.compile(_LETTERS + "{4,}")

# --------------------------------------------------------------------------------------------- typo

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard() -> dict[str, str]:
    """QWERTY neighbours (same row left/right, staggered rows above and below)."""
    where = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    near: dict[str, str] = {}
    for c, (r, i) in where.items():
        spots = [(r, i - 1), (r, i + 1), (r - 1, i), (r - 1, i + 1), (r + 1, i - 1), (r + 1, i)]
        near[c] = "".join(
            _ROWS[rr][ii] for rr, ii in spots if 0 <= rr < len(_ROWS) and 0 <= ii < len(_ROWS[rr])
        )
    return near


KEYBOARD = _keyboard()


def _same_case(char: str, like: str) -> str:
    """Upper case where ``like`` (the replaced letter, or the whole word for an insertion) is."""
    return char.upper() if like.isupper() else char


def _edit_word(word: str, rng: random.Random) -> str:
    """One edit of ``word`` (≥ 4 letters), never at its first letter (people rarely mistype that one).

    Delete and insert change the length, so at least they always change the word; substitute and
    transpose are offered only where they would (a letter with neighbours, two different letters).
    """
    subs = [i for i in range(1, len(word)) if word[i].lower() in KEYBOARD]
    swaps = [i for i in range(1, len(word) - 1) if word[i].casefold() != word[i + 1].casefold()]
    ops = ["delete", "insert"] + (["substitute"] if subs else []) + (["transpose"] if swaps else [])
    op = rng.choice(ops)
    if op == "delete":
        i = rng.randrange(1, len(word))
        return word[:i] + word[i + 1 :]
    if op == "insert":  # a neighbour of the letter just typed, or that letter doubled
        i = rng.randrange(1, len(word) + 1)
        before = word[i - 1]
        pool = KEYBOARD.get(before.lower(), "") + before.lower()
        return word[:i] + _same_case(rng.choice(pool), word) + word[i:]
    if op == "substitute":
        i = rng.choice(subs)
        return word[:i] + _same_case(rng.choice(KEYBOARD[word[i].lower()]), word[i]) + word[i + 1 :]
    i = rng.choice(swaps)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def typo(text: str, rng: random.Random) -> str:
    """``text`` with exactly one character edit (delete, insert, keyboard-neighbour substitution or
    transposition of adjacent letters) in one word of at least 4 letters.

    Short words are spared because a typo there often makes another real word ("ear" → "eat").
    Returns ``text`` unchanged only when no word qualifies; otherwise the result always differs,
    even case-insensitively.
    """
    words = list(_TYPO_WORD_RE.finditer(text))
    if not words:
        return text
    m = rng.choice(words)
    return text[: m.start()] + _edit_word(m.group(0), rng) + text[m.end() :]


# ---------------------------------------------------------------------------------------- inversion

_FUNCTION_WORDS = frozenset(
    "a an the of in on at to by for from with without within and or nor not no but due via into onto as "
    "than involving affecting during after before between per other".split()
)
# Post-positive (mostly Latin) adjectives: the head noun is not the last word ("Diabetes mellitus").
_POSTPOSITIVE = frozenset(
    "mellitus insipidus planus valgus varus cavus equinus major minor inversus totalis universalis congenita "
    "congenitum tarda vulgaris simplex multiplex excavatum carinatum recurvatum perstans areata nigricans "
    "ossificans progressiva imperfecta".split()
)
_ROMAN = frozenset("i ii iii iv v vi vii viii ix x xi xii".split())
_TOKEN_RE = re.compile(r"^[\w'’-]+$")
_HEAD_RE = re.compile(r"^(?:" + _LETTERS + r"|-)+$")


def _is_capitalized(word: str) -> bool:
    """Sentence case ("Solar"), not "DNA" or "solar": the capital that only marks a phrase's start."""
    return len(word) > 1 and word[0].isupper() and word[1].islower() and word[1:] == word[1:].lower()


def _sentence_case(words: list[str]) -> bool:
    """Whether a phrase is written with a capital first letter ("Solar urticaria", "DNA, Mitochondrial")
    rather than in GO's lower case ("DNA repair"): the first word not in capitals decides."""
    for word in words:
        if word[:1].isalpha() and not word.isupper():
            return _is_capitalized(word)
    return False


def _decapitalize(phrase: str) -> str:
    first, _, rest = phrase.partition(" ")
    if _is_capitalized(first):
        first = first[0].lower() + first[1:]
    return first + (" " + rest if rest else "")


def _capitalize(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def _plain_words(words: list[str]) -> bool:
    return all(_TOKEN_RE.match(w) and w.casefold() not in _FUNCTION_WORDS for w in words)


def inversion(text: str) -> str | None:
    """MeSH-style word order: "Solar urticaria" → "Urticaria, Solar", "Fractures, Comminuted" →
    "Comminuted fractures", "Leukemia, Myeloid, Acute" → "Acute myeloid leukemia".

    Vocabularies built from MeSH (and users who copied from it) write the head noun first; the
    encoder should not care. ``None`` for what is not a short plain noun phrase: one word, a
    preposition ("Abnormality of the ear"), brackets, a Latin post-positive adjective ("Diabetes
    mellitus") or a numeral last ("Type II").
    """
    phrase = " ".join(text.split())
    if not phrase or len(phrase) > MAX_PHRASE_CHARS:
        return None
    upper = _sentence_case(phrase.replace(",", " ").split())
    if "," in phrase:  # "Y, X" → "X Y"
        parts = [p.strip() for p in phrase.split(",")]
        if (
            phrase.count(",") != phrase.count(", ")
            or not 2 <= len(parts) <= 3
            or any(not p or len(p.split()) > (4 if i == 0 else 2) for i, p in enumerate(parts))
        ):
            return None
        if not _plain_words([w for p in parts for w in p.split()]):
            return None
        out = " ".join(_decapitalize(p) for p in reversed(parts))
        return _capitalize(out) if upper else out
    words = phrase.split()  # "X Y" → "Y, X"
    head = words[-1]
    if not 2 <= len(words) <= 4 or not _plain_words(words) or not _HEAD_RE.match(head):
        return None
    if len(head.replace("-", "")) < 3 or head.casefold() in _POSTPOSITIVE | _ROMAN:
        return None
    modifier = " ".join(words[:-1])
    if upper:
        return _capitalize(head) + ", " + _capitalize(modifier)
    return head + ", " + modifier


# ----------------------------------------------------------------------------------------- spelling

# (British, American, where, British lookahead, American lookahead). ``where`` is "start" (at the
# start of a word) or "any" (anywhere in it); the lookaheads keep a stem from firing inside an
# unrelated word ("colour" but not "colorectal", "-aemia" but not "systemic").
_PAIRS: tuple[tuple[str, str, str, str, str], ...] = (
    ("haem", "heme", "start", "s?$", "s?$"),  # GO's "heme" is British "haem"
    ("haem", "hem", "start", "[aoe]", "[ao]"),  # haemorrhage, haematoma, haemoglobin
    ("anaesth", "anesth", "any", "", ""),
    ("aesthe", "esthe", "any", "", ""),  # paraesthesia, hypoaesthesia
    ("ischaem", "ischem", "any", "", ""),
    ("glycaem", "glycem", "any", "", ""),  # hypoglycaemia, hyperglycaemic
    ("anaem", "anem", "start", "", ""),
    ("uraem", "urem", "start", "", ""),
    ("aemi", "emi", "any", "", "as?$"),  # leukaemia, septicaemia; American -emia only
    ("paeni", "peni", "any", "", "as?$"),  # osteopaenia, neutropaenia
    ("poeni", "peni", "any", "", "as?$"),  # neutropoenia (British only: the line above wins back)
    ("oedem", "edem", "any", "", ""),  # oedema, lymphoedema
    ("oesophag", "esophag", "any", "", ""),
    ("oestr", "estr", "start", "[aeiou]", "[aeiou]"),  # oestrogen, oestradiol
    ("foet", "fet", "start", "al|us|o", "al|us|o"),  # foetal, foetus, alpha-foetoprotein
    ("paediatr", "pediatr", "any", "", ""),
    ("orthopaed", "orthoped", "any", "", ""),
    ("rrhoe", "rrhe", "any", "a|ic", "a|ic"),  # diarrhoea, amenorrhoea, seborrhoeic
    ("pnoe", "pne", "any", "a|ic", "a|ic"),  # apnoea, dyspnoea, tachypnoea
    ("coeliac", "celiac", "start", "", ""),
    ("caec", "cec", "start", "um|al", "um|al"),
    ("faec", "fec", "start", "es|al", "es|al"),
    ("gynaec", "gynec", "any", "", ""),
    ("aetiol", "etiol", "start", "", ""),
    ("leuco", "leuko", "start", "cyt|pen|derm|dystroph|encephal|cor", "cyt|pen|derm|dystroph|encephal|cor"),
    ("manoeuvre", "maneuver", "start", "", ""),
    ("tumour", "tumor", "any", "", "s?$|al"),
    ("colour", "color", "any", "s?$|ed|ing|ation|less|ful", "s?$|ed|ing|ation|less|ful"),
    ("behaviour", "behavior", "any", "", ""),
    ("favour", "favor", "any", "", ""),  # favourable, favourite
    ("humour", "humor", "any", "s?$", "s?$"),  # not "humoral"
    ("rigour", "rigor", "start", "s?$", "s?$"),
    ("demeanour", "demeanor", "start", "s?$", "s?$"),
    ("goitre", "goiter", "start", "s?$", "s?$"),
    ("coele", "cele", "any", "s?$", "s?$"),  # pneumatocoele, meningocoele
    ("naev", "nev", "start", "us|i$|oid", "us|i$|oid"),
    ("odour", "odor", "any", "s?$|less", "s?$|less"),
    ("labour", "labor", "start", "s?$|ed|ing", "s?$|ed|ing"),
    ("vapour", "vapor", "start", "s?$", "s?$"),
    ("fibre", "fiber", "any", "s?$", "s?$"),
    ("centre", "center", "any", "s?$", "s?$"),
    ("litre", "liter", "any", "s?$", "s?$"),
    ("calibre", "caliber", "start", "s?$", "s?$"),
    ("sulph", "sulf", "any", "", "[aiou]"),
    ("analogue", "analog", "start", "s?$", "s?$"),
    ("catalogue", "catalog", "start", "s?$", "s?$"),
    ("signall", "signal", "start", "ing|ed", "ing|ed"),
    ("labell", "label", "start", "ing|ed", "ing|ed"),
    ("modell", "model", "start", "ing|ed", "ing|ed"),
    ("travell", "travel", "start", "ing|ed", "ing|ed"),
    ("tunnell", "tunnel", "start", "ing|ed", "ing|ed"),
    ("grey", "gray", "start", "s?$|ish|ing|ed", "s?$|ish|ing|ed"),
    ("ageing", "aging", "start", "$", "$"),
    ("defence", "defense", "start", "s?$", "s?$"),
    ("aluminium", "aluminum", "start", "$", "$"),
    ("mould", "mold", "start", "s?$|y|ing", "s?$|y|ing"),
)


def _alternation(index: int, lookahead: int) -> tuple[re.Pattern[str], list[str]]:
    """One regex trying every pair at each position (left to right, replaced text never rescanned)."""
    alternatives, replacements = [], []
    for pair in _PAIRS:
        anchor = "^" if pair[2] == "start" else ""
        follow = f"(?=(?:{pair[lookahead]}))" if pair[lookahead] else ""
        alternatives.append(f"({anchor}{pair[index]}{follow})")
        replacements.append(pair[1 - index])
    return re.compile("|".join(alternatives)), replacements


_TO_AMERICAN = _alternation(0, 3)
_TO_BRITISH = _alternation(1, 4)
_SUFFIXES = "e|es|ed|ing|er|ers|ation|ations|able"
_ISE_RE = re.compile(rf"^(?P<stem>[a-z]{{3,}})is(?P<end>{_SUFFIXES})$")
_IZE_RE = re.compile(rf"^(?P<stem>[a-z]{{3,}})iz(?P<end>{_SUFFIXES})$")
_YSE_RE = re.compile(r"^(?P<stem>[a-z]{3,})ys(?P<end>e|ed|ing|er)$")  # not "-yses": the plural of analysis
_YZE_RE = re.compile(r"^(?P<stem>[a-z]{3,})yz(?P<end>e|ed|ing|er)$")
# -ise words that are -ise in American English too (exercise, surprise, noise, advertise ...).
# Endings, not whole stems: "mise" would also keep "minimise", "dise" "oxidise", "rise" "polarise".
_ISE_KEEP = (
    "wise", "sunrise", "rcise", "ecise", "xcise", "ncise", "mcise", "vise", "premise", "promise", "demise",
    "surmise", "chemise", "prise", "oise", "aise", "uise", "radise", "handise", "chise", "ertise", "stise",
    "spise", "eatise",
)  # fmt: skip


def _suffix_swap(word: str, british: bool) -> str:
    """-ise ↔ -ize and -yse ↔ -yze (organisation, hospitalised, analyse), with their exceptions."""
    if british:  # to American
        m = _ISE_RE.match(word)
        if m and not (m["stem"] + "ise").endswith(_ISE_KEEP):
            return m["stem"] + "iz" + m["end"]
        m = _YSE_RE.match(word)
        return m["stem"] + "yz" + m["end"] if m else word
    m = _IZE_RE.match(word)
    if m and not (m["stem"] + "ize").endswith("size"):
        return m["stem"] + "is" + m["end"]
    m = _YZE_RE.match(word)
    return m["stem"] + "ys" + m["end"] if m else word


def _respell(text: str, to_american: bool) -> str:
    pattern, replacements = _TO_AMERICAN if to_american else _TO_BRITISH

    def word(m: re.Match[str]) -> str:
        original = m.group(0)
        lower = original.lower()
        if original not in (lower, lower.upper(), lower[:1].upper() + lower[1:]):
            return original  # mixed case (a symbol, a name): leave it
        new = pattern.sub(lambda s: replacements[(s.lastindex or 1) - 1], lower)
        new = _suffix_swap(new, british=to_american)
        if new == lower:
            return original
        if original.isupper() and len(original) > 1:
            return new.upper()
        return new[:1].upper() + new[1:] if original[:1].isupper() else new

    return _WORD_RE.sub(word, text)


def spelling(text: str) -> str | None:
    """British ↔ American spelling: British forms become American, else American become British.

    HPO writes American with British synonyms ("uk_spelling"), GO mostly American; clinical notes
    from the UK do the opposite. ``None`` when no word has a known counterpart.
    """
    for to_american in (True, False):
        swapped = _respell(text, to_american)
        if swapped != text:
            return swapped
    return None


# ------------------------------------------------------------------------------------------- number

# Singular → plural where English rules do not reach (mostly Latin and Greek anatomy).
IRREGULAR = {
    "foot": "feet", "tooth": "teeth", "child": "children", "vertebra": "vertebrae", "phalanx": "phalanges",
    "bronchus": "bronchi", "nucleus": "nuclei", "fungus": "fungi", "stimulus": "stimuli", "villus": "villi",
    "criterion": "criteria", "phenomenon": "phenomena", "ganglion": "ganglia", "diagnosis": "diagnoses",
    "synostosis": "synostoses", "metastasis": "metastases", "anastomosis": "anastomoses",
    "exostosis": "exostoses", "crisis": "crises", "index": "indices", "appendix": "appendices",
    "cortex": "cortices", "apex": "apices", "vertex": "vertices", "matrix": "matrices", "testis": "testes",
    "septum": "septa", "atrium": "atria", "foramen": "foramina", "lumen": "lumina", "sulcus": "sulci",
    "gyrus": "gyri", "calyx": "calyces", "hallux": "halluces", "nevus": "nevi", "naevus": "naevi",
    "thrombus": "thrombi", "embolus": "emboli", "calculus": "calculi", "alveolus": "alveoli",
    "bacterium": "bacteria", "cilium": "cilia", "flagellum": "flagella", "mitochondrion": "mitochondria",
    "lamina": "laminae", "fossa": "fossae", "bursa": "bursae", "concha": "conchae", "sinus": "sinuses",
    "virus": "viruses", "fetus": "fetuses", "foetus": "foetuses", "plexus": "plexuses", "callus": "calluses",
    "meatus": "meatuses", "uterus": "uteri", "fundus": "fundi", "ovum": "ova", "hypha": "hyphae",
    "ulna": "ulnae", "scapula": "scapulae", "sclera": "sclerae", "cornea": "corneas",
    "retina": "retinas", "trachea": "tracheas", "aorta": "aortas", "vagina": "vaginas", "areola": "areolae",
    "area": "areas", "analysis": "analyses", "anomaly": "anomalies", "abnormality": "abnormalities",
    "disability": "disabilities", "deformity": "deformities", "extremity": "extremities", "cavity": "cavities",
    "irregularity": "irregularities", "opacity": "opacities",
}  # fmt: skip
_PLURAL_TO_SINGULAR = {plural: singular for singular, plural in IRREGULAR.items()}
# Words ending in "s" that are not plurals, and nouns with no plural worth writing.
_NOT_PLURAL = frozenset(
    "series species caries rabies scabies herpes diabetes measles mumps rickets lens pancreas atlas gas bias "
    "biceps triceps forceps ascites menses feces faeces genitalia hydrops pes os plus status situs lupus "
    "tetanus pemphigus mucus pus anus thorax all".split()
)
_UNCOUNTABLE = frozenset(
    "hair stature speech gait intelligence hearing vision tone development growth weight height blood "
    "urine information behavior behaviour mobility balance function".split()
)
_MASS_ENDINGS = ("ia", "ea", "ema", "aly", "yly", "ity", "i", "ism", "ness", "itis", "osis", "asis", "esis", "ysis", "apy", "ance", "ence",
                 "ing", "ed", "al", "ic", "ous", "ive", "ar", "ary", "ics")  # fmt: skip
_PREPOSITION_RE = re.compile(
    r"\s(?:of|in|on|at|to|by|for|from|with|without|within|involving|affecting|due|via|during|after|before|as|"
    r"into|through|using|utilizing|involved|associated|caused|resulting|following|mediated)\s",
    re.IGNORECASE,
)
_COORDINATION_RE = re.compile(r"\s(?:and|or|and/or|&)\s", re.IGNORECASE)


def _plural(word: str) -> str | None:
    if word in IRREGULAR:
        return IRREGULAR[word]
    if word in _UNCOUNTABLE or word.endswith(_MASS_ENDINGS) or word.endswith(("us", "is", "um")):
        return None
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def _singular(word: str) -> str | None:
    if word in _PLURAL_TO_SINGULAR:
        return _PLURAL_TO_SINGULAR[word]
    if word in _NOT_PLURAL or not word.endswith("s") or word.endswith(("ss", "us", "is", "ous")):
        return None
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "shes", "zzes")) or (
        word.endswith("ches") and word[-5:-4] not in "aeiou"
    ):
        return word[:-2]
    return word[:-1]


def number(text: str) -> str | None:
    """The head noun in the other grammatical number: "Seizure" ↔ "Seizures", "Abnormality of the
    ear" → "Abnormalities of the ear", "Fractures, Comminuted" → "Fracture, Comminuted".

    Users list findings in the plural, ontologies name them in the singular (HPO keeps a few
    "plural_form" synonyms, not all). The head is the last word before a comma, a bracket or a
    preposition. ``None`` for mass nouns and adjectives ("Ataxia", "Scoliosis", "Hearing", "Abnormal"),
    acronyms and words this cannot inflect.
    """
    cut = len(text)
    for sep in (",", "(", "[", ";", ":"):
        at = text.find(sep)
        if at != -1:
            cut = min(cut, at)
    if m := _PREPOSITION_RE.search(text[:cut]):
        cut = m.start()
    if _COORDINATION_RE.search(text[:cut]):  # "Cleft lip and palate": which noun is the head?
        return None
    heads = list(_WORD_RE.finditer(text[:cut]))
    if not heads:
        return None
    head = heads[-1]
    word = head.group(0)
    lower = word.lower()
    if (
        len(word) < 3
        or word not in (lower, lower[:1].upper() + lower[1:])
        or lower in _NOT_PLURAL | _POSTPOSITIVE
    ):
        return None
    if head.end() < len(text) and text[head.end()] in "-'’":  # "X-linked", "Down's": not a head noun
        return None
    other = _singular(lower) or _plural(lower)
    if other is None or other == lower:
        return None
    if word[0].isupper():
        other = other[:1].upper() + other[1:]
    return text[: head.start()] + other + text[head.end() :]


# ------------------------------------------------------------------------------------------- hedged

HEDGE_PREFIXES = (
    "history of", "mild", "moderate", "severe", "possible", "probable", "suspected", "bilateral", "left",
    "right", "recurrent", "chronic", "acute", "progressive", "intermittent", "episodic", "isolated",
    "borderline", "slight",
)  # fmt: skip
HEDGE_SUFFIXES = (" (suspected)", " (probable)", " (possible)", " (mild)", " (severe)", " (bilateral)",
                  ", unspecified", ", mild", ", bilateral", "?")  # fmt: skip


def hedged(text: str, rng: random.Random) -> str:
    """``text`` with a hedge or qualifier a clinician adds: "Mild seizure", "Seizure (suspected)".

    Real notes rarely carry the bare ontology label; a good normalizer maps the qualified phrase to
    the same ID. Qualifiers already in the text are not repeated. Blank text comes back unchanged.
    """
    phrase = " ".join(text.split())
    if not phrase:
        return text
    words = {w.casefold() for w in _WORD_RE.findall(phrase[:MAX_PHRASE_CHARS])}
    choices = [h for h in (*HEDGE_PREFIXES, *HEDGE_SUFFIXES) if not set(_WORD_RE.findall(h)) & words]
    hedge = rng.choice(choices or HEDGE_SUFFIXES)
    if hedge in HEDGE_SUFFIXES:
        return phrase + hedge
    if phrase[0].isupper():
        return _capitalize(hedge) + " " + _decapitalize(phrase)
    return hedge + " " + phrase


# ----------------------------------------------------------------------------------------- variants


def _kinds() -> dict[str, Callable[[str, random.Random], str | None]]:
    return {
        "typo": typo,
        "inversion": lambda text, _rng: inversion(text),
        "spelling": lambda text, _rng: spelling(text),
        "number": lambda text, _rng: number(text),
        "hedged": hedged,
    }


def same_string(a: str, b: str) -> bool:
    """Equal once case and runs of whitespace are ignored: a "variant" like that is no variant."""
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def variants(text: str, rng: random.Random | int, kinds: Iterable[str] = KINDS) -> list[tuple[str, str]]:
    """(kind, variant) for each kind in ``kinds`` that applies to ``text``, in the order given.

    Deterministic for a given seed (an ``int`` is turned into ``random.Random(seed)``). Variants equal
    to ``text`` case-insensitively are dropped, and so is a variant an earlier kind already gave.
    """
    rng = random.Random(rng) if isinstance(rng, int) else rng
    makers = _kinds()
    out: list[tuple[str, str]] = []
    for kind in kinds:
        if kind not in makers:
            raise ValueError(f"unknown variant kind {kind!r}; known: {', '.join(KINDS)}")
        variant = makers[kind](text, rng)
        if variant is None or same_string(variant, text) or any(same_string(variant, v) for _, v in out):
            continue
        out.append((kind, variant))
    return out
