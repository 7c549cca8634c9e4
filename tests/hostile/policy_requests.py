"""Policies with pathological wildcards (measurement 2 of issue #11), and calls evaluated against them.

A backtracking matcher takes exponential or high-polynomial time on these; a linear one answers at once.
Every document keeps the administrator's Allow, so the lockout safety check has no reason to refuse it."""
from __future__ import annotations

import json
import random
from typing import Any

from tests.hostile.body_requests import call_request
from tests.hostile.hostile_request import HostileRequest
from tests.hostile.targets import Targets
from tests.hostile.values import b64
from tests.hostile.wire_cases import ADMIN_POLICY

ADMIN_STATEMENT = json.loads(ADMIN_POLICY)["Statement"][0]


def deny(action: Any = "kms:Encrypt", condition: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    statement = {"Sid": "Pathological", "Effect": "Deny", "Principal": {"AWS": "*"},
                 **({"Action": action} if action is not None else {}), "Resource": "*", **more}
    if condition:
        statement["Condition"] = condition
    return statement


def pathological_statement(rng: random.Random) -> tuple[dict[str, Any], str]:
    kind = rng.randrange(9)
    if kind == 0:
        stars = rng.choice((3, 12, 40))
        return deny("kms:" + "*" * stars + "x"), f"action kms:{stars}*x"
    if kind == 1:
        stars = rng.choice((100, 5_000))
        tail = rng.choice(("", "x"))
        return deny(condition={"StringLike": {"kms:EncryptionContext:file": "*" * stars + tail}}), \
            f"StringLike of {stars} * then {tail!r}"
    if kind == 2:
        count = rng.choice((5, 50))
        return deny(condition={"StringLike": {"kms:EncryptionContext:file": [
            "*-" * rng.randint(5, 300) + "x" for _ in range(count)]}}), f"{count} StringLike values of *- runs"
    if kind == 3:
        return deny(condition={"StringLike": {"kms:EncryptionContext:file": "?" * 3000}}), "StringLike of 3,000 ?"
    if kind == 4:
        return deny(condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::" + "*:" * 300 + "x"}}), "ArnLike *: runs"
    if kind == 5:
        return deny([f"kms:*{'*'.join('abcdefgh'[:rng.randint(2, 8)])}*x" for _ in range(200)]), "200 action patterns"
    if kind == 6:
        return deny(NotAction="kms:" + "*" * 12 + "x", action=None), "NotAction kms:12*x"
    if kind == 7:
        return deny("kms:*", Resource="arn:aws:kms:*:*:key/" + "*" * 2000 + "x"), "Resource of 2,000 *"
    return deny(condition={"StringLike": {"kms:EncryptionContext:file": "*-*-*-*-*-*-*-*.json"}}), "*-*-*-*-*-*-*-*.json"


def pathological_policy(rng: random.Random) -> tuple[str, str]:
    statement, note = pathological_statement(rng)
    return json.dumps({"Version": "2012-10-17", "Statement": [ADMIN_STATEMENT, statement]}), note


def policy_request(rng: random.Random, targets: Targets) -> HostileRequest:
    kind = rng.choices(("dashes", "dashes-match", "put", "create", "evaluate"), (25, 10, 30, 10, 25))[0]
    if kind == "dashes":
        dashes = rng.randint(1, 600)
        return call_request("policies", f"Encrypt under *-*-*-*.json with {dashes} dashes", "Encrypt",
                     {"KeyId": targets.pattern_key, "Plaintext": b64(b"p"),
                      "EncryptionContext": {"file": "-" * dashes}}, rng, may_succeed=True, signed=0.95)
    if kind == "dashes-match":  # the Deny applies: the answer must be a refusal, whatever the matcher
        value = rng.choice(("a-b-c-d.json", "---.json", "-" * rng.randint(3, 600) + ".json", "x-" * 200 + "y.json"))
        return call_request("policies", f"Encrypt whose context matches the Deny: {value[:30]}", "Encrypt",
                     {"KeyId": targets.pattern_key, "Plaintext": b64(b"p"), "EncryptionContext": {"file": value}},
                     rng, signed=1.0)
    if kind in ("put", "create"):
        policy, note = pathological_policy(rng)
        if kind == "put":
            document = {"KeyId": targets.policy_games_key, "PolicyName": "default", "Policy": policy}
        else:
            document = {"Policy": policy, "Description": "hostile pathological policy"}
        return call_request("policies", f"{'PutKeyPolicy' if kind == 'put' else 'CreateKey'} with {note}",
                     "PutKeyPolicy" if kind == "put" else "CreateKey", document, rng, may_succeed=True, signed=0.95)
    value = rng.choice(("-" * rng.randint(1, 2000), "a" * rng.randint(1, 2000), "*" * 500, "x-" * 500))
    return call_request("policies", f"Encrypt against the games key with a {len(value)}-character context value", "Encrypt",
                 {"KeyId": targets.policy_games_key, "Plaintext": b64(b"p"), "EncryptionContext": {"file": value}},
                 rng, may_succeed=True, signed=0.95)
