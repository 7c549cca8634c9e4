"""GetKeyLastUsage end to end on SQLite and PostgreSQL (decision 90): from the audit log, only successful
cryptographic calls count, ReEncrypt counts for both keys, the request and CloudTrail event ids name the call, and
the /v1 query API answers "last used as of T"."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from urllib.parse import quote

from tests.e2e.helpers import create_key, error_code, unique_alias
from tests.e2e.test_query_api import get


def last_usage(kms, key: str) -> dict:
    return kms.get_key_last_usage(KeyId=key)


def test_a_new_key_has_no_usage_and_tracking_starts_at_its_creation(kms):
    meta = create_key(kms)
    answer = last_usage(kms, meta["KeyId"])
    assert answer["KeyId"] == meta["KeyId"]
    assert answer.get("KeyLastUsage", {}) == {}
    assert answer["KeyCreationDate"] == meta["CreationDate"] == answer["TrackingStartDate"]


def test_successful_crypto_calls_count_and_nothing_else(kms):
    key = create_key(kms)["KeyId"]
    done = kms.encrypt(KeyId=key, Plaintext=b"used", EncryptionContext={"a": "b"})
    used = last_usage(kms, key)["KeyLastUsage"]
    assert used["Operation"] == "Encrypt"
    assert used["KmsRequestId"] == done["ResponseMetadata"]["RequestId"]
    assert len(used["CloudTrailEventId"]) > 0
    # Failed, dry-run and non-cryptographic calls leave it as it was.
    assert error_code(kms.decrypt, CiphertextBlob=done["CiphertextBlob"]) == "InvalidCiphertextException"
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x", DryRun=True) == "DryRunOperationException"
    kms.describe_key(KeyId=key)
    kms.get_key_rotation_status(KeyId=key)
    assert last_usage(kms, key)["KeyLastUsage"] == used
    decrypted = kms.decrypt(CiphertextBlob=done["CiphertextBlob"], EncryptionContext={"a": "b"})
    after = last_usage(kms, key)["KeyLastUsage"]
    assert after["Operation"] == "Decrypt" and after["KmsRequestId"] == decrypted["ResponseMetadata"]["RequestId"]
    assert after["Timestamp"] >= used["Timestamp"] and after["CloudTrailEventId"] != used["CloudTrailEventId"]


def test_re_encrypt_counts_for_both_keys(kms):
    source, destination = create_key(kms)["KeyId"], create_key(kms)["KeyId"]
    blob = kms.encrypt(KeyId=source, Plaintext=b"moved")["CiphertextBlob"]
    moved = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=destination)
    for key in (source, destination):
        used = last_usage(kms, key)["KeyLastUsage"]
        assert used["Operation"] == "ReEncrypt" and used["KmsRequestId"] == moved["ResponseMetadata"]["RequestId"]


def test_aliases_are_not_accepted_and_unknown_keys_are_not_found(kms):
    key = create_key(kms)["KeyId"]
    alias = unique_alias("usage")
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    assert error_code(kms.get_key_last_usage, KeyId=alias) == "NotFoundException"
    assert error_code(kms.get_key_last_usage, KeyId="1234abcd-12ab-34cd-56ef-1234567890ab") == "NotFoundException"


def test_last_usage_as_of_an_instant(shared_server):
    kms = shared_server.client()
    key = create_key(kms)["KeyId"]
    kms.encrypt(KeyId=key, Plaintext=b"first")
    first = last_usage(kms, key)["KeyLastUsage"]
    # CloudTrail's eventTime has whole seconds: the next use must fall in a later second to be told apart.
    deadline = time.monotonic() + 30
    while datetime.now(timezone.utc).replace(microsecond=0) <= first["Timestamp"] and time.monotonic() < deadline:
        time.sleep(0.05)
    kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert last_usage(kms, key)["KeyLastUsage"]["Operation"] == "GenerateDataKey"
    path = f"/v1/keys/{quote(key, safe='')}/last-usage"
    # As of the instant of the first use: that use, whatever came after.
    then = get(shared_server, path, at=first["Timestamp"].isoformat()).json()
    assert then["KeyLastUsage"]["Operation"] == "Encrypt"
    assert then["KeyLastUsage"]["CloudTrailEventId"] == first["CloudTrailEventId"]
    assert get(shared_server, path).json()["KeyLastUsage"]["Operation"] == "GenerateDataKey"
    assert get(shared_server, path, at="2000-01-01T00:00:00Z").json()["KeyLastUsage"] == {}
