"""Synthetic variants: one-edit typos, MeSH inversions, British/American spelling, number, hedges; seeded."""

from __future__ import annotations

import random
import re
import time

import pytest

from etlnorm.cascade.variants import KINDS, hedged, inversion, number, same_string, spelling, typo, variants

# Real HPO and GO labels (HPO 2025-01-16, GO 2021-12-15), and a few MeSH-style headings.
LABELS = [
    "Seizure", "Generalized hypotonia", "Abnormality of the ear", "Intellectual disability", "Anemia",
    "Esophageal atresia", "Solar urticaria", "Fractures, Comminuted", "Leukemia, Myeloid, Acute",
    "Hypoplasia of the uterus", "Cafe-au-lait spot", "Autosomal dominant inheritance", "Atrial septal defect",
    "Recurrent urinary tract infections", "heme biosynthetic process", "apoptotic process", "mitochondrion",
    "positive regulation of transcription by RNA polymerase II", "ATP binding", "cell-cell signaling",
    "Diabetes mellitus", "Ph-positive acute lymphoblastic leukemia", "Oedema of the lower limbs",
]  # fmt: skip
ODD = [
    "", " ", "\t\n", "🧬", "🧬🦠 😷", "a", "ab", "abc", "ear", "123 456", "---", ",", ", ,", "(", "Seizure (", "é",
    "Ärger über Übelkeit", "Σπασμός", "发作", "x" * 5000, "Seizure " * 700, "a, " * 2000, "\x00\x1f control",
    "Ω" * 5000, "HAEMOGLOBIN", "McArdle disease", "İstanbul", "ß" * 10, "1,3-beta-D-glucan synthase complex",
]  # fmt: skip


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insert, delete, substitute, transpose adjacent, each 1."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


# ------------------------------------------------------------------------------------------- typo


@pytest.mark.parametrize("label", LABELS)
def test_typo_is_exactly_one_edit_in_one_long_word(label):
    for seed in range(50):
        out = typo(label, random.Random(seed))
        assert osa_distance(label, out) == 1, (label, out)
        assert not same_string(out, label)
        changed = [
            (a, b) for a, b in zip(re.split(r"(\W+)", label), re.split(r"(\W+)", out), strict=False) if a != b
        ]
        assert len(changed) == 1 and len(re.sub(r"[\W\d_]", "", changed[0][0])) >= 4, (label, out)
        assert changed[0][0][0] == changed[0][1][0]  # the first letter of a word is never mistyped


def test_typo_spares_words_under_four_letters_and_uses_all_four_edits():
    assert typo("Big ear", random.Random(1)) == "Big ear"  # nothing qualifies: unchanged
    assert typo("", random.Random(1)) == ""
    assert all(typo("ear tags", random.Random(s)).startswith("ear ") for s in range(30))
    seen = set()
    for seed in range(300):
        out = typo("Seizure", random.Random(seed))
        seen.add("delete" if len(out) == 6 else "insert" if len(out) == 8 else
                 "transpose" if sorted(out) == sorted("Seizure") else "substitute")  # fmt: skip
    assert seen == {"delete", "insert", "transpose", "substitute"}


def test_typo_substitutes_keyboard_neighbours_and_keeps_case():
    for seed in range(100):
        out = typo("Aaaa", random.Random(seed))  # no transposition possible: "aa" swapped is "aa"
        assert osa_distance("Aaaa", out) == 1 and out[0] == "A" and out[1:] == out[1:].lower()
        if len(out) == 4:
            assert set(out[1:]) <= set("aqwsz"), out  # a's neighbours on QWERTY
    assert typo("DNA REPAIR", random.Random(3)).isupper()


# ------------------------------------------------------------------------------------------ inversion


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Solar urticaria", "Urticaria, Solar"),
        ("Urticaria, Solar", "Solar urticaria"),
        ("Fractures, Comminuted", "Comminuted fractures"),
        ("Leukemia, Myeloid, Acute", "Acute myeloid leukemia"),
        ("Urinary tract infections, recurrent", "Recurrent urinary tract infections"),
        ("Mitochondrial DNA", "DNA, Mitochondrial"),
        ("DNA, Mitochondrial", "Mitochondrial DNA"),
        ("mitochondrial fission", "fission, mitochondrial"),  # GO writes lower case
        ("DNA catabolic process, exonucleolytic", "exonucleolytic DNA catabolic process"),
        ("  Solar   urticaria ", "Urticaria, Solar"),
    ],
)
def test_inversion(text, expected):
    assert inversion(text) == expected


