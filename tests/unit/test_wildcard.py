"""The IAM wildcard matcher: equal to a regular-expression reference on generated patterns and texts, and
its work bounded by (len(pattern)+1)·(len(text)+1) comparisons on the inputs that froze the old one."""
from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.policy.wildcard import Wildcard, wildcard_match

# Mostly two letters (so patterns and texts often meet), then characters a regular expression or fnmatch
# reads specially, and non-ASCII ones (the Kelvin sign folds to k).
SPECIAL = "-.[]\\^$()+{}|\n:/éÉkK\u212a"
texts = st.text(alphabet=st.one_of(st.sampled_from("aabB"), st.sampled_from(SPECIAL + "*?")), max_size=24)
patterns = st.text(alphabet=st.one_of(st.sampled_from("aab**?"), st.sampled_from(SPECIAL)), max_size=12)


def reference(pattern: str, text: str, ignore_case: bool = False) -> bool:
    """fnmatch's translation (atomic groups, so it does not backtrack either) with '[' made literal."""
    expression = fnmatch.translate(pattern.replace("[", "[[]"))
    return re.match(expression, text, re.IGNORECASE if ignore_case else 0) is not None


def naive(pattern: str, text: str, ignore_case: bool = False) -> bool:
    """The translation the matcher replaced (``.*`` per star): correct, exponential in stars, so small inputs."""
    expression = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(expression, text, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def bound(pattern: str, text: str) -> int:
    return (len(pattern) + 1) * (len(text) + 1)


@settings(max_examples=1500, deadline=None)
@given(patterns, texts, st.booleans())
def test_equals_the_reference(pattern, text, ignore_case):
    expected = reference(pattern, text, ignore_case)
    assert wildcard_match(pattern, text, ignore_case) is expected
    matched, steps = Wildcard(pattern, ignore_case).match_counting(text)
    assert matched is expected
    assert steps <= bound(pattern, text)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.text(alphabet="ab?", max_size=3), min_size=1, max_size=5), st.text(alphabet="ab", max_size=10))
def test_equals_the_reference_on_dense_star_patterns(pieces, text):
    """Segments of two letters and '?' between stars, against texts of the same letters: here a text often
    nearly matches, which is where a walk that lets segments overlap or skips a place goes wrong."""
    pattern = "*".join(pieces)
    matched, steps = Wildcard(pattern).match_counting(text)
    assert matched is wildcard_match(pattern, text) is reference(pattern, text)
    assert steps <= bound(pattern, text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab*?.", max_size=7), st.text(alphabet="ab.", max_size=10), st.booleans())
def test_equals_the_old_translation_on_small_inputs(pattern, text, ignore_case):
    assert wildcard_match(pattern, text, ignore_case) is naive(pattern, text, ignore_case)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab?", max_size=3), min_size=2, max_size=6), st.data())
def test_a_text_built_to_match_matches(pieces, data):
    """Texts made from the pattern itself (each star filled, each '?' replaced) must match: the generated
    pairs above mostly do not match, this side makes sure the matches are found too."""
    pattern = "*".join(pieces)
    text = "".join(
        piece.replace("?", data.draw(st.sampled_from("ab?*"))) + (data.draw(st.text(alphabet="ab*?", max_size=4))
                                                                 if i < len(pieces) - 1 else "")
        for i, piece in enumerate(pieces))
    assert wildcard_match(pattern, text) and reference(pattern, text)


@pytest.mark.parametrize("pattern, text, ignore_case", [
    ("*-*-*-*.json", "-" * 600, False),  # froze the server 4.1 s through Python's backtracking re
    ("*-*-*-*.json", "-" * 8192, False),
    ("kms:" + "*" * 12 + "x", "kms:GenerateDataKeyPairWithoutPlaintext", True),  # 100 % CPU past SIGTERM
    ("*" * 5000, "x" * 8192, False),
    ("*" * 5000 + "a", "b" * 8192, False),
    ("*a" * 2500 + "*", "a" * 8192, False),
    ("*a" * 2500 + "*b*", "a" * 8192, False),
    ("*" + "a?" * 2000 + "b*", "a" * 8192, False),
    ("?" * 4000 + "*" + "?" * 4000, "é" * 8192, False),
])
def test_hostile_inputs_cost_at_most_the_bound(pattern, text, ignore_case):
    matched, steps = Wildcard(pattern, ignore_case).match_counting(text)
    assert matched is reference(pattern, text, ignore_case)
    assert steps <= bound(pattern, text)


@pytest.mark.parametrize("stars", [1, 10, 100, 1000])
def test_work_grows_linearly_with_the_text_for_star_dash_patterns(stars):
    """A pattern of k '-' segments against n dashes: each segment is found at the next position, so the work
    is about n, whatever k; the backtracking translation tried every split of the text among the stars."""
    pattern = "*-" * stars + "*.json"
    for n in (600, 6000):
        matched, steps = Wildcard(pattern).match_counting("-" * n)
        assert not matched and steps <= len(pattern) + n + 1


def test_the_walk_is_linear_when_a_segment_is_found_once():
    # '*-x*' against 599 dashes and an x: one segment of 2 tried at each of 599 places, 2 comparisons each.
    matched, steps = Wildcard("*-x*").match_counting("-" * 599 + "x")
    assert matched and steps <= 2 * 600


@pytest.mark.parametrize("pattern, text, ignore_case, expected", [
    ("*", "", False, True), ("", "", False, True), ("", "a", False, False), ("**", "", False, True),
    ("a?c", "abc", False, True), ("a?c", "ac", False, False), ("?", "\n", False, True),
    ("a.b", "axb", False, False), ("[ab]", "a", False, False), ("[ab]", "[ab]", False, True),
    ("kms:Get*", "KMS:GETPUBLICKEY", True, True), ("kms:Get*", "KMS:GETPUBLICKEY", False, False),
    ("KMS:ENCRYPT", "kms:Encrypt", True, True), ("kms:*crypt", "kms:ReEncrypt", True, True),
    ("a*b*c", "a-b-x-c", False, True), ("a*b*c", "a-c-x-b", False, False), ("ab*ba", "aba", False, False),
    ("*k", "\u212a", True, True),  # the Kelvin sign folds to k, as re.IGNORECASE folds it
])
def test_examples(pattern, text, ignore_case, expected):
    assert wildcard_match(pattern, text, ignore_case) is expected
