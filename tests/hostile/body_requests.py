"""Hostile bodies: wrong types from the model, malformed JSON, unicode everywhere, numbers out of range,
base64 that is not, mangled ciphertext, unknown members and operations, DryRun games and sizes."""
from __future__ import annotations

import json
import random
from typing import Any

from tests.hostile.hostile_request import MADE_UP, SIGNED, UNSIGNED, Auth, HostileRequest
from tests.hostile.targets import Targets, benign
from tests.hostile.values import (
    BAD_NUMBERS,
    BAD_UTF8,
    RAW,
    b64,
    bad_base64,
    mangled_blob,
    nasty_string,
    splice,
)
from tests.hostile.wire_cases import MemberCase, WireCatalog

MiB = 1024 * 1024


def _auth(rng: random.Random, signed: float = 0.85) -> Auth:
    roll = rng.random()
    return SIGNED if roll < signed else UNSIGNED if roll < (1 + signed) / 2 else MADE_UP


def call_request(category: str, note: str, operation: str, document: Any, rng: random.Random, *,
          may_succeed: bool = False, signed: float = 0.85) -> HostileRequest:
    return HostileRequest(category=category, note=note, target=b"TrentService." + operation.encode(),
                          body=document if isinstance(document, bytes) else splice(document),
                          auth=_auth(rng, signed), may_succeed=may_succeed)


def types_request(rng: random.Random, catalog: WireCatalog, case: MemberCase) -> HostileRequest:
    return call_request("types", case.describe(), case.operation, catalog.document(case), rng)


def json_request(rng: random.Random, targets: Targets) -> HostileRequest:
    target, document = benign(rng, targets)
    valid = json.dumps(document).encode()
    kind = rng.choice(("truncated", "random", "bom", "utf16", "utf32", "trailing", "duplicate-keys", "js-ish",
                       "constants", "padded", "top-level", "bad-utf8", "deep", "deep", "wide", "empty", "nul"))
    may, deep, body = False, False, valid
    if kind == "truncated":
        body = valid[:rng.randrange(1, len(valid))]
    elif kind == "random":
        body = rng.randbytes(rng.randint(1, 3000))
    elif kind == "bom":
        body, may = b"\xef\xbb\xbf" + valid, True
    elif kind in ("utf16", "utf32"):
        encoding = f"{kind[:3]}-{kind[3:]}" + rng.choice(("-le", "-be", ""))  # "" writes a byte order mark
        body, may = valid.decode().encode(encoding), True
    elif kind == "trailing":
        body = valid + rng.choice((b"garbage", b"}", b"]", valid, b"\x00", b",{}"))
    elif kind == "duplicate-keys":
        body = b'{"KeyId": "%s", "KeyId": {"nested": [1, 2]}, "Limit": 1, "Limit": "x"}' % targets.crypto_key.encode()
    elif kind == "js-ish":
        body = rng.choice((b"{'Limit': 1}", b"{Limit: 1}", b'{"Limit": 1,}', b'/* c */ {"Limit": 1}',
                           b'{"Limit": 1 // c\n}', b'{"Limit": 0x1}', b'{"Limit": undefined}', b"{,}", b"{:}"))
    elif kind == "constants":
        body = rng.choice((b'{"Limit": NaN}', b'{"Limit": Infinity}', b'{"Limit": -Infinity}', b'{"NumberOfBytes": nan}'))
    elif kind == "padded":
        pad = rng.choice((b" ", b"\n", b"\t", b"\r\n")) * rng.choice((1_000, 50_000, 300_000))
        body, may = pad + valid + pad, True
    elif kind == "top-level":
        body = rng.choice((b"null", b"[]", b"[{}]", b'"{}"', b"12", b"true", b"-0", b"1e999", b'"\\ud800"'))
    elif kind == "bad-utf8":
        cut = valid.find(b'"', 2) + 1 or 1
        body = valid[:cut] + rng.choice(BAD_UTF8) + valid[cut:]
    elif kind == "deep":
        depth = rng.choice((50, 1_000, 10_000, 100_000))
        opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
        nested = opener * depth + b"1" + closer * depth
        body = b'{"Unknown": ' + nested + b"}" if rng.random() < 0.5 else nested
        # Valid JSON in an unknown member is ignored, as AWS ignores it; a depth limit may refuse it instead.
        may, deep = opener == b'{"a":' or body.startswith(b'{"Unknown"'), depth > 50
    elif kind == "wide":
        count = rng.choice((1_000, 50_000, 150_000))
        body, may = b'{"Unknown": [' + b",".join(b"%d" % i for i in range(count)) + b"]}", True
    elif kind == "empty":
        body, may = rng.choice((b"", b" ", b"\n\n")), target in (b"TrentService.ListKeys", b"TrentService.ListAliases")
    else:
        body = valid[:-1] + b"\x00" * rng.randint(1, 100) + b"}"
    request = HostileRequest(category="json", note=f"{kind}: {body[:80]!r}", target=target, body=body,
                             auth=_auth(rng), may_succeed=may)
    request.deep_json = deep
    return request


