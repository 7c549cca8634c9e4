"""Authorization end to end: a table of policy scenarios, each run with boto3 under its own principal's
credentials against a real server, on SQLite and PostgreSQL.

Each scenario gets a fresh key (its key policy), a fresh caller (its identity policies and access key, made
through the same service `keyledger principals` / `keyledger access-keys` use, on the server's database),
optionally a grant made by the key's administrator, and then one call whose outcome is asserted: allowed, or
refused with AccessDeniedException in AWS's message shape, with the refusal in the audit log.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from application.principals.audit import Operator
from infrastructure.bootstrap import build_runtime
from infrastructure.settings import Settings
from tests.e2e.test_audit_support import export_jsonl
from tests.e2e.test_query_api import get
from tests.servers import ACCOUNT_ID as A
from tests.servers import Server

B = "444455556666"
OPERATOR = Operator(user="tests", host="localhost")
ROOT_A = f"arn:aws:iam::{A}:root"
ADMIN = {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": ROOT_A}, "Action": "kms:*", "Resource": "*"}
FUTURE = (datetime.now(tz=timezone.utc) + timedelta(days=3650)).strftime("%Y-%m-%dT%H:%M:%SZ")
PAST = "2020-01-01T00:00:00Z"


def allow(principal: Any, action: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": action, "Resource": "*", **extra}


def deny(principal: Any, action: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": {"AWS": principal}, "Action": action, "Resource": "*", **extra}


def iam(action: Any, resource: Any = "*", effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **extra}


@dataclass
class Scenario:
    name: str
    operation: str  # a key in OPERATIONS
    allowed: bool
    caller: str = "user"  # user | role | root | b-root | b-user
    key_policy: list[dict[str, Any]] | None = None  # None: AWS's default key policy
    identity: list[dict[str, Any]] = field(default_factory=list)
    grant: dict[str, Any] | None = None  # CreateGrant arguments besides KeyId and GranteePrincipal
    key: str = "symmetric"  # symmetric | rsa-sign | hmac
    ref: str = "id"  # how the caller names the key: id | arn | alias | alias-arn
    context: dict[str, str] | None = None
    message: str | None = None  # a fragment the denial message must hold


S = Scenario
SCENARIOS = [
    # -- the default key policy delegates to IAM ------------------------------------------------------
    S("root is allowed by the default key policy", "Encrypt", True, caller="root"),
    S("user without identity policy: delegation has nothing to delegate to", "Encrypt", False,
      message="because no resource-based policy allows the kms:Encrypt action"),
    S("identity policy allows the key", "Encrypt", True, identity=[iam("kms:Encrypt", "{KEY}")]),
    S("identity policy allows every key", "Encrypt", True, identity=[iam("kms:*")]),
    S("identity policy names another key", "Encrypt", False,
      identity=[iam("kms:Encrypt", f"arn:aws:kms:us-east-1:{A}:key/00000000-0000-0000-0000-000000000000")]),
    S("identity policy allows another action only", "Encrypt", False, identity=[iam("kms:Decrypt")]),
    S("identity wildcard action", "GenerateDataKey", True, identity=[iam("kms:GenerateDataKey*")]),
    S("identity NotAction", "Encrypt", True, identity=[{"Effect": "Allow", "NotAction": "kms:Decrypt", "Resource": "*"}]),
    S("identity explicit deny beats identity allow", "Encrypt", False,
      identity=[iam("kms:*"), iam("kms:Encrypt", effect="Deny")],
      message="with an explicit deny in an identity-based policy"),
    # -- the key policy alone -------------------------------------------------------------------------
    S("key policy names the user", "Encrypt", True, key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt")]),
    S("key policy without the account: identity policy cannot help", "Encrypt", False,
      key_policy=[allow("{CALLER}", "kms:Decrypt")], identity=[iam("kms:*")]),
    S("key policy explicit deny beats identity allow", "Encrypt", False,
      key_policy=[ADMIN, deny("{CALLER}", "kms:Encrypt")], identity=[iam("kms:*")],
      message="with an explicit deny in a resource-based policy"),
    S("key policy deny naming the account covers its users", "Encrypt", False,
      key_policy=[ADMIN, allow("{CALLER}", "kms:*"), deny(A, "kms:Encrypt")]),
    S("key policy principal *", "DescribeKey", True, key_policy=[ADMIN, allow("*", "kms:DescribeKey")]),
    S("NotPrincipal deny exempts the listed user and account", "Encrypt", True,
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt"),
                  {"Effect": "Deny", "NotPrincipal": {"AWS": ["{CALLER}", ROOT_A]}, "Action": "kms:*", "Resource": "*"}]),
    S("NotPrincipal deny covers everyone else", "Encrypt", False,
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt"),
                  {"Effect": "Deny", "NotPrincipal": {"AWS": ROOT_A}, "Action": "kms:Encrypt", "Resource": "*"}]),
    S("role ARN in the key policy covers its sessions", "Encrypt", True, caller="role",
      key_policy=[ADMIN, allow("{ROLE}", "kms:Encrypt")]),
    S("role with identity policy", "Decrypt", True, caller="role", identity=[iam("kms:Decrypt")]),
    # -- condition keys and operators -----------------------------------------------------------------
    S("kms:EncryptionContext StringEquals, matching", "Encrypt", True, context={"app": "web"},
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"StringEquals": {"kms:EncryptionContext:app": "web"}})]),
    S("kms:EncryptionContext StringEquals, other value", "Encrypt", False, context={"app": "batch"},
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"StringEquals": {"kms:EncryptionContext:app": "web"}})]),
    S("kms:EncryptionContextKeys ForAllValues", "Encrypt", False, context={"app": "web", "extra": "x"},
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["app"]}})]),
    S("kms:EncryptionContextKeys ForAnyValue", "Encrypt", True, context={"app": "web", "extra": "x"},
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["app"]}})]),
    S("Null: an encryption context is required", "Encrypt", False,
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"Null": {"kms:EncryptionContextKeys": "false"}})]),
    S("StringLike on the encryption context", "Encrypt", True, context={"tenant": "acme-42"},
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"StringLike": {"kms:EncryptionContext:tenant": "acme-*"}})]),
    S("StringEqualsIgnoreCase", "Encrypt", True, context={"app": "WEB"},
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"StringEqualsIgnoreCase": {"kms:EncryptionContext:app": "web"}})]),
    S("StringNotEquals", "Encrypt", False, context={"app": "web"},
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"StringNotEquals": {"kms:EncryptionContext:app": "web"}})]),
    S("StringEqualsIfExists with the key absent", "Encrypt", True,
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt",
                               Condition={"StringEqualsIfExists": {"kms:EncryptionContext:app": "web"}})]),
    S("kms:CallerAccount", "Encrypt", True,
      key_policy=[ADMIN, allow("*", "kms:Encrypt", Condition={"StringEquals": {"kms:CallerAccount": A}})]),
    S("kms:CallerAccount of another account", "Encrypt", False,
      key_policy=[ADMIN, allow("*", "kms:Encrypt", Condition={"StringEquals": {"kms:CallerAccount": B}})]),
    S("kms:KeySpec", "Encrypt", True, identity=[
        iam("kms:Encrypt", Condition={"StringEquals": {"kms:KeySpec": "SYMMETRIC_DEFAULT"}})]),
    S("kms:KeyUsage mismatch", "Encrypt", False, identity=[
        iam("kms:Encrypt", Condition={"StringEquals": {"kms:KeyUsage": "SIGN_VERIFY"}})]),
    S("kms:KeyOrigin", "Encrypt", True, identity=[
        iam("kms:Encrypt", Condition={"StringEquals": {"kms:KeyOrigin": "AWS_KMS"}})]),
    S("kms:EncryptionAlgorithm", "Encrypt", True, identity=[
        iam("kms:Encrypt", Condition={"StringEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}})]),
    S("kms:SigningAlgorithm allows PSS", "Sign", True, key="rsa-sign", identity=[
        iam("kms:Sign", Condition={"StringLike": {"kms:SigningAlgorithm": "RSASSA_PSS_*"}})]),
    S("kms:SigningAlgorithm refuses PKCS1", "Sign", False, key="rsa-sign", identity=[
        iam("kms:Sign", Condition={"StringEquals": {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"}})]),
    S("kms:MacAlgorithm", "GenerateMac", True, key="hmac", identity=[
        iam("kms:GenerateMac", Condition={"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_256"}})]),
    S("kms:RotationPeriodInDays NumericLessThanEquals", "EnableKeyRotation", True, identity=[
        iam("kms:EnableKeyRotation", Condition={"NumericLessThanEquals": {"kms:RotationPeriodInDays": 180}})]),
    S("kms:RotationPeriodInDays too long", "EnableKeyRotation", False, identity=[
        iam("kms:EnableKeyRotation", Condition={"NumericLessThanEquals": {"kms:RotationPeriodInDays": 90}})]),
    S("kms:RequestAlias: by alias", "Encrypt", True, ref="alias", identity=[
        iam("kms:Encrypt", Condition={"StringLike": {"kms:RequestAlias": "alias/scenario-*"}})]),
    S("kms:RequestAlias: by key id", "Encrypt", False, identity=[
        iam("kms:Encrypt", Condition={"StringLike": {"kms:RequestAlias": "alias/scenario-*"}})]),
    S("kms:ResourceAliases", "Encrypt", True, ref="alias", identity=[
        iam("kms:Encrypt", Condition={"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/scenario-*"}})]),
    S("aliases resolve before evaluation: the key's policy applies", "Encrypt", False, ref="alias",
      key_policy=[ADMIN, deny("{CALLER}", "kms:Encrypt")], identity=[iam("kms:*")]),
    S("aws:SourceIp IpAddress", "Encrypt", True, identity=[
        iam("kms:Encrypt", Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})]),
    S("aws:SourceIp NotIpAddress", "Encrypt", False, identity=[
        iam("kms:Encrypt", Condition={"NotIpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}})]),
    S("aws:PrincipalArn ArnLike", "Encrypt", True,
      key_policy=[ADMIN, allow("*", "kms:Encrypt", Condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{A}:user/*"}})]),
    S("aws:PrincipalArn ArnEquals another user", "Encrypt", False,
      key_policy=[ADMIN, allow("*", "kms:Encrypt", Condition={"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{A}:user/nobody"}})]),
    S("aws:PrincipalAccount", "Encrypt", True,
      key_policy=[ADMIN, allow("*", "kms:Encrypt", Condition={"StringEquals": {"aws:PrincipalAccount": A}})]),
    S("aws:SecureTransport false is denied (plain HTTP)", "Encrypt", False,
      key_policy=[ADMIN, allow("{CALLER}", "kms:Encrypt"),
                  deny("*", "kms:Encrypt", Condition={"Bool": {"aws:SecureTransport": "false"}})]),
    S("aws:CurrentTime DateLessThan the future", "Encrypt", True, identity=[
        iam("kms:Encrypt", Condition={"DateLessThan": {"aws:CurrentTime": FUTURE}})]),
    S("aws:CurrentTime DateLessThan the past", "Encrypt", False, identity=[
        iam("kms:Encrypt", Condition={"DateLessThan": {"aws:CurrentTime": PAST}})]),
    S("StringNotLike", "Encrypt", False, context={"tenant": "acme-1"}, key_policy=[
        ADMIN, allow("{CALLER}", "kms:Encrypt", Condition={"StringNotLike": {"kms:EncryptionContext:tenant": "acme-*"}})]),
    S("kms:GrantOperations limits what may be granted", "CreateGrant", False, identity=[
        iam("kms:CreateGrant", Condition={"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}})]),
    S("kms:GrantIsForAWSResource", "CreateGrant", False, identity=[
        iam("kms:CreateGrant", Condition={"Bool": {"kms:GrantIsForAWSResource": "true"}})]),
    S("kms:GrantOperations allows the subset", "CreateGrant", True, identity=[
        iam("kms:CreateGrant", Condition={"ForAllValues:StringEquals": {"kms:GrantOperations": ["Encrypt", "Decrypt"]}})]),
    # -- grants ---------------------------------------------------------------------------------------
    S("grant allows with no policy", "Encrypt", True, grant={"Operations": ["Encrypt"]}),
    S("grant for another operation", "Decrypt", False, grant={"Operations": ["Encrypt"]}),
    S("grant EncryptionContextEquals, equal", "Encrypt", True, context={"app": "web"},
      grant={"Operations": ["Encrypt"], "Constraints": {"EncryptionContextEquals": {"app": "web"}}}),
    S("grant EncryptionContextEquals, a superset", "Encrypt", False, context={"app": "web", "x": "y"},
      grant={"Operations": ["Encrypt"], "Constraints": {"EncryptionContextEquals": {"app": "web"}}}),
    S("grant EncryptionContextSubset, a superset", "Encrypt", True, context={"app": "web", "x": "y"},
      grant={"Operations": ["Encrypt"], "Constraints": {"EncryptionContextSubset": {"app": "web"}}}),
    S("grant EncryptionContextSubset, missing pair", "Encrypt", False, context={"x": "y"},
      grant={"Operations": ["Encrypt"], "Constraints": {"EncryptionContextSubset": {"app": "web"}}}),
    S("grant does not survive an explicit deny", "Encrypt", False, grant={"Operations": ["Encrypt"]},
      key_policy=[ADMIN, deny("{CALLER}", "kms:Encrypt")]),
    # -- cross-account --------------------------------------------------------------------------------
    S("cross-account root, key policy names the account", "Encrypt", True, caller="b-root", ref="arn",
      key_policy=[ADMIN, allow(B, "kms:Encrypt")]),
    S("cross-account by alias ARN", "Encrypt", True, caller="b-root", ref="alias-arn",
      key_policy=[ADMIN, allow(f"arn:aws:iam::{B}:root", ["kms:Encrypt", "kms:DescribeKey"])]),
    S("cross-account user needs its own identity policy", "Encrypt", False, caller="b-user", ref="arn",
      key_policy=[ADMIN, allow(B, "kms:Encrypt")]),
    S("cross-account user with identity policy", "Encrypt", True, caller="b-user", ref="arn",
      key_policy=[ADMIN, allow(B, "kms:Encrypt")], identity=[iam("kms:Encrypt", f"arn:aws:kms:*:{A}:key/*")]),
    S("cross-account, key policy silent", "Encrypt", False, caller="b-root", ref="arn"),
    S("cross-account DisableKey is never allowed", "DisableKey", False, caller="b-root", ref="arn",
      key_policy=[ADMIN, allow(B, "kms:*")], message="kms:DisableKey"),
    # -- operations without a key ---------------------------------------------------------------------
    S("CreateKey without identity policy", "CreateKey", False,
      message="because no identity-based policy allows the kms:CreateKey action"),
    S("CreateKey with identity policy", "CreateKey", True, identity=[iam("kms:CreateKey")]),
    S("ListKeys with identity policy", "ListKeys", True, identity=[iam("kms:ListKeys")]),
    S("GenerateRandom without identity policy", "GenerateRandom", False),
    S("PutKeyPolicy is refused to a user who may only encrypt", "PutKeyPolicy", False, identity=[iam("kms:Encrypt")]),
]


# -- running a scenario -------------------------------------------------------------------------------

def _client(server: Server, key_id: str, secret: str) -> Any:
    return boto3.client("kms", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


class Directory:
    """Principals, policies and access keys on the server's database, made as the CLI makes them."""

    def __init__(self, server: Server) -> None:
        settings = Settings.load(data_dir=server.data_dir, database_url=server.database_url)
        self.runtime = build_runtime(settings)
        assert self.runtime.services is not None, self.runtime.sealed_reason
        self.admin = self.runtime.services.principal_admin

    def access_key(self, arn: str, statements: list[dict[str, Any]]) -> Any:
        if not arn.endswith(":root"):
            self.admin.create_principal(arn, OPERATOR)
        if statements:
            document = json.dumps({"Version": "2012-10-17", "Statement": statements})
            self.admin.put_policy(arn, "scenario", document, OPERATOR)
        return self.admin.create_access_key(arn, OPERATOR)

    def caller(self, server: Server, arn: str, statements: list[dict[str, Any]]) -> tuple[Any, str]:
        key = self.access_key(arn, statements)
        return _client(server, key.access_key_id, key.secret), key.acts_as

    def close(self) -> None:
        self.runtime.close()