@pytest.mark.parametrize(
    "text",
    ["Seizure", "Abnormality of the ear", "Diabetes mellitus", "Collagen type II", "Seizure (focal)",
     "1,3-beta-D-glucan synthase complex", "Pes planus", "positive regulation of transcription by RNA polymerase II",
     "Atrophy/Degeneration affecting the brainstem", "a, b, c, d", "Ear,", ", Ear"],
)  # fmt: skip
def test_inversion_not_applicable(text):
    assert inversion(text) is None


def test_inversion_round_trips_two_word_phrases():
    for text in ("Solar urticaria", "Comminuted fractures", "Horseshoe kidney"):
        assert inversion(inversion(text)) == text


# ------------------------------------------------------------------------------------------- spelling


@pytest.mark.parametrize(
    ("british", "american"),
    [
        ("Tumour", "Tumor"), ("Oesophageal atresia", "Esophageal atresia"), ("Haemoglobin", "Hemoglobin"),
        ("Anaemia", "Anemia"), ("Oedema", "Edema"), ("Paediatric onset", "Pediatric onset"),
        ("Foetal growth restriction", "Fetal growth restriction"), ("Leukaemia", "Leukemia"),
        ("Hypoglycaemia", "Hypoglycemia"), ("Ischaemic stroke", "Ischemic stroke"), ("Diarrhoea", "Diarrhea"),
        ("Dyspnoea", "Dyspnea"), ("Generalised hypotonia", "Generalized hypotonia"),
        ("Abnormal mineralisation", "Abnormal mineralization"), ("Paralysed", "Paralyzed"),
        ("Grey sclerae", "Gray sclerae"), ("Goitre", "Goiter"), ("Muscle fibres", "Muscle fibers"),
        ("Discoloured teeth", "Discolored teeth"), ("Violent behaviour", "Violent behavior"),
        ("cell-cell signalling", "cell-cell signaling"), ("haem biosynthetic process", "heme biosynthetic process"),
        ("sulphur compound metabolic process", "sulfur compound metabolic process"),
        ("oestrogen receptor", "estrogen receptor"), ("Coeliac disease", "Celiac disease"),
        ("Neutropaenia", "Neutropenia"), ("LEUKAEMIA", "LEUKEMIA"), ("Lymphoedema", "Lymphedema"),
    ],
)  # fmt: skip
def test_spelling_swaps_both_ways(british, american):
    assert spelling(british) == american
    assert spelling(american) == british


@pytest.mark.parametrize(
    "text",
    ["Seizure", "Exercise intolerance", "Colorectal cancer", "Systemic lupus erythematosus", "Hemisphere",
     "Chemotherapy", "Premature rise", "Surprise", "Advertising", "Analyses", "Lyse", "Size", "Cell size",
     "Academic", "Laboratory abnormality", "Diameter", "McArdle disease"],
)  # fmt: skip
def test_spelling_leaves_words_without_a_counterpart(text):
    assert spelling(text) is None


def test_spelling_matches_hpo_uk_synonyms():
    """Pairs from HPO 2025-01-16 (label, uk_spelling synonym)."""
    pairs = [
        ("Hyperchromic macrocytic anemia", "Hyperchromic macrocytic anaemia"),
        ("Cerebral hemorrhage", "Cerebral haemorrhage"),
        ("Necrotizing myopathy", "Necrotising myopathy"),
        ("Neonatal unconjugated hyperbilirubinemia", "Neonatal unconjugated hyperbilirubinaemia"),
    ]
    for label, uk in pairs:
        assert spelling(label) == uk and spelling(uk) == label


# --------------------------------------------------------------------------------------------- number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Seizure", "Seizures"), ("Seizures", "Seizure"), ("Abnormality of the ear", "Abnormalities of the ear"),
        ("Fractures, Comminuted", "Fracture, Comminuted"), ("Cafe-au-lait spot", "Cafe-au-lait spots"),
        ("Headaches", "Headache"), ("Branches of the aorta", "Branch of the aorta"), ("Teeth", "Tooth"),
        ("Abscess", "Abscesses"), ("mitochondrion", "mitochondria"), ("apoptotic process", "apoptotic processes"),
        ("Intellectual disability", "Intellectual disabilities"), ("Vertebra", "Vertebrae"),
        ("Recurrent urinary tract infections", "Recurrent urinary tract infection"),
        ("Seizure (focal)", "Seizures (focal)"), ("Area", "Areas"), ("Areas", "Area"),
    ],
)  # fmt: skip
def test_number(text, expected):
    assert number(text) == expected


