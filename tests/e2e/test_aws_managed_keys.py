"""AWS managed keys end to end on SQLite and PostgreSQL (decision 91): the first use of alias/aws/<service> makes
the account's key for the service in that Region, KeyManager AWS, with AWS's standard policy; callers use it through
the service (the X-Keyledger-Via-Service header, signed), read it, but cannot change, disable, delete or rotate it;
it rotates every year by itself; history and replay cover it."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.e2e.helpers import advance_days, code, error_code, keyledger, maintenance
from tests.e2e.test_query_api import get
from tests.servers import ACCOUNT_ID


def via(client: Any, service: str) -> Any:
    """The client's requests say they come through ``service`` (the header is signed with them)."""
    def add(request: Any, **_: Any) -> None:
        request.headers["X-Keyledger-Via-Service"] = service
    client.meta.events.register("before-sign.kms.*", add)
    return client


def test_generate_data_key_through_s3_makes_the_managed_key(shared_server):
    kms, s3 = shared_server.client("eu-west-1"), via(shared_server.client("eu-west-1"), "s3")
    made = s3.generate_data_key(KeyId="alias/aws/s3", KeySpec="AES_256")
    assert s3.decrypt(CiphertextBlob=made["CiphertextBlob"])["Plaintext"] == made["Plaintext"]
    meta = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    assert made["KeyId"] == meta["Arn"] and ":eu-west-1:" in meta["Arn"]
    assert meta["KeyManager"] == "AWS" and meta["KeyState"] == "Enabled"
    assert meta["Description"] == "Default key that protects my S3 objects when no other key is defined"
    # The same key every time: made once.
    assert s3.encrypt(KeyId="alias/aws/s3", Plaintext=b"x")["KeyId"] == meta["Arn"]
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases(KeyId=meta["KeyId"])["Aliases"]}
    assert aliases == {"alias/aws/s3": meta["KeyId"]}
    assert meta["KeyId"] in {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    # Without the service, the account's principals may read it but not use it (AWS's policy).
    assert error_code(kms.encrypt, KeyId="alias/aws/s3", Plaintext=b"x") == "AccessDeniedException"
    # Through another service neither.
    assert error_code(via(shared_server.client("eu-west-1"), "ebs").encrypt, KeyId="alias/aws/s3",
                      Plaintext=b"x") == "AccessDeniedException"


def test_describe_key_makes_it_with_the_standard_policy_and_yearly_rotation(shared_server):
    kms = shared_server.client("us-west-2")
    meta = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    policy = json.loads(kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")["Policy"])
    use, read = policy["Statement"]
    assert use["Condition"]["StringEquals"] == {"kms:CallerAccount": ACCOUNT_ID,
                                                "kms:ViaService": "ebs.us-west-2.amazonaws.com"}
    assert read["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    status = kms.get_key_rotation_status(KeyId=meta["KeyId"])
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 365
    # A Region has its own: another Region's is another key.
    assert shared_server.client("us-east-2").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["KeyId"] != \
        meta["KeyId"]
    # Services keyledger makes no key for, and other accounts' aliases, are not found.
    assert error_code(kms.describe_key, KeyId="alias/aws/no-such-service") == "NotFoundException"


def test_nobody_changes_disables_deletes_or_rotates_it_by_hand(shared_server):
    kms = shared_server.client("ap-south-1")
    key = kms.describe_key(KeyId="alias/aws/rds")["KeyMetadata"]["KeyId"]
    refused = [(kms.disable_key, {}), (kms.enable_key, {}), (kms.schedule_key_deletion, {"PendingWindowInDays": 7}),
               (kms.put_key_policy, {"PolicyName": "default", "Policy": json.dumps({"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]})}),
               (kms.enable_key_rotation, {}), (kms.disable_key_rotation, {}), (kms.rotate_key_on_demand, {}),
               (kms.update_key_description, {"Description": "mine"}),
               (kms.tag_resource, {"Tags": [{"TagKey": "k", "TagValue": "v"}]})]
    for call, extra in refused:
        assert error_code(call, KeyId=key, **extra) == "AccessDeniedException", call
    assert error_code(kms.update_alias, AliasName="alias/aws/rds", TargetKeyId=key) in (
        "AccessDeniedException", "NotFoundException")
    assert error_code(kms.delete_alias, AliasName="alias/aws/rds") == "AccessDeniedException"
    assert error_code(kms.create_alias, AliasName="alias/aws/rds2", TargetKeyId=key) == "InvalidAliasNameException"
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_bad_via_service_header_is_refused(shared_server):
    client = via(shared_server.client(), "S3 please")
    try:
        client.encrypt(KeyId="alias/aws/s3", Plaintext=b"x")
    except Exception as refused:  # noqa: BLE001 - the code is what is checked
        assert code(refused) == "ValidationException"
    else:
        raise AssertionError("a malformed via-service header was accepted")


def test_it_rotates_every_year_and_history_and_replay_cover_it(servers):
    server = servers.start()
    kms, sqs = server.client(), via(server.client(), "sqs")
    blob = sqs.encrypt(KeyId="alias/aws/sqs", Plaintext=b"kept")["CiphertextBlob"]
    key = kms.describe_key(KeyId="alias/aws/sqs")["KeyMetadata"]["KeyId"]
    advance_days(server, 366)
    assert key in maintenance(server)["rotated"]
    assert len(kms.list_key_rotations(KeyId=key)["Rotations"]) == 1
    assert sqs.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    at = get(server, f"/v1/keys/{quote('alias/aws/sqs', safe='')}").json()
    assert at["KeyMetadata"]["KeyManager"] == "AWS"
    keyledger(server, "replay")
    assert keyledger(server, "audit", "verify").strip()  # the service's CreateKey record claims the key and alias