@pytest.fixture(scope="module")
def world(shared_server: Server) -> Iterator[tuple[Server, Directory, Any]]:
    directory = Directory(shared_server)
    b_root, _ = directory.caller(shared_server, f"arn:aws:iam::{B}:root", [])
    try:
        yield shared_server, directory, b_root
    finally:
        directory.close()


def _substitute(statements: list[dict[str, Any]], values: dict[str, str]) -> list[dict[str, Any]]:
    text = json.dumps(statements)
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return json.loads(text)


_KEY_ARGS = {"symmetric": {}, "rsa-sign": {"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"},
             "hmac": {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}}


def _call(operation: str, client: Any, admin: Any, ref: str, key_arn: str, context: dict[str, str] | None) -> Any:
    ec = {"EncryptionContext": context} if context else {}
    calls: dict[str, Callable[[], Any]] = {
        "Encrypt": lambda: client.encrypt(KeyId=ref, Plaintext=b"secret", **ec),
        "Decrypt": lambda: client.decrypt(
            CiphertextBlob=admin.encrypt(KeyId=key_arn, Plaintext=b"secret", **ec)["CiphertextBlob"], **ec),
        "GenerateDataKey": lambda: client.generate_data_key(KeyId=ref, KeySpec="AES_256", **ec),
        "DescribeKey": lambda: client.describe_key(KeyId=ref),
        "DisableKey": lambda: client.disable_key(KeyId=ref),
        "Sign": lambda: client.sign(KeyId=ref, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256"),
        "GenerateMac": lambda: client.generate_mac(KeyId=ref, Message=b"m", MacAlgorithm="HMAC_SHA_256"),
        "EnableKeyRotation": lambda: client.enable_key_rotation(KeyId=ref, RotationPeriodInDays=180),
        "CreateGrant": lambda: client.create_grant(KeyId=ref, GranteePrincipal=f"arn:aws:iam::{A}:user/other",
                                                   Operations=["Encrypt", "Decrypt"]),
        "CreateKey": lambda: client.create_key(),
        "ListKeys": lambda: client.list_keys(),
        "GenerateRandom": lambda: client.generate_random(NumberOfBytes=8),
        "PutKeyPolicy": lambda: client.put_key_policy(KeyId=ref, PolicyName="default", Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": [ADMIN]})),
    }
    return calls[operation]()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(world: tuple[Server, Directory, Any], scenario: Scenario) -> None:
    server, directory, b_root = world
    admin = server.client()
    tag = uuid.uuid4().hex[:10]
    caller_arn = {"user": f"arn:aws:iam::{A}:user/u-{tag}", "role": f"arn:aws:iam::{A}:role/r-{tag}",
                  "root": ROOT_A, "b-root": f"arn:aws:iam::{B}:root", "b-user": f"arn:aws:iam::{B}:user/u-{tag}"}
    arn = caller_arn[scenario.caller]
    if scenario.caller == "root":
        client, acts_as = admin, ROOT_A
    elif scenario.caller == "b-root":
        client, acts_as = b_root, arn
    else:
        identity = _substitute(scenario.identity, {"KEY": f"arn:aws:kms:us-east-1:{A}:key/*"})
        client, acts_as = directory.caller(server, arn, identity)
    meta = admin.create_key(**_KEY_ARGS[scenario.key])["KeyMetadata"]
    key_arn = meta["Arn"]
    alias = f"alias/scenario-{tag}"
    admin.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    ref = {"id": meta["KeyId"], "arn": key_arn, "alias": alias,
           "alias-arn": f"arn:aws:kms:us-east-1:{A}:{alias}"}[scenario.ref]
    if scenario.grant is not None:
        admin.create_grant(KeyId=meta["KeyId"], GranteePrincipal=acts_as, **scenario.grant)
    if scenario.key_policy is not None:  # last: some scenario policies shut the administrator out
        values = {"CALLER": acts_as, "ROLE": arn}
        admin.put_key_policy(KeyId=meta["KeyId"], PolicyName="default", BypassPolicyLockoutSafetyCheck=True,
                             Policy=json.dumps({"Version": "2012-10-17",
                                                "Statement": _substitute(scenario.key_policy, values)}))
    if scenario.allowed:
        _call(scenario.operation, client, admin, ref, key_arn, scenario.context)
        return
    with pytest.raises(ClientError) as info:
        _call(scenario.operation, client, admin, ref, key_arn, scenario.context)
    error = info.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", error
    assert error["Message"].startswith(f"User: {acts_as} is not authorized to perform: kms:"), error["Message"]
    if scenario.message:
        assert scenario.message in error["Message"], error["Message"]


def test_the_table_is_large_enough() -> None:
    assert len(SCENARIOS) >= 40
    assert {s.caller for s in SCENARIOS} >= {"user", "role", "root", "b-root", "b-user"}


def test_an_unknown_condition_operator_is_refused_and_changes_nothing(world: tuple[Server, Directory, Any]) -> None:
    """An unknown operator could never allow (the evaluator's rule, unit-tested); AWS refuses such a policy
    when it is put, so the policy in force stays, and so does the caller's refusal."""
    server, directory, _ = world
    admin = server.client()
    client, acts_as = directory.caller(server, f"arn:aws:iam::{A}:user/u-{uuid.uuid4().hex[:10]}", [])
    key_id = admin.create_key()["KeyMetadata"]["KeyId"]
    before = admin.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    unknown = json.dumps({"Version": "2012-10-17", "Statement": [ADMIN, allow(acts_as, "kms:Encrypt", Condition={
        "StringSortOf": {"kms:EncryptionContext:app": "web"}})]})
    with pytest.raises(ClientError) as refused:
        admin.put_key_policy(KeyId=key_id, PolicyName="default", Policy=unknown)
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert "StringSortOf" in refused.value.response["Error"]["Message"]
    assert admin.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == before
    with pytest.raises(ClientError) as denied:
        client.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"app": "web"})
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"


