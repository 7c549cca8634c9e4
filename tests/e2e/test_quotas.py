"""Request quotas against a real server: per account and operation class, answered ThrottlingException
(HTTP 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}) as AWS KMS answers it. The
quotas here are set so low (one call per 1,000 seconds) that no test depends on how fast calls are made.
The boto3 clients make exactly one attempt (tests/servers.py), so botocore's retries never hide a refusal."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerFactory
from tests.e2e.helpers import code, status
from tests.e2e.limits_support import records
from tests.servers import ACCOUNT_ID

SLOW = "0.001"  # one call, then one more every 1,000 seconds


@pytest.fixture
def sqlite_servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Quotas are counted in memory, the same whatever the store: one backend is enough."""
    factory = ServerFactory("sqlite", tmp_path)
    try:
        yield factory
    finally:
        factory.close()


def throttled(call, *args, **kwargs) -> ClientError:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as refused:
        call(*args, **kwargs)
    return refused.value


def test_a_spent_management_quota_answers_throttling_as_aws_does(sqlite_servers: ServerFactory) -> None:
    server = sqlite_servers.start(KEYLEDGER_QUOTA_MANAGEMENT_PER_SECOND=SLOW)
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]  # the one management call the quota allows
    for _ in range(5):  # cryptographic calls have a quota of their own
        kms.encrypt(KeyId=key_id, Plaintext=b"p")
    refused = throttled(kms.describe_key, KeyId=key_id)
    assert (code(refused), status(refused)) == ("ThrottlingException", 400)
    assert refused.response["Error"]["Message"] == "Rate exceeded"
    record = next(r for r in records(server) if r["requestID"] == refused.response["ResponseMetadata"]["RequestId"])
    assert (record["eventName"], record["errorCode"]) == ("DescribeKey", "ThrottlingException")


def test_a_spent_cryptographic_quota_throttles_every_cryptographic_operation(sqlite_servers: ServerFactory) -> None:
    server = sqlite_servers.start(KEYLEDGER_QUOTA_CRYPTOGRAPHIC_PER_SECOND=SLOW)
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key_id, Plaintext=b"p")
    assert code(throttled(kms.encrypt, KeyId=key_id, Plaintext=b"p")) == "ThrottlingException"
    assert code(throttled(kms.generate_random, NumberOfBytes=8)) == "ThrottlingException"
    kms.describe_key(KeyId=key_id)  # management calls are not in the class


def test_an_account_override_raises_that_account_s_quota(sqlite_servers: ServerFactory) -> None:
    server = sqlite_servers.start(KEYLEDGER_QUOTA_MANAGEMENT_PER_SECOND=SLOW,
                                  KEYLEDGER_QUOTA_ACCOUNT_OVERRIDES=json.dumps({ACCOUNT_ID: {"management": 100000}}))
    kms = server.client()
    for _ in range(20):
        kms.list_keys()


def test_the_default_quotas_do_not_throttle_a_quick_burst(sqlite_servers: ServerFactory) -> None:
    kms = sqlite_servers.start().client()
    key_ids = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(30)]
    for key_id in key_ids:
        kms.describe_key(KeyId=key_id)
        kms.encrypt(KeyId=key_id, Plaintext=b"p")
