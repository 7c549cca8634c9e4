"""The keys a hostile campaign aims at, made on the server before it starts, each with one role so that what
the campaign does to one key cannot break the checks made on another afterwards."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from tests.hostile.values import b64
from tests.hostile.wire_cases import ADMIN_POLICY

# Measurement 2 of issue #11: a pattern that Python's backtracking regex takes O(n^4) steps to refuse on a
# run of dashes. In a Deny statement it is evaluated on every Encrypt, whatever else the policy allows.
DASHES_PATTERN = "*-*-*-*.json"
PATTERN_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    json.loads(ADMIN_POLICY)["Statement"][0],
    {"Sid": "NoJsonFiles", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Encrypt", "Resource": "*",
     "Condition": {"StringLike": {"kms:EncryptionContext:file": DASHES_PATTERN}}},
    {"Sid": "NoOddCallers", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Encrypt", "Resource": "*",
     "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:*-*-*-*-x"}}},
]})


@dataclass(frozen=True)
class Targets:
    crypto_key: str  # read-only and crypto calls only: still round-trips afterwards
    pattern_key: str  # PATTERN_POLICY, never replaced during the campaign
    policy_games_key: str  # PutKeyPolicy with pathological documents lands here
    sacrificial_key: str  # the wire-model cases name it: it may end up disabled, deleted or locked
    sign_key: str  # ECC_NIST_P256 SIGN_VERIFY
    mac_key: str  # HMAC_256
    blobs: tuple[tuple[bytes, dict[str, str]], ...]  # ciphertexts under crypto_key with their contexts


def make_targets(kms: Any) -> Targets:
    """Creates the keys with a boto3 client of the administrator."""
    def key(**kwargs: Any) -> str:
        return kms.create_key(Description="hostile-input target", **kwargs)["KeyMetadata"]["KeyId"]

    crypto, pattern, games, sacrificial = key(), key(), key(), key()
    kms.put_key_policy(KeyId=pattern, PolicyName="default", Policy=PATTERN_POLICY)
    rng = random.Random(11)
    blobs = []
    for size in (1, 16, 300, 4096):
        context = {"purpose": "hostile", "n": str(size)} if size % 2 == 0 else {}
        blob = kms.encrypt(KeyId=crypto, Plaintext=rng.randbytes(size), EncryptionContext=context)["CiphertextBlob"]
        blobs.append((blob, context))
    return Targets(crypto_key=crypto, pattern_key=pattern, policy_games_key=games, sacrificial_key=sacrificial,
                   sign_key=key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY"),
                   mac_key=key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC"), blobs=tuple(blobs))


def benign(rng: random.Random, targets: Targets) -> tuple[bytes, dict[str, Any]]:
    """(target, document) of an ordinary call that succeeds when authentic: the base a header game varies."""
    choice = rng.randrange(5)
    if choice == 0:
        return b"TrentService.ListKeys", {"Limit": rng.randint(1, 5)}
    if choice == 1:
        return b"TrentService.GenerateRandom", {"NumberOfBytes": rng.randint(1, 64)}
    if choice == 2:
        return b"TrentService.DescribeKey", {"KeyId": targets.crypto_key}
    if choice == 3:
        return b"TrentService.Encrypt", {"KeyId": targets.crypto_key, "Plaintext": b64(rng.randbytes(rng.randint(1, 64)))}
    return b"TrentService.ListAliases", {}