@pytest.mark.parametrize(
    "text",
    ["Ataxia", "Scoliosis", "Diabetes", "Hearing", "Abnormal", "DNA", "Hypotonia", "Proteinuria", "Deafness",
     "Arachnodactyly", "Phthisis bulbi", "Nystagmus", "Lens", "All", "Obesity", "X-linked", "", "🧬", "of"],
)  # fmt: skip
def test_number_not_applicable(text):
    assert number(text) is None


# --------------------------------------------------------------------------------------------- hedged


@pytest.mark.parametrize("label", LABELS)
def test_hedged_keeps_the_term_and_adds_one_qualifier(label):
    for seed in range(20):
        out = hedged(label, random.Random(seed))
        assert not same_string(out, label)
        assert label.casefold() in out.casefold(), out
        assert out == hedged(label, random.Random(seed))


def test_hedged_casing_and_no_repeats():
    outs = {hedged("Seizure", random.Random(s)) for s in range(200)}
    assert {"History of seizure", "Mild seizure", "Seizure (suspected)", "Bilateral seizure"} <= outs
    assert all(not o.startswith("History of Seizure") for o in outs)
    assert all(hedged("apoptotic process", random.Random(s))[0].islower() for s in range(50))
    assert all("mild mild" not in hedged("Mild fever", random.Random(s)).casefold() for s in range(100))
    assert hedged("", random.Random(1)) == ""


# ------------------------------------------------------------------------------------------- variants


def test_variants_are_deterministic_under_a_seed():
    first = [variants(label, random.Random(42)) for label in LABELS]
    assert first == [variants(label, random.Random(42)) for label in LABELS]
    assert first == [variants(label, 42) for label in LABELS]  # an int seed is the same Random
    other = [variants(label, random.Random(43)) for label in LABELS]
    assert first != other
    # one generator through a whole list: the same sequence for the same seed
    rng_a, rng_b = random.Random(7), random.Random(7)
    assert [variants(x, rng_a) for x in LABELS] == [variants(x, rng_b) for x in LABELS]


def test_variants_kinds_order_and_dropping():
    out = variants("Solar urticaria", 3)
    assert [k for k, _ in out] == ["typo", "inversion", "hedged"]  # no spelling, no number
    assert dict(out)["inversion"] == "Urticaria, Solar"
    assert variants("Anemia", 1, kinds=("spelling", "number")) == [("spelling", "Anaemia")]
    assert variants("Tumour", 1, kinds=["number", "spelling"]) == [
        ("number", "Tumours"),
        ("spelling", "Tumor"),
    ]
    for label in LABELS:
        for seed in range(5):
            got = variants(label, seed)
            assert all(not same_string(v, label) for _, v in got)
            assert len({v.casefold() for _, v in got}) == len(got)
            assert [k for k, _ in got] == [k for k in KINDS if k in dict(got)]
    with pytest.raises(ValueError, match="unknown variant kind"):
        variants("Seizure", 1, kinds=("shout",))


@pytest.mark.parametrize("text", ODD, ids=range(len(ODD)))
def test_odd_input_never_raises(text):
    start = time.perf_counter()
    rng = random.Random(0)
    assert isinstance(typo(text, rng), str)
    assert isinstance(hedged(text, rng), str)
    for result in (inversion(text), spelling(text), number(text)):
        assert result is None or isinstance(result, str)
    for kind, variant in variants(text, rng):
        assert kind in KINDS and not same_string(variant, text)
    assert time.perf_counter() - start < 2.0


def test_odd_input_fuzz():
    """Random strings over letters, accents, digits, punctuation, emoji and whitespace."""
    alphabet = "abcdeEFGHsyiouSé ß,()-'’/;:.?!0123456789\t🧬😷Σ发"
    rng = random.Random(2024)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        for _kind, variant in variants(text, rng):
            assert isinstance(variant, str) and not same_string(variant, text)
        out = typo(text, rng)
        if re.search(r"[^\W\d_]{4,}", text):
            assert osa_distance(text, out) == 1
        else:
            assert out == text
