"""IAM wildcards (``*`` any run of characters, ``?`` exactly one, everything else literal), matched without
backtracking, so no pattern and no text can make a match slow.

A pattern is cut at its stars into segments: ``head*mid1*mid2*tail``. A text matches when it starts with
the head, ends with the tail, and the middle segments occur in order, without overlapping, in between. Taking
each middle segment at its leftmost place is always right (a later place leaves less room for the rest), so
every part of the text is searched at most once: the work is at most (len(pattern)+1)·(len(text)+1)
character comparisons, whatever the pattern (``*-*-*-*.json`` against 600 dashes, 5,000 stars, ``kms:****x``).
Python's ``re`` with ``.*`` for each star tries every way to split the text between the stars instead:
exponential in the number of stars.

The comparisons are done by ``str.startswith``/``str.find`` (segments without ``?``) and by a compiled
regular expression of literals and ``.`` only (segments with ``?``, or any segment when case is ignored): an
expression without repetition or alternation compares each start position once, so it cannot backtrack.
``Wildcard.match_counting`` walks the segments for any pattern and tells how many comparisons that is at
most, so tests can assert the bound.
"""
from __future__ import annotations

import re
from operator import methodcaller
from typing import Callable


class _Segment:
    """A run of pattern characters between stars: literals and ``?``. ``at`` and ``find`` are bound to the
    quickest primitive for the segment, picked once."""

    __slots__ = ("text", "at", "find")

    def __init__(self, text: str, ignore_case: bool) -> None:
        self.text = text
        self.at: Callable[[str, int], bool]  # does the segment match text at this position?
        self.find: Callable[[str, int, int], int]  # leftmost match in text[start:end], or -1
        if "?" not in text and not ignore_case:
            self.at = lambda value, position: value.startswith(text, position)
            self.find = lambda value, start, end: value.find(text, start, end)
            return
        regex = re.compile("".join("." if c == "?" else re.escape(c) for c in text),
                           re.DOTALL | (re.IGNORECASE if ignore_case else 0))
        self.at = lambda value, position: regex.match(value, position) is not None

        def find(value: str, start: int, end: int) -> int:
            found = regex.search(value, start, end)
            return found.start() if found else -1
        self.find = find


class Wildcard:
    """One compiled pattern. ``matches`` is the quickest test for the pattern's shape (equality, a prefix, or
    the segment walk); ``match_counting`` is the segment walk, for every shape, with its comparison count."""

    def __init__(self, pattern: str, ignore_case: bool = False) -> None:
        self.pattern = pattern
        parts = pattern.split("*")
        self._head = _Segment(parts[0], ignore_case)
        self._tail = _Segment(parts[-1], ignore_case) if len(parts) > 1 else None  # None: no star at all
        # Stars next to each other ("a**b") leave empty segments: they match anywhere and cost nothing.
        self._middle = tuple(_Segment(part, ignore_case) for part in parts[1:-1] if part)
        self._literal_length = sum(len(part) for part in parts)  # characters the text needs at the least
        plain = not ignore_case and "?" not in pattern
        if self._tail is None and plain:
            self.matches: Callable[[str], bool] = pattern.__eq__
        elif plain and self._tail is not None and not self._tail.text and not self._middle:
            self.matches = methodcaller("startswith", parts[0])  # "kms:Get*", the usual action pattern
        else:
            self.matches = self._walk

    def _walk(self, text: str) -> bool:
        return self.match_counting(text)[0]

    def match_counting(self, text: str) -> tuple[bool, int]:
        """(whether text matches, the character comparisons done at most). A segment of length k tried at p
        start positions costs p·k; the places tried for different segments never overlap."""
        n, head, tail = len(text), self._head, self._tail
        if tail is None:
            size = len(head.text)
            return (n == size and head.at(text, 0)), (size if n == size else 1)
        if n < self._literal_length:
            return False, 1
        steps = len(head.text)
        if not head.at(text, 0):
            return False, steps
        end = n - len(tail.text)
        steps += len(tail.text)
        if not tail.at(text, end):
            return False, steps
        position = len(head.text)
        for segment in self._middle:
            size = len(segment.text)
            found = segment.find(text, position, end)
            last_tried = found if found >= 0 else end - size
            steps += max(last_tried - position + 1, 0) * size
            if found < 0:
                return False, steps
            position = found + size
        return True, steps


class _CaseInsensitive:
    """IAM compares action names ignoring case. An ASCII pattern and text compare as their lower case (a
    plain, fast Wildcard); anything else goes through Unicode case-insensitive segments, as ``re`` folds case."""

    def __init__(self, pattern: str) -> None:
        self._lowered = Wildcard(pattern.lower()) if pattern.isascii() else None
        self._folding = Wildcard(pattern, ignore_case=True)

    def matches(self, text: str) -> bool:
        if self._lowered is not None and text.isascii():
            return self._lowered.matches(text.lower())
        return self._folding.matches(text)


_compiled: dict[str, Callable[[str], bool]] = {}
_compiled_ignoring_case: dict[str, Callable[[str], bool]] = {}
_MAX_COMPILED = 16384  # more than the patterns of the largest policy (32 KB), so one policy never thrashes it


def _compile(pattern: str, ignore_case: bool) -> Callable[[str], bool]:
    cache = _compiled_ignoring_case if ignore_case else _compiled
    if len(cache) >= _MAX_COMPILED:
        cache.clear()  # patterns come from stored policies; when they outgrow the cache most entries are stale
    matcher = cache[pattern] = (_CaseInsensitive(pattern) if ignore_case else Wildcard(pattern)).matches
    return matcher


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """Whether value matches the IAM wildcard pattern (``*`` and ``?``); case-insensitively if asked
    (IAM ignores case in action names only)."""
    matcher = (_compiled_ignoring_case if ignore_case else _compiled).get(pattern)
    if matcher is None:
        matcher = _compile(pattern, ignore_case)
    return matcher(value)
