"""Multi-Region keys end to end, with boto3 and the AWS CLI, across three Regions of one server (decisions 155-164):
a primary with an mrk- id, replicas with the same id and material but their own policy, tags, description and
state; ciphertext made in any Region decrypts in every other; rotating the primary rotates every replica; the
primary moves; replicas are deleted, then the primary, whose waiting period starts only then."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.helpers import advance_days, code, create_key, error_code, key_arn, maintenance
from tests.e2e.test_lifecycle_import import import_material
from tests.servers import ACCOUNT_ID, Server

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-2"
CONTEXT = {"purpose": "multi-region"}
AWS = Path(sys.executable).parent / "aws"


def configuration(kms: Any, key_id: str) -> dict[str, Any]:
    return kms.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]


def entry(key_id: str, region: str) -> dict[str, str]:
    return {"Arn": key_arn(key_id, region), "Region": region}


def aws_cli(server: Server, region: str, *args: str) -> Any:
    out = subprocess.run([str(AWS), "kms", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                         env=server.cli_env(region), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_multi_region_life_cycle_across_three_regions(shared_server: Server) -> None:
    us, eu, ap = (shared_server.client(region) for region in (US, EU, AP))
    meta = create_key(us, MultiRegion=True, Description="primary")
    key_id = meta["KeyId"]
    assert re.fullmatch(r"mrk-[0-9a-f]{32}", key_id) and meta["Arn"] == key_arn(key_id, US)
    assert meta["MultiRegion"] is True
    assert meta["MultiRegionConfiguration"] == {"MultiRegionKeyType": "PRIMARY", "PrimaryKey": entry(key_id, US),
                                                "ReplicaKeys": []}
    made_in_us = us.encrypt(KeyId=key_id, Plaintext=b"made in us-east-1", EncryptionContext=CONTEXT)["CiphertextBlob"]

    # ReplicateKey: same key id, its own description and tags, the default policy; refused twice, or from a replica.
    made = us.replicate_key(KeyId=key_id, ReplicaRegion=EU, Description="replica in eu",
                            Tags=[{"TagKey": "site", "TagValue": "eu"}])
    replica = made["ReplicaKeyMetadata"]
    assert (replica["KeyId"], replica["Arn"], replica["KeyState"]) == (key_id, key_arn(key_id, EU), "Enabled")
    assert replica["Description"] == "replica in eu" and made["ReplicaTags"] == [{"TagKey": "site", "TagValue": "eu"}]
    assert replica["MultiRegionConfiguration"] == {"MultiRegionKeyType": "REPLICA", "PrimaryKey": entry(key_id, US),
                                                   "ReplicaKeys": [entry(key_id, EU)]}
    assert "Statement" in json.loads(made["ReplicaPolicy"])
    assert error_code(us.replicate_key, KeyId=key_id, ReplicaRegion=EU) == "AlreadyExistsException"
    assert error_code(eu.replicate_key, KeyId=key_id, ReplicaRegion=AP) == "UnsupportedOperationException"
    assert error_code(us.replicate_key, KeyId=key_id, ReplicaRegion=US) == "ValidationException"
    us.replicate_key(KeyId=key_id, ReplicaRegion=AP)
    expected = [entry(key_id, AP), entry(key_id, EU)]
    assert [configuration(c, key_id)["ReplicaKeys"] for c in (us, eu, ap)] == [expected] * 3

    # Ciphertext made under any related key decrypts under every other.
    for client, region in ((eu, EU), (ap, AP)):
        answer = client.decrypt(CiphertextBlob=made_in_us, EncryptionContext=CONTEXT)
        assert answer["Plaintext"] == b"made in us-east-1" and answer["KeyId"] == key_arn(key_id, region)
    made_in_ap = ap.encrypt(KeyId=key_id, Plaintext=b"made in ap", EncryptionContext=CONTEXT)["CiphertextBlob"]
    assert us.decrypt(CiphertextBlob=made_in_ap, EncryptionContext=CONTEXT, KeyId=key_id)["Plaintext"] == b"made in ap"

    # Enabled state, tags and policy are each key's own.
    eu.disable_key(KeyId=key_id)
    assert error_code(eu.decrypt, CiphertextBlob=made_in_us, EncryptionContext=CONTEXT) == "DisabledException"
    assert us.decrypt(CiphertextBlob=made_in_us, EncryptionContext=CONTEXT)["Plaintext"] == b"made in us-east-1"
    eu.enable_key(KeyId=key_id)
    assert us.list_resource_tags(KeyId=key_id)["Tags"] == [] and len(eu.list_resource_tags(KeyId=key_id)["Tags"]) == 1

    # Rotation is the primary's to manage; rotating it rotates every replica to the same material.
    assert error_code(ap.enable_key_rotation, KeyId=key_id) == "UnsupportedOperationException"
    assert error_code(eu.rotate_key_on_demand, KeyId=key_id) == "UnsupportedOperationException"
    us.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    assert ap.get_key_rotation_status(KeyId=key_id)["RotationPeriodInDays"] == 90
    us.rotate_key_on_demand(KeyId=key_id)
    rotations = [[r["KeyMaterialId"] for r in c.list_key_rotations(KeyId=key_id)["Rotations"]] for c in (us, eu, ap)]
    assert len(rotations[0]) == 1 and rotations == [rotations[0]] * 3
    current = {c.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] for c in (us, eu, ap)}
    assert current == set(rotations[0])
    rotated = us.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert ap.decrypt(CiphertextBlob=rotated["CiphertextBlob"])["KeyMaterialId"] == rotations[0][0]
    assert ap.decrypt(CiphertextBlob=made_in_us, EncryptionContext=CONTEXT)["Plaintext"] == b"made in us-east-1"

    # UpdatePrimaryRegion: every related key agrees on the new primary at once.
    us.update_primary_region(KeyId=key_id, PrimaryRegion=EU)
    for client in (us, eu, ap):
        config = configuration(client, key_id)
        assert config["PrimaryKey"] == entry(key_id, EU) and config["ReplicaKeys"] == [entry(key_id, AP),
                                                                                        entry(key_id, US)]
    assert configuration(eu, key_id)["MultiRegionKeyType"] == "PRIMARY"
    assert error_code(us.update_primary_region, KeyId=key_id, PrimaryRegion=AP) == "UnsupportedOperationException"

    # Deletion: the primary waits for its replicas (PendingReplicaDeletion, no date yet), then its window starts.
    scheduled = eu.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in scheduled
    described = eu.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described["PendingDeletionWindowInDays"] == 7 and "DeletionDate" not in described
    assert error_code(eu.decrypt, CiphertextBlob=made_in_us, EncryptionContext=CONTEXT) == "KMSInvalidStateException"
    assert eu.cancel_key_deletion(KeyId=key_id)["KeyId"] == key_arn(key_id, EU)
    assert eu.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    eu.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    for client in (us, ap):
        assert client.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["KeyState"] == "PendingDeletion"
    advance_days(shared_server, 8)
    maintenance(shared_server)
    for client in (us, ap):
        with pytest.raises(ClientError) as gone:
            client.describe_key(KeyId=key_id)
        assert code(gone.value) == "NotFoundException"
    primary = eu.describe_key(KeyId=key_id)["KeyMetadata"]
    assert primary["KeyState"] == "PendingDeletion" and "DeletionDate" in primary
    assert primary["MultiRegionConfiguration"]["ReplicaKeys"] == []
    advance_days(shared_server, 8)
    maintenance(shared_server)
    assert error_code(eu.describe_key, KeyId=key_id) == "NotFoundException"


def test_asymmetric_and_hmac_keys_replicated_with_the_aws_cli(shared_server: Server) -> None:
    if not AWS.exists():
        pytest.skip(f"the AWS CLI is not installed next to {sys.executable}")
    us, eu = shared_server.client(US), shared_server.client(EU)
    signing = create_key(us, MultiRegion=True, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyId"]
    mac = create_key(us, MultiRegion=True, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyId"]
    made = aws_cli(shared_server, US, "replicate-key", "--key-id", signing, "--replica-region", EU)
    assert made["ReplicaKeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "kms:*",
        "Resource": "*"}]})
    us.replicate_key(KeyId=mac, ReplicaRegion=EU, Policy=policy, BypassPolicyLockoutSafetyCheck=False)
    assert json.loads(eu.get_key_policy(KeyId=mac)["Policy"]) == json.loads(policy)

    signature = us.sign(KeyId=signing, Message=b"signed in us", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    assert eu.verify(KeyId=signing, Message=b"signed in us", Signature=signature,
                     SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"] is True
    assert us.get_public_key(KeyId=signing)["PublicKey"] == eu.get_public_key(KeyId=signing)["PublicKey"]
    tag = eu.generate_mac(KeyId=mac, Message=b"in eu", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert us.verify_mac(KeyId=mac, Message=b"in eu", Mac=tag, MacAlgorithm="HMAC_SHA_256")["MacValid"] is True

    aws_cli(shared_server, US, "update-primary-region", "--key-id", signing, "--primary-region", EU)
    described = aws_cli(shared_server, EU, "describe-key", "--key-id", signing)["KeyMetadata"]
    assert described["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
    assert described["MultiRegionConfiguration"]["ReplicaKeys"] == [entry(signing, US)]


def test_imported_material_is_imported_into_each_replica(shared_server: Server) -> None:
    us, eu = shared_server.client(US), shared_server.client(EU)
    key_id = create_key(us, MultiRegion=True, Origin="EXTERNAL")["KeyId"]
    material = os.urandom(32)
    import_material(us, key_id, material, ImportType="NEW_KEY_MATERIAL")
    replica = us.replicate_key(KeyId=key_id, ReplicaRegion=EU)["ReplicaKeyMetadata"]
    assert replica["KeyState"] == "PendingImport" and replica["Origin"] == "EXTERNAL"
    blob = us.encrypt(KeyId=key_id, Plaintext=b"imported")["CiphertextBlob"]
    assert error_code(eu.decrypt, CiphertextBlob=blob) == "KMSInvalidStateException"

    # Only the primary's material: new material is refused, other bytes are not this key's material.
    with pytest.raises(ClientError) as refused:
        import_material(eu, key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL")
    assert code(refused.value) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as wrong:
        import_material(eu, key_id, os.urandom(32))
    assert code(wrong.value) == "IncorrectKeyMaterialException"
    imported = import_material(eu, key_id, material)
    assert imported["KeyMaterialId"] == us.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert eu.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert eu.decrypt(CiphertextBlob=blob)["Plaintext"] == b"imported"
    # Deleting the replica's material leaves the primary as it was.
    eu.delete_imported_key_material(KeyId=key_id)
    assert eu.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"imported"
