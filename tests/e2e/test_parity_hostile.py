"""Attacks on this issue's features (decisions 89-91): another account cannot make, use or read this account's
AWS managed keys, read its keys' last use or delete their imported material; concurrent first uses of a managed
alias make one key."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.helpers import create_key, error_code, keyledger
from tests.e2e.test_aws_managed_keys import via
from tests.e2e.test_imported_materials import DOES_NOT_EXPIRE, decrypts, external_key
from tests.e2e.test_lifecycle_import import import_material
from tests.servers import ACCOUNT_ID

OTHER = "444455556666"
EVE = f"arn:aws:iam::{OTHER}:user/eve"
EVERYTHING = json.dumps({"Version": "2012-10-17",
                         "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})


@pytest.fixture(scope="module")
def eve(shared_server, tmp_path_factory) -> Any:
    """A user of another account whose own identity policy allows every KMS action on every resource."""
    policy = tmp_path_factory.mktemp("eve") / "everything.json"
    policy.write_text(EVERYTHING)
    keyledger(shared_server, "principals", "create", EVE)
    keyledger(shared_server, "principals", "attach-policy", EVE, "--name", "everything", "--policy-file", str(policy))
    made = json.loads(keyledger(shared_server, "access-keys", "create", "--principal", EVE, "--json"))["AccessKey"]
    return lambda: shared_server.client(key_id=made["AccessKeyId"], secret=made["SecretAccessKey"])


def test_another_account_cannot_make_use_or_read_our_managed_key(shared_server, eve):
    ours = f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:alias/aws/lambda"
    # Naming our reserved alias makes nothing in our account.
    assert error_code(eve().describe_key, KeyId=ours) == "NotFoundException"
    kms = shared_server.client()
    # ListAliases shows it as AWS shows a predefined alias not yet associated with a key: no TargetKeyId.
    assert not {a.get("TargetKeyId") for a in kms.list_aliases(Limit=1000)["Aliases"]
                if a["AliasName"] == "alias/aws/lambda"} - {None}
    made = kms.describe_key(KeyId="alias/aws/lambda")["KeyMetadata"]
    # Through the service or not, our key is not theirs: the policy names our account.
    assert error_code(via(eve(), "lambda").encrypt, KeyId=made["Arn"], Plaintext=b"x") == "AccessDeniedException"
    assert error_code(eve().describe_key, KeyId=made["Arn"]) == "AccessDeniedException"
    # Their own reserved alias makes their own key.
    theirs = via(eve(), "lambda").encrypt(KeyId="alias/aws/lambda", Plaintext=b"x")["KeyId"]
    assert f":{OTHER}:" in theirs and theirs != made["Arn"]


def test_another_account_cannot_read_last_use_or_delete_material(shared_server, eve):
    kms = shared_server.client()
    key = external_key(kms)
    import_material(kms, key, os.urandom(32), **DOES_NOT_EXPIRE)
    blob = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/{key}"
    assert error_code(eve().get_key_last_usage, KeyId=arn) == "AccessDeniedException"
    assert error_code(eve().delete_imported_key_material, KeyId=arn) == "AccessDeniedException"
    assert error_code(eve().delete_imported_key_material, KeyId=arn, KeyMaterialId="0" * 64) == \
        "AccessDeniedException"
    assert decrypts(kms, blob)
    assert kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]["Operation"] == "Decrypt"  # theirs counted nothing


def test_concurrent_first_uses_make_one_managed_key(shared_server):
    region = "ca-central-1"

    def first_use(_: int) -> str:
        return shared_server.client(region).describe_key(KeyId="alias/aws/sns")["KeyMetadata"]["KeyId"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = set(pool.map(first_use, range(8)))
    assert len(made) == 1
    kms = shared_server.client(region)
    managed = [k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]
               if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyManager"] == "AWS"]
    assert managed == list(made)
    assert create_key(kms)["KeyManager"] == "CUSTOMER"
