"""Prints one planned hostile request: python -m tests.hostile.show <seed> <index> [skipped,categories]

The plan is prefix-stable (request i does not depend on how many follow it), so index alone finds it. Key ids
are placeholders here; in a run they are the keys the test made."""
from __future__ import annotations

import sys

from tests.hostile.plan import Plan
from tests.hostile.targets import Targets

PLACEHOLDER_TARGETS = Targets(
    crypto_key="11111111-1111-4111-8111-111111111111", pattern_key="22222222-2222-4222-8222-222222222222",
    policy_games_key="33333333-3333-4333-8333-333333333333", sacrificial_key="44444444-4444-4444-8444-444444444444",
    sign_key="55555555-5555-4555-8555-555555555555", mac_key="66666666-6666-4666-8666-666666666666",
    blobs=((b"\x01" + bytes(100), {}), (b"\x01" + bytes(200), {"purpose": "hostile", "n": "16"})))


def main(argv: list[str]) -> None:
    seed, index = int(argv[0]), int(argv[1])
    skip = frozenset(argv[2].split(",")) if len(argv) > 2 else frozenset()
    request = Plan(seed, index + 1, PLACEHOLDER_TARGETS, skip).request(index)
    head, size = request.assemble("http://127.0.0.1:8080", b"127.0.0.1:8080")
    print(f"#{index} {request.category}: {request.note}")
    print(f"authentic={request.authentic} may_succeed={request.may_succeed} header bytes={size:,} "
          f"body bytes={len(request.body):,}")
    print(head[:3000].decode("latin-1") + ("..." if len(head) > 3000 else ""))
    print(request.body[:3000].decode("latin-1") + ("..." if len(request.body) > 3000 else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
