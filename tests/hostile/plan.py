"""The campaign's plan: which kind of hostile request each index is, and the request itself, a pure function of
(seed, index) and the target keys. KEYLEDGER_HOSTILE_SEED picks the seed (printed with every failure), so a
failing run reproduces; `python -m tests.hostile.show <seed> <index>` prints one request without a server."""
from __future__ import annotations

import os
import random
from typing import Callable

from tests.hostile.body_requests import (
    blob_request,
    json_request,
    member_request,
    number_request,
    size_request,
    types_request,
    unicode_request,
)
from tests.hostile.header_requests import header_request, sigv4_request
from tests.hostile.hostile_request import HostileRequest
from tests.hostile.policy_requests import policy_request
from tests.hostile.targets import Targets
from tests.hostile.wire_cases import MemberCase, WireCatalog

SEED_VARIABLE = "KEYLEDGER_HOSTILE_SEED"
COUNT_VARIABLE = "KEYLEDGER_HOSTILE_REQUESTS"  # overrides the test's own count (10,000 SQLite, 2,000 PostgreSQL)
SKIP_VARIABLE = "KEYLEDGER_HOSTILE_SKIP"  # comma-separated categories to leave out, when chasing one failure
DEFAULT_SEED = 11  # issue #11

# Shares of the campaign. "types" walks every (operation, member, wrong type) of the model once per 3,493
# requests of its kind, so at 37 % a 10,000-request run covers each of them.
WEIGHTS = {"types": 38, "headers": 10, "sigv4": 13, "json": 8, "unicode": 9, "numbers": 4, "blobs": 8,
           "members": 7, "policies": 4, "sizes": 2}
BUILDERS: dict[str, Callable[[random.Random, Targets], HostileRequest]] = {
    "headers": header_request, "sigv4": sigv4_request, "json": json_request, "unicode": unicode_request,
    "numbers": number_request, "blobs": blob_request, "members": member_request, "policies": policy_request,
    "sizes": size_request}


def seed_from_environment() -> int:
    return int(os.environ.get(SEED_VARIABLE) or DEFAULT_SEED)


def count_from_environment(default: int) -> int:
    return int(os.environ.get(COUNT_VARIABLE) or default)


def skipped_from_environment() -> frozenset[str]:
    return frozenset(name.strip() for name in os.environ.get(SKIP_VARIABLE, "").split(",") if name.strip())


class Plan:
    def __init__(self, seed: int, count: int, targets: Targets, skip: frozenset[str] = frozenset()) -> None:
        unknown = skip - WEIGHTS.keys()
        if unknown:
            raise ValueError(f"{SKIP_VARIABLE} names no category: {sorted(unknown)}; categories: {sorted(WEIGHTS)}")
        self.seed, self.count, self.targets, self.skip = seed, count, targets, skip
        self.catalog = WireCatalog(targets.sacrificial_key)
        cases = self.catalog.cases()
        random.Random(f"{seed}:types").shuffle(cases)
        names = [name for name in WEIGHTS if name not in skip]
        self.categories = random.Random(f"{seed}:categories").choices(names, [WEIGHTS[n] for n in names], k=count)
        self._cases: dict[int, MemberCase] = {}
        for index in (i for i, name in enumerate(self.categories) if name == "types"):
            self._cases[index] = cases[len(self._cases) % len(cases)]
        self.member_cases = len(cases)

    def request(self, index: int) -> HostileRequest:
        rng = random.Random(f"{self.seed}:{index}")
        category = self.categories[index]
        if category == "types":
            request = types_request(rng, self.catalog, self._cases[index])
        else:
            request = BUILDERS[category](rng, self.targets)
        request.index = index
        return request

    def describe(self) -> str:
        skipped = f", without {','.join(sorted(self.skip))}" if self.skip else ""
        return (f"seed {self.seed} ({SEED_VARIABLE}={self.seed}), {self.count} requests{skipped}; "
                f"one request: python -m tests.hostile.show {self.seed} <index>")

    def covered_member_cases(self) -> int:
        return min(len(self._cases), self.member_cases)