def test_denials_are_audited_with_the_callers_identity(world: tuple[Server, Directory, Any]) -> None:
    server, directory, _ = world
    admin = server.client()
    client, acts_as = directory.caller(server, f"arn:aws:iam::{A}:user/u-{uuid.uuid4().hex[:10]}", [])
    key = admin.create_key()["KeyMetadata"]
    with pytest.raises(ClientError) as denied:
        client.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    request_id = denied.value.response["ResponseMetadata"]["RequestId"]
    records = [r for r in export_jsonl(server) if r.get("requestID") == request_id]
    assert len(records) == 1
    record = records[0]
    assert record["errorCode"] == "AccessDeniedException"
    assert record["errorMessage"] == denied.value.response["Error"]["Message"]
    assert record["userIdentity"]["arn"] == acts_as and record["userIdentity"]["type"] == "IAMUser"
    assert record["resources"] == [{"accountId": A, "type": "AWS::KMS::Key", "ARN": key["Arn"]}]


def test_a_grant_token_works_at_once_on_another_server_process(world: tuple[Server, Directory, Any],
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two processes on one database: the second has the key row (no grant) cached when the first makes the
    grant; the token makes it read the grants afresh instead of waiting out its cache."""
    server, directory, _ = world
    second = Server(data_dir=server.data_dir, database_url=server.database_url,
                    env={"KEYLEDGER_KEY_CACHE_SECONDS": "60"}).start()
    try:
        key = directory.access_key(f"arn:aws:iam::{A}:user/u-{uuid.uuid4().hex[:10]}", [])
        acts_as, later = key.acts_as, _client(second, key.access_key_id, key.secret)
        admin = server.client()
        key_id = admin.create_key()["KeyMetadata"]["KeyId"]
        with pytest.raises(ClientError):  # caches the key row on the second process
            later.encrypt(KeyId=key_id, Plaintext=b"x")
        token = admin.create_grant(KeyId=key_id, GranteePrincipal=acts_as, Operations=["Encrypt"])["GrantToken"]
        later.encrypt(KeyId=key_id, Plaintext=b"x", GrantTokens=[token])
        with pytest.raises(ClientError) as bad:
            later.encrypt(KeyId=key_id, Plaintext=b"x", GrantTokens=[token[:-4] + "AAAA"])
        assert bad.value.response["Error"]["Code"] == "InvalidGrantTokenException"
    finally:
        second.stop()


def test_who_could_decrypt_at_an_instant_follows_identity_policies(world: tuple[Server, Directory, Any]) -> None:
    """"Who could decrypt with K on date D?": the identity policies in force then decide, and the answer for a
    moment agrees with what requests were told at that moment."""
    server, directory, _ = world
    admin = server.client()
    key_id = admin.create_key()["KeyMetadata"]["KeyId"]
    user = f"arn:aws:iam::{A}:user/u-{uuid.uuid4().hex[:10]}"
    key = directory.access_key(user, [iam("kms:Decrypt")])
    blob = admin.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    _client(server, key.access_key_id, key.secret).decrypt(CiphertextBlob=blob)
    allowed_at = time.time()
    time.sleep(1.1)
    directory.admin.delete_policy(user, "scenario", OPERATOR)
    time.sleep(1.5)  # the server's identity-policy cache
    with pytest.raises(ClientError) as denied:
        _client(server, key.access_key_id, key.secret).decrypt(CiphertextBlob=blob)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    def could(at: float) -> bool:
        answer = get(server, f"/v1/keys/{key_id}/access", operation="Decrypt", at=str(at), principal=user)
        assert answer.status_code == 200, answer.text
        [entry] = answer.json()["Principals"]
        return entry["Allowed"]

    removed_by = time.time()
    assert could(allowed_at)
    assert not could(removed_by)
    everyone = get(server, f"/v1/keys/{key_id}/access", operation="Decrypt", at=str(allowed_at)).json()
    assert {p["Principal"]: p["Allowed"] for p in everyone["Principals"]}[user] is True


def test_the_query_api_answers_whom_iam_lets_ask(world: tuple[Server, Directory, Any]) -> None:
    server, directory, _ = world
    key_id = server.client().create_key()["KeyMetadata"]["KeyId"]

    def ask(key: Any, path: str) -> int:
        request = AWSRequest(method="GET", url=server.endpoint + path)
        SigV4Auth(Credentials(key.access_key_id, key.secret), "kms", "us-east-1").add_auth(request)
        prepared = request.prepare()
        return httpx.get(prepared.url, headers=dict(prepared.headers), timeout=30).status_code

    nobody = directory.access_key(f"arn:aws:iam::{A}:user/u-{uuid.uuid4().hex[:10]}", [])
    reader = directory.access_key(f"arn:aws:iam::{A}:user/u-{uuid.uuid4().hex[:10]}", [
        iam("kms:DescribeKey", f"arn:aws:kms:us-east-1:{A}:key/*"), iam("cloudtrail:LookupEvents")])
    for path in (f"/v1/keys/{key_id}", f"/v1/keys/{key_id}/timeline", "/v1/audit?limit=1", "/v1/keys"):
        assert ask(nobody, path) == 400, path  # AccessDeniedException is a 400 in the KMS protocol
    assert [ask(reader, p) for p in (f"/v1/keys/{key_id}", f"/v1/keys/{key_id}/timeline", "/v1/audit?limit=1")] \
        == [200, 200, 200]
    assert ask(reader, "/v1/keys") == 400  # kms:ListKeys was not granted