def unicode_request(rng: random.Random, targets: Targets) -> HostileRequest:
    text, other = nasty_string(rng), nasty_string(rng)
    kind = rng.choice(("description", "alias", "key-id", "context", "decrypt-context", "marker", "tags", "grant",
                       "grant-tokens", "policy", "member-names", "raw-bytes"))
    may, victim = True, targets.sacrificial_key
    if kind == "description":
        operation, document = rng.choice((("CreateKey", {"Description": text}),
                                          ("UpdateKeyDescription", {"KeyId": victim, "Description": text})))
    elif kind == "alias":
        operation, document = "CreateAlias", {"AliasName": "alias/" + text, "TargetKeyId": victim}
    elif kind == "key-id":
        operation, document = rng.choice(("DescribeKey", "GetKeyPolicy", "ListGrants")), {"KeyId": text}
        document.update({"PolicyName": "default"} if operation == "GetKeyPolicy" else {})
        may = False
    elif kind == "context":
        operation = "Encrypt"
        document = {"KeyId": targets.crypto_key, "Plaintext": b64(b"x"), "EncryptionContext": {text: other}}
    elif kind == "decrypt-context":
        blob, _ = rng.choice(targets.blobs)
        operation, may = "Decrypt", False
        document = {"CiphertextBlob": b64(blob), "EncryptionContext": {text or "k": other + "\u0301"}}
    elif kind == "marker":
        operation, document = rng.choice(("ListKeys", "ListAliases")), {"Marker": text}
    elif kind == "tags":
        operation = "TagResource"
        document = {"KeyId": victim, "Tags": [{"TagKey": text, "TagValue": other}]}
    elif kind == "grant":
        operation = "CreateGrant"
        document = {"KeyId": victim, "GranteePrincipal": "arn:aws:iam::111122223333:user/" + text,
                    "Operations": ["Decrypt"], "Name": other}
    elif kind == "grant-tokens":
        operation = "Encrypt"
        document = {"KeyId": targets.crypto_key, "Plaintext": b64(b"x"), "GrantTokens": [text, other]}
    elif kind == "policy":
        operation = "PutKeyPolicy"
        document = {"KeyId": victim, "PolicyName": "default", "Policy": json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Sid": text[:100], "Effect": "Allow", "Principal": {
                "AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}, ensure_ascii=False)}
    elif kind == "member-names":
        operation, document = "ListKeys", {text: other, other + "!": text}
    else:
        operation, may = "DescribeKey", False
        document = b'{"KeyId": "ab' + rng.choice(BAD_UTF8) + text.encode("utf-8", "surrogatepass")[:200] + b'"}'
    return call_request("unicode", f"{kind}: {text[:40]!r} / {other[:40]!r}", operation, document, rng,
                 may_succeed=may, signed=0.9)


INTEGER_MEMBERS = (
    ("GenerateRandom", "NumberOfBytes", {}), ("ListKeys", "Limit", {}), ("ListAliases", "Limit", {}),
    ("GenerateDataKey", "NumberOfBytes", {"KeyId": None}), ("ScheduleKeyDeletion", "PendingWindowInDays", {"KeyId": "v"}),
    ("EnableKeyRotation", "RotationPeriodInDays", {"KeyId": "v"}), ("ListGrants", "Limit", {"KeyId": None}),
    ("ImportKeyMaterial", "ValidTo", {"KeyId": "v", "ImportToken": "AQID", "EncryptedKeyMaterial": "AQID",
                                      "ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
)


def number_request(rng: random.Random, targets: Targets) -> HostileRequest:
    operation, member, rest = rng.choice(INTEGER_MEMBERS)
    document = {k: (targets.crypto_key if v is None else targets.sacrificial_key if v == "v" else v)
                for k, v in rest.items()}
    number = rng.choice(BAD_NUMBERS)
    if member == "ValidTo" and number in ("0", "1.5", "1.0", "1e2", "1E+2", "-0.0"):
        number = "-1e400"  # epoch seconds that are numbers are fine there: keep to the unrepresentable
    document[member] = RAW + number
    return call_request("numbers", f"{operation} {member} = {number[:40]}", operation, document, rng)


BLOB_MEMBERS = (("Encrypt", "Plaintext", "crypto"), ("Decrypt", "CiphertextBlob", None), ("Sign", "Message", "sign"),
                ("Verify", "Signature", "sign"), ("GenerateMac", "Message", "mac"), ("VerifyMac", "Mac", "mac"),
                ("ImportKeyMaterial", "EncryptedKeyMaterial", "victim"), ("ReEncrypt", "CiphertextBlob", None))


def blob_request(rng: random.Random, targets: Targets) -> HostileRequest:
    blob, context = rng.choice(targets.blobs)
    kind = rng.choice(("bad-base64", "mangled", "mangled", "reencrypt", "wrong-context", "wrong-key", "round-trip",
                       "verify", "verify-mac", "sizes"))
    may = False
    if kind == "bad-base64":
        operation, member, key = rng.choice(BLOB_MEMBERS)
        document = _blob_base(targets, operation, key, blob)
        document[member] = bad_base64(rng)
        note = f"{operation} {member} = {document[member][:40]!r}"
    elif kind in ("mangled", "reencrypt"):
        changed, how = mangled_blob(rng, blob)
        operation = "Decrypt" if kind == "mangled" else "ReEncrypt"
        document = {"CiphertextBlob": b64(changed), "EncryptionContext": context}
        if kind == "reencrypt":
            document.update(DestinationKeyId=targets.crypto_key, SourceEncryptionContext=document.pop("EncryptionContext"))
        elif rng.random() < 0.5:
            document["KeyId"] = targets.crypto_key
        note = f"{operation} of a blob {how}"
    elif kind == "wrong-context":
        operation, note = "Decrypt", "Decrypt with another encryption context"
        document = {"CiphertextBlob": b64(blob), "EncryptionContext": {**context, "extra": "x"}}
    elif kind == "wrong-key":
        operation, note = "Decrypt", "Decrypt naming another key"
        document = {"CiphertextBlob": b64(blob), "KeyId": targets.sign_key, "EncryptionContext": context}
    elif kind == "round-trip":
        operation, note, may = "Decrypt", "Decrypt of an intact blob (must work)", True
        document = {"CiphertextBlob": b64(blob), "KeyId": targets.crypto_key, "EncryptionContext": context}
    elif kind == "verify":
        operation, note = "Verify", "Verify of a random signature"
        document = {"KeyId": targets.sign_key, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256",
                    "Signature": b64(rng.randbytes(rng.choice((1, 64, 72, 6000))))}
    elif kind == "verify-mac":
        operation, note = "VerifyMac", "VerifyMac of a random MAC"
        document = {"KeyId": targets.mac_key, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256",
                    "Mac": b64(rng.randbytes(rng.choice((1, 32, 64))))}
    else:
        size = rng.choice((0, 4096, 4097, 6144, 6145, 70_000))
        operation, member, key = rng.choice(BLOB_MEMBERS[:6])
        document = _blob_base(targets, operation, key, blob)
        document[member] = b64(rng.randbytes(size))
        note = f"{operation} {member} of {size} bytes"
        may = operation in ("Encrypt", "Sign", "GenerateMac") and 1 <= size <= 4096
    return call_request("blobs", note, operation, document, rng, may_succeed=may)


def _blob_base(targets: Targets, operation: str, key: str | None, blob: bytes) -> dict[str, Any]:
    key_id = {"crypto": targets.crypto_key, "sign": targets.sign_key, "mac": targets.mac_key,
              "victim": targets.sacrificial_key}.get(key or "")
    document: dict[str, Any] = {"KeyId": key_id} if key_id else {}
    extra = {"Sign": {"Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"},
             "Verify": {"Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256", "Signature": b64(b"s")},
             "GenerateMac": {"MacAlgorithm": "HMAC_SHA_256"}, "VerifyMac": {"Message": b64(b"m"),
                                                                          "MacAlgorithm": "HMAC_SHA_256"},
             "ImportKeyMaterial": {"ImportToken": b64(b"t"), "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"},
             "ReEncrypt": {"DestinationKeyId": targets.crypto_key}, "Decrypt": {"CiphertextBlob": b64(blob)},
             "Encrypt": {"Plaintext": b64(b"p")}}.get(operation, {})
    return {**document, **extra}


UNKNOWN_TARGETS = (b"TrentService.NoSuchOperation", b"TrentService.", b"TrentService", b"", b"TrentService.encrypt",
                   b"TRENTSERVICE.ENCRYPT", b"TrentService.Encrypt ", b"TrentService.Encrypt\t", b" TrentService.X",
                   b"TrentService.TrentService.Encrypt", b"AWSKMS.Encrypt", b"kms.Encrypt", b"TrentService.Encrypt.Now",
                   b"TrentService.__init__", b"TrentService.../../ListKeys", b"TrentService.List\xc3\xa9Keys",
                   b"TrentService.ConnectCustomKeyStores", b"TrentService.ReplicateKey", b"TrentService.GetKeyLastUsage",
                   b"TrentService.UpdatePrimaryRegion", b"TrentService.%45ncrypt", b"TrentService.Encrypt;ListKeys")
DRY_RUN_OPERATIONS = ("Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "Decrypt", "ReEncrypt")


def member_request(rng: random.Random, targets: Targets) -> HostileRequest:
    kind = rng.choice(("unknown", "unknown", "name-case", "operation", "operation", "dry-run", "dry-run", "dry-run-other"))
    blob, context = rng.choice(targets.blobs)
    if kind == "unknown":
        count = rng.choice((1, 100, 5_000))
        target, document = benign(rng, targets)
        document.update({f"Unknown{i}{nasty_string(rng)[:10]}": i for i in range(count)})
        return call_request("members", f"{count} unknown members", target.decode().split(".", 1)[1], document, rng,
                     may_succeed=True)
    if kind == "name-case":
        name = rng.choice(("keyid", "KEYID", "KeyID", "KeyId ", " KeyId", "Key\u0130d"))
        return call_request("members", f"member spelled {name!r}", "DescribeKey", {name: targets.crypto_key}, rng)
    if kind == "operation":
        target = rng.choice(UNKNOWN_TARGETS)
        request = call_request("members", f"operation {target!r}", "ListKeys", {}, rng)
        request.target = target
        return request
    if kind == "dry-run-other":
        target, document = benign(rng, targets)
        document["DryRun"] = True
        return call_request("members", "DryRun on an operation without it", target.decode().split(".", 1)[1], document,
                     rng, may_succeed=True)
    operation = rng.choice(DRY_RUN_OPERATIONS)
    document = {"Encrypt": {"KeyId": targets.crypto_key, "Plaintext": b64(b"p")},
                "GenerateDataKey": {"KeyId": targets.crypto_key, "KeySpec": "AES_256"},
                "GenerateDataKeyWithoutPlaintext": {"KeyId": targets.crypto_key, "NumberOfBytes": 32},
                "Decrypt": {"CiphertextBlob": b64(blob), "EncryptionContext": context},
                "ReEncrypt": {"CiphertextBlob": b64(blob), "SourceEncryptionContext": context,
                              "DestinationKeyId": targets.crypto_key}}[operation]
    value, label = rng.choice(((True, "true"), (False, "false"), (None, "null"), ("true", "a string"), (1, "1"),
                               ([True], "a list"), ({"a": 1}, "an object"), (RAW + "tru", "not JSON")))
    document["DryRun"] = value
    return call_request("members", f"{operation} DryRun {label}", operation, document, rng,
                 may_succeed=label in ("false", "null"))


def size_request(rng: random.Random, targets: Targets) -> HostileRequest:
    kind = rng.choices(("oversized", "padded", "grant-tokens", "context-pairs", "tags"), (6, 30, 22, 22, 20))[0]
    if kind == "oversized":
        size = rng.randint(4 * MiB, 6 * MiB)
        body = b'{"Limit": 1' + b" " * (size - 13) + b"}" if rng.random() < 0.5 else (
            b'{"Description": "' + b"d" * (size - 20) + b'"}')
        request = call_request("sizes", f"a body of {size:,} bytes", "ListKeys", body, rng, signed=0.5)
        request.target = rng.choice((b"TrentService.ListKeys", b"TrentService.CreateKey", b"TrentService.Nope"))
        return request
    if kind == "padded":
        size = rng.choices((10_000, 100_000, 500_000, 2 * MiB), (40, 30, 20, 10))[0]
        return call_request("sizes", f"ListKeys padded to {size:,} bytes", "ListKeys",
                     b"{" + b" " * size + b'"Limit": 2}', rng, may_succeed=True)
    if kind == "grant-tokens":
        count = rng.choice((11, 1_000, 20_000))
        document = {"KeyId": targets.crypto_key, "Plaintext": b64(b"p"), "GrantTokens": ["t" * 50] * count}
        return call_request("sizes", f"{count:,} grant tokens", "Encrypt", document, rng)
    if kind == "context-pairs":
        count = rng.choice((100, 2_000, 20_000))
        document = {"KeyId": targets.crypto_key, "Plaintext": b64(b"p"),
                    "EncryptionContext": {f"k{i}": "v" * rng.randint(1, 20) for i in range(count)}}
        return call_request("sizes", f"an encryption context of {count:,} pairs", "Encrypt", document, rng, may_succeed=True)
    count = rng.choice((51, 1_000, 10_000))
    document = {"KeyId": targets.sacrificial_key, "Tags": [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(count)]}
    return call_request("sizes", f"{count:,} tags", "TagResource", document, rng, may_succeed=True)
