"""How the stored-state dictionary version 2 (infrastructure/compression.py) was made, and what it gives.

    python -m bench.state_dictionary train DIR... [--out FILE]   # made infrastructure/data/state-dictionary-v2.zdict
    python -m bench.state_dictionary measure DIR...              # bytes and CPU per state, version 1 against 2

``DIR``: directories searched for keyledger SQLite databases (``*.db``); the dictionary was trained on the stores
the end-to-end suites leave under pytest's base directory (``pytest --basetemp DIR tests/e2e/...``): every kind of
audit record (each operation, allowed and refused, each kind of caller), key, alias, grant, principal, custom key
store and checkpoint events, and snapshots. Each state is taken twice, once as stored and once with its account
id, Region and ids replaced by others, so that the dictionary learns the shape of a state (field names, ARN
frames, fixed values) rather than the tests' account. One sample in ten is held out and measured, never trained on.

The file, once shipped, never changes (rows written with it need exactly its bytes); a better one is version 3.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import re
import sqlite3
import sys
import time
import uuid
import zlib
from pathlib import Path
from typing import Callable, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zstandard  # noqa: E402

from domain.audit.seals import split_tagged  # noqa: E402
from infrastructure.compression import _WBITS, DICTIONARY_V1, DICTIONARY_V2_FILE  # noqa: E402

DICTIONARY_BYTES = 16 * 1024  # 8, 16 and 32 KB gave the same sizes within 3 %; 16 KB is a cheap table to hold
_REGIONS = ["eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1", "sa-east-1", "ca-central-1"]
_HEX = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _plain_v1_or_json(state: bytes) -> bytes | None:
    """The JSON of a state as stored by session 7 (version 1) or before; None for another form."""
    payload, _ = split_tagged(state)
    if payload[:1] == b"{":
        return payload
    if payload[:1] != b"\x01":
        return None
    inflate = zlib.decompressobj(_WBITS, DICTIONARY_V1)
    return inflate.decompress(payload[1:-4])


def harvested(directories: Iterable[Path]) -> list[bytes]:
    states: list[bytes] = []
    for directory in directories:
        for database in sorted(directory.rglob("*.db")):
            try:
                db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
                rows = db.execute("SELECT state FROM keyledger_events UNION ALL "
                                  "SELECT state FROM keyledger_snapshots").fetchall()
                db.close()
            except sqlite3.Error:
                continue
            states.extend(s for s in (_plain_v1_or_json(bytes(r[0])) for r in rows) if s)
    return states


def _variant(state: bytes, rng: random.Random) -> bytes:
    account = str(rng.randrange(10**11, 10**12)).encode()
    state = state.replace(b"111122223333", account).replace(b"123456789012", account)
    state = state.replace(b"us-east-1", rng.choice(_REGIONS).encode())
    return _HEX.sub(lambda _: str(uuid.UUID(int=rng.getrandbits(128))).encode(), state)


def split(states: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(20261207)
    samples = [s for state in states for s in (state, _variant(state, rng))]
    rng.shuffle(samples)
    held = len(samples) // 10
    return samples[held:], samples[:held]


def _cpu_us(work: Callable[[bytes], object], items: list[bytes]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for item in items:
            work(item)
        best = min(best, time.process_time() - started)
    return best / len(items) * 1e6


def measure(held_out: list[bytes]) -> None:
    from infrastructure.compression import _LEVEL, _MEMLEVEL, _WRITE_WBITS, LedgerCompressor

    v1 = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WRITE_WBITS, _MEMLEVEL, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_V1)

    def compress_v1(data: bytes) -> bytes:
        deflate = v1.copy()
        framed = b"\x01" + deflate.compress(data) + deflate.flush()
        return framed + zlib.crc32(framed).to_bytes(4, "big")

    compressor = LedgerCompressor()
    records = [s for s in held_out if b'"record":{' in s]
    for name, items in (("audit records", records), ("every state", held_out)):
        plain = sum(map(len, items)) / len(items)
        packed1, packed2 = [compress_v1(s) for s in items], [compressor.compress(s) for s in items]
        assert all(compressor.decompress(p) == s for p, s in zip(packed1 + packed2, items + items))
        print(f"{name} ({len(items):,} held out, {plain:,.0f} B of JSON on average):")
        for label, compress, packed in (("version 1, zlib", compress_v1, packed1),
                                        ("version 2, zstd", compressor.compress, packed2)):
            print(f"  {label}: {sum(map(len, packed)) / len(packed):6.1f} B stored, compress "
                  f"{_cpu_us(compress, items):5.2f} us, decompress {_cpu_us(compressor.decompress, packed):5.2f} us "
                  "(CPU, best of 3)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["train", "measure"])
    parser.add_argument("directories", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=DICTIONARY_V2_FILE)
    args = parser.parse_args(argv)
    train, held_out = split(harvested(args.directories))
    print(f"{len(train) + len(held_out):,} samples ({len(train):,} to train on)")
    if args.action == "train":
        dictionary = zstandard.train_dictionary(DICTIONARY_BYTES, train, level=3, threads=1)
        data = dictionary.as_bytes()
        args.out.write_bytes(data)
        print(f"wrote {args.out} ({len(data):,} B, sha256 {hashlib.sha256(data).hexdigest()})")
    else:
        measure(held_out)


if __name__ == "__main__":
    main(sys.argv[1:])
