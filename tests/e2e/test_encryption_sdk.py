"""The AWS Encryption SDK for Python, unchanged, against keyledger: configured the way a user configures it
(credentials, region and ``AWS_ENDPOINT_URL_KMS`` in the environment), it encrypts with one or several keys,
decrypts with a strict or a discovery key provider, streams framed messages, and fails as AWS KMS makes it
fail when a key is disabled. Its calls are on the audit log with the encryption context it sent."""
from __future__ import annotations

import io
import json
import os
from typing import Any

import aws_encryption_sdk
import pytest
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.exceptions import DecryptKeyError, GenerateKeyError, MasterKeyProviderError
from aws_encryption_sdk.key_providers.kms import (
    DiscoveryAwsKmsMasterKeyProvider,
    DiscoveryFilter,
    MRKAwareDiscoveryAwsKmsMasterKeyProvider,
    MRKAwareStrictAwsKmsMasterKeyProvider,
    StrictAwsKmsMasterKeyProvider,
)

from tests.e2e.test_audit_support import export_jsonl
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET, Server

CONTEXT = {"purpose": "sdk-test", "tenant": "ü-42"}


@pytest.fixture
def sdk_env(shared_server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """What a user sets to point the SDK (through botocore) at keyledger; nothing of the SDK is patched."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {"AWS_ACCESS_KEY_ID": ADMIN_KEY_ID, "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_KMS": shared_server.endpoint,
                        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                        "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    return shared_server


@pytest.fixture
def sdk() -> Any:
    return aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)


def new_key_arn(server: Server) -> str:
    return server.client().create_key(Description="encryption sdk")["KeyMetadata"]["Arn"]


def test_encrypt_and_decrypt_with_one_key(sdk_env: Server, sdk: Any) -> None:
    key = new_key_arn(sdk_env)
    provider = StrictAwsKmsMasterKeyProvider(key_ids=[key])
    plaintext = os.urandom(10_000)
    message, header = sdk.encrypt(source=plaintext, key_provider=provider, encryption_context=CONTEXT)
    assert plaintext not in message
    assert [k.key_provider.key_info.decode() for k in header.encrypted_data_keys] == [key]
    decrypted, decrypted_header = sdk.decrypt(source=message, key_provider=provider)
    assert decrypted == plaintext
    assert CONTEXT.items() <= decrypted_header.encryption_context.items()

    # The SDK's calls are on record with the context it sent (its own signing key's context included).
    records = [r for r in export_jsonl(sdk_env) if key in [x["ARN"] for x in r["resources"]]]
    calls = [(r["eventName"], r["errorCode"]) for r in records if r["eventName"] in ("GenerateDataKey", "Decrypt")]
    assert calls == [("GenerateDataKey", None), ("Decrypt", None)]
    sent = records[-1]["requestParameters"]["encryptionContext"]
    assert CONTEXT.items() <= sent.items() and "aws-crypto-public-key" in sent


def test_several_keys_each_decrypt_alone_and_discovery_finds_them(sdk_env: Server, sdk: Any) -> None:
    first, second = new_key_arn(sdk_env), new_key_arn(sdk_env)
    message, header = sdk.encrypt(source=b"for two keys", key_provider=StrictAwsKmsMasterKeyProvider(
        key_ids=[first, second]), encryption_context=CONTEXT)
    assert {k.key_provider.key_info.decode() for k in header.encrypted_data_keys} == {first, second}
    for key in (first, second):  # GenerateDataKey under the first, Encrypt of the same data key under the second
        assert sdk.decrypt(source=message, key_provider=StrictAwsKmsMasterKeyProvider(key_ids=[key]))[0] == b"for two keys"
    discovery = DiscoveryAwsKmsMasterKeyProvider(discovery_filter=DiscoveryFilter(account_ids=[ACCOUNT_ID],
                                                                                  partition="aws"))
    assert sdk.decrypt(source=message, key_provider=discovery)[0] == b"for two keys"
    elsewhere = DiscoveryAwsKmsMasterKeyProvider(discovery_filter=DiscoveryFilter(account_ids=["444455556666"],
                                                                                  partition="aws"))
    with pytest.raises(MasterKeyProviderError):  # no data key of an allowed account: refused before any call
        sdk.decrypt(source=message, key_provider=elsewhere)


def test_streams_a_framed_message(sdk_env: Server, sdk: Any) -> None:
    provider = StrictAwsKmsMasterKeyProvider(key_ids=[new_key_arn(sdk_env)])
    plaintext = os.urandom(300_000)
    with sdk.stream(mode="e", source=io.BytesIO(plaintext), key_provider=provider, frame_length=4096,
                    encryption_context=CONTEXT) as encryptor:
        message = encryptor.read()
    with sdk.stream(mode="d", source=io.BytesIO(message), key_provider=provider) as decryptor:
        assert decryptor.read() == plaintext


def test_a_disabled_key_fails_decryption_as_kms_makes_it_fail(sdk_env: Server, sdk: Any) -> None:
    key = new_key_arn(sdk_env)
    provider = StrictAwsKmsMasterKeyProvider(key_ids=[key])
    message, _ = sdk.encrypt(source=b"secret", key_provider=provider)
    sdk_env.client().disable_key(KeyId=key)
    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=message, key_provider=StrictAwsKmsMasterKeyProvider(key_ids=[key]))
    refused = [r for r in export_jsonl(sdk_env) if r["eventName"] == "Decrypt" and r["errorCode"]
               and key in [x["ARN"] for x in r["resources"]]]
    assert [r["errorCode"] for r in refused] == ["DisabledException"]
    sdk_env.client().enable_key(KeyId=key)
    assert sdk.decrypt(source=message, key_provider=StrictAwsKmsMasterKeyProvider(key_ids=[key]))[0] == b"secret"


def test_sdk_calls_under_a_key_it_may_not_use_are_refused(sdk_env: Server, sdk: Any) -> None:
    """A key policy that allows no one but a role the caller is not: the SDK reports the denial."""
    admin = sdk_env.client()
    key = admin.create_key(Policy=_policy_for(f"arn:aws:iam::{ACCOUNT_ID}:role/nobody"),
                           BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["Arn"]
    with pytest.raises(GenerateKeyError):
        sdk.encrypt(source=b"x", key_provider=StrictAwsKmsMasterKeyProvider(key_ids=[key]))


def test_mrk_aware_providers_encrypt_in_one_region_and_decrypt_in_another(sdk_env: Server, sdk: Any) -> None:
    """The SDK's multi-Region-aware providers (decisions 155-164): a message made with the primary in us-east-1
    decrypts with the replica in eu-west-1, strict or discovery; the SDK calls Decrypt in eu-west-1 itself."""
    admin = sdk_env.client()
    primary = admin.create_key(MultiRegion=True, Description="sdk mrk")["KeyMetadata"]["Arn"]
    replica = admin.replicate_key(KeyId=primary, ReplicaRegion="eu-west-1")["ReplicaKeyMetadata"]["Arn"]
    message, header = sdk.encrypt(source=b"across regions", key_provider=MRKAwareStrictAwsKmsMasterKeyProvider(
        key_ids=[primary]), encryption_context=CONTEXT)
    assert [k.key_provider.key_info.decode() for k in header.encrypted_data_keys] == [primary]
    strict = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[replica])
    assert sdk.decrypt(source=message, key_provider=strict)[0] == b"across regions"
    discovery = MRKAwareDiscoveryAwsKmsMasterKeyProvider(discovery_region="eu-west-1", discovery_filter=DiscoveryFilter(
        account_ids=[ACCOUNT_ID], partition="aws"))
    assert sdk.decrypt(source=message, key_provider=discovery)[0] == b"across regions"
    decrypts = [r for r in export_jsonl(sdk_env) if r["eventName"] == "Decrypt" and not r["errorCode"]
                and replica in [x["ARN"] for x in r["resources"]]]
    assert [r["awsRegion"] for r in decrypts] == ["eu-west-1", "eu-west-1"]
    with pytest.raises(DecryptKeyError):  # a single-Region provider holds the replica's ARN, not the message's
        sdk.decrypt(source=message, key_provider=StrictAwsKmsMasterKeyProvider(key_ids=[replica]))


def _policy_for(principal: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Only", "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:*", "Resource": "*"}]})
