"""String keys: case, punctuation, dashes, Unicode, Greek letters, plurals, symbol case rules."""

from __future__ import annotations

import time

import pytest

from etlnorm.cascade.textnorm import MAX_KEY_CHARS, singular, symbol_key, symbol_may_match, word_key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Seizure", "SEIZURES!!"),
        ("Low-set ears", "low set ears"),
        ("Low-set ears", "  low\tset\u2013ears "),  # en dash, tab, padding
        ("α-synuclein", "alpha synuclein"),
        ("TNF-α", "tnf alpha"),
        ("Ｓｅｉｚｕｒｅ", "seizure"),  # full-width forms (NFKC)
        ("café au lait spots", "cafe\u0301 au lait spot"),  # composed vs combining accent
        ("Abnormality of the face", "abnormality, of the face."),
        ("bodies", "body"),
    ],
)
def test_word_key_equates_variants(a, b):
    assert word_key(a) == word_key(b) != ""


@pytest.mark.parametrize(
    ("a", "b"), [("Seizure", "Seizing"), ("ear", "eye"), ("RAS", "RA"), ("class", "cla")]
)
def test_word_key_keeps_distinct_words_apart(a, b):
    assert word_key(a) != word_key(b)


@pytest.mark.parametrize("blank", [None, "", "   ", "\t\n", "\x00\x01\x07", "🙂🙂", "!!!"])
def test_nothing_usable_gives_empty_key(blank):
    assert word_key(blank) == ""


def test_control_characters_are_separators():
    assert word_key("Seiz\x00ure\x07") == "seiz ure"
    assert word_key("\x00Seizure\x07") == word_key("Seizure")


def test_long_input_is_truncated_and_fast():
    start = time.perf_counter()
    key = word_key("seizure " * 2000)  # 16,000 characters
    assert time.perf_counter() - start < 1.0
    assert len(key) <= MAX_KEY_CHARS and key.startswith("seizure seizure")


@pytest.mark.parametrize(
    ("word", "expected"),
    [("seizures", "seizure"), ("anomalies", "anomaly"), ("glasses", "glass"), ("abscess", "abscess"),
     ("fungus", "fungus"), ("pelvis", "pelvis"), ("ras", "ras"), ("p53s", "p53s")],
)  # fmt: skip
def test_singular(word, expected):
    assert singular(word) == expected


def test_symbol_keys_and_case_rules():
    assert symbol_key(" TP53 ") == "tp53"
    assert symbol_may_match("TP53", "TP53")
    assert symbol_may_match("tp53", "TP53")  # digits make it symbol-like: case does not matter
    assert symbol_may_match("Tp53", "TP53")
    assert not symbol_may_match("was", "WAS")  # an all-lowercase word is a word, not the symbol
    assert not symbol_may_match("cat", "CAT")
    assert symbol_may_match("WAS", "WAS")
