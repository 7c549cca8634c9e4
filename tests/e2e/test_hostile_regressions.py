"""Issue #11's six measurements, each reproduced against a real server as a named regression test.

No wall-clock assertion anywhere: a client timeout (tens of seconds) only tells a stuck server from a slow
one, and memory growth is asserted with a generous bound (64 MiB against the hundreds measured).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ServerFactory
from tests.e2e.helpers import alias_arn, key_arn
from tests.e2e.test_audit_support import run
from tests.hostile.audit_growth import RECORD_LIMIT, STORED_OVERHEAD, audit_version, records_after
from tests.hostile.checks import MAX_MESSAGE, error_type
from tests.hostile.hostile_request import MADE_UP, Auth, HostileRequest
from tests.hostile.policy_requests import ADMIN_STATEMENT, deny
from tests.hostile.raw_http import Answer, StreamedBody, request_head
from tests.hostile.server_probes import (
    MiB,
    call,
    connection,
    data_dir_bytes,
    error_message,
    get,
    server_rss,
    signed_get,
    sqlite_locked,
)
from tests.hostile.targets import PATTERN_POLICY
from tests.servers import ACCOUNT_ID, Server

STUCK = 120.0  # seconds without an answer that mean "stuck", not "slow"
RSS_BOUND = 64 * MiB


@pytest.fixture
def lone_server(tmp_path: Path) -> Iterator[Server]:
    """A fresh SQLite server of the test's own: a server a test may leave stuck must not be shared."""
    factory = ServerFactory("sqlite", tmp_path)
    try:
        yield factory.start()
    finally:
        factory.close()


def refused(answer: Answer, what: str) -> str:
    """Asserts an AWS-shaped 4xx with a short message; returns its error type."""
    assert answer.failure is None, f"{what}: {answer.summary()}"
    assert answer.status is not None and 400 <= answer.status < 500, f"{what}: {answer.summary()}"
    kind = error_type(answer.document())
    assert kind, f"{what}: not AWS's error shape: {answer.summary()}"
    assert len(error_message(answer)) <= MAX_MESSAGE, f"{what}: a {len(error_message(answer)):,}-character message"
    return kind


# -- 1. Disk fill without credentials ----------------------------------------------------------------------

@pytest.mark.parametrize("header", ["User-Agent", "X-Amz-Target"])
def test_oversized_unauthenticated_headers_do_not_fill_the_audit_log(shared_server, header):
    """25 requests with a 4,000,000-byte User-Agent (or a 1 MB X-Amz-Target), a made-up access key and
    Signature=00 grew the data directory by 96 MB. Now: refused, and the audit log grows by a few records."""
    server, repeats = shared_server, 25
    before, files_before = audit_version(server), data_dir_bytes(server)
    for n in range(repeats):
        if header == "User-Agent":
            answer = call(server, "ListKeys", {}, auth=MADE_UP, extra=((b"User-Agent", b"A" * 4_000_000),))
        else:
            answer = call(server, "ListKeys", {}, auth=MADE_UP, target=b"TrentService." + b"A" * 1_000_000)
        refused(answer, f"request {n + 1} with an oversized {header}")
    records = records_after(server, before)
    assert len(records) <= repeats + 2, f"{len(records)} audit records for {repeats} refused requests"
    largest = max((r.record_bytes for r in records), default=0)
    assert largest <= RECORD_LIMIT, f"an audit record of {largest:,} bytes"
    stored = sum(r.stored_bytes for r in records)
    assert stored <= repeats * (RECORD_LIMIT + STORED_OVERHEAD), f"{stored:,} bytes of audit records"
    if not server.database_url:  # pages and the WAL move in steps; megabytes per request would still show
        assert data_dir_bytes(server) - files_before < 8 * MiB


# -- 2. Server freeze through policy wildcards --------------------------------------------------------------

def _key_with_policy(server: Server, policy: str) -> str:
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy)
    return key_id


def _encrypt(key_id: str, file: str) -> dict:
    return {"KeyId": key_id, "Plaintext": "cA==", "EncryptionContext": {"file": file}}


def _health_answers_while_encrypting(server: Server, key_id: str, file: str) -> Answer:
    """Sends the Encrypt, asks /healthz while it is in flight (it must answer), then reads the Encrypt's answer."""
    head_conn = connection(server, STUCK)
    request = HostileRequest(category="regression", note="Encrypt", target=b"TrentService.Encrypt",
                             body=json.dumps(_encrypt(key_id, file)).encode())
    head, _ = request.assemble(server.endpoint, f"127.0.0.1:{server.port}".encode())
    try:
        pending = head_conn.start(head, request.body)
        health = get(server, "/healthz", timeout=30)
        assert health.failure is None and health.status == 200, \
            f"/healthz while an Encrypt with a {len(file)}-character context was evaluated: {health.summary()}"
        return head_conn.finish(pending)
    finally:
        head_conn.close()


def test_string_like_on_a_long_dash_context_completes_and_health_answers_meanwhile(lone_server):
    """StringLike "*-*-*-*.json" and an Encrypt with {"file": "-" * 600} froze the server for 4.1 s."""
    key_id = _key_with_policy(lone_server, PATTERN_POLICY)
    answer = _health_answers_while_encrypting(lone_server, key_id, "-" * 600)
    assert answer.failure is None and answer.status == 200, answer.summary()
    for matching in ("a-b-c-d.json", "-" * 600 + ".json"):  # the Deny still applies where it should
        assert refused(call(lone_server, "Encrypt", _encrypt(key_id, matching), timeout=STUCK),
                       matching[:20]) == "AccessDeniedException"


def test_longer_wildcard_runs_never_freeze_the_server(lone_server):
    """Eight stars against a thousand dashes: hours for a backtracking matcher, nothing for a linear one."""
    policy = json.dumps({"Version": "2012-10-17", "Statement": [ADMIN_STATEMENT, deny(condition={
        "StringLike": {"kms:EncryptionContext:file": "*-*-*-*-*-*-*-*.json"}})]})
    key_id = _key_with_policy(lone_server, policy)
    answer = _health_answers_while_encrypting(lone_server, key_id, "-" * 1000)
    assert answer.failure is None and answer.status == 200, answer.summary()


def test_action_wildcards_in_a_key_policy_never_hang(lone_server):
    """Action "kms:" + "*" * 12 + "x" kept the process at 100 % CPU past SIGTERM."""
    policy = json.dumps({"Version": "2012-10-17", "Statement": [ADMIN_STATEMENT, deny("kms:" + "*" * 12 + "x")]})
    key_id = lone_server.client().create_key()["KeyMetadata"]["KeyId"]
    put = call(lone_server, "PutKeyPolicy", {"KeyId": key_id, "PolicyName": "default", "Policy": policy},
               timeout=STUCK)
    assert put.failure is None, f"PutKeyPolicy: {put.summary()}"
    assert put.status == 200 or refused(put, "PutKeyPolicy")
    created = call(lone_server, "CreateKey", {"Policy": policy}, timeout=STUCK)
    assert created.failure is None and (created.status == 200 or refused(created, "CreateKey"))
    if put.status == 200:  # in force: every call on the key is matched against it
        answer = call(lone_server, "Encrypt", _encrypt(key_id, "x"), timeout=STUCK)
        assert answer.failure is None and answer.status == 200, answer.summary()
    assert get(lone_server, "/healthz").status == 200


@pytest.mark.parametrize("pattern, denied", [("*" * 5000, True), ("*" * 5000 + "x", False)],
                         ids=["5000-stars", "5000-stars-then-x"])
def test_five_thousand_star_condition_never_hangs(lone_server, pattern, denied):
    policy = json.dumps({"Version": "2012-10-17", "Statement": [ADMIN_STATEMENT, deny(condition={
        "StringLike": {"kms:EncryptionContext:file": pattern}})]})
    key_id = lone_server.client().create_key()["KeyMetadata"]["KeyId"]
    put = call(lone_server, "PutKeyPolicy", {"KeyId": key_id, "PolicyName": "default", "Policy": policy},
               timeout=STUCK)
    assert put.failure is None, f"PutKeyPolicy: {put.summary()}"
    if put.status != 200:
        refused(put, "PutKeyPolicy")
        return
    answer = call(lone_server, "Encrypt", _encrypt(key_id, "-" * 600), timeout=STUCK)
    assert answer.failure is None, answer.summary()
    if denied:
        assert refused(answer, "Encrypt") == "AccessDeniedException"
    else:
        assert answer.status == 200, answer.summary()
    assert get(lone_server, "/healthz").status == 200


# -- 3. No request size limit ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def size_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    factory = ServerFactory("sqlite", tmp_path_factory.mktemp("sizes"))
    try:
        yield factory.start()
    finally:
        factory.close()


def _send_large(server: Server, size: int, baseline: int, chunked: bool = False) -> Answer:
    """POST / of ``size`` bytes without credentials, stopped once the server's RSS grew past the bound."""
    framing = (b"Transfer-Encoding", b"chunked") if chunked else (b"Content-Length", b"%d" % size)
    head = request_head(b"POST", b"/", [(b"Host", f"127.0.0.1:{server.port}".encode()),
                                        (b"Content-Type", b"application/x-amz-json-1.1"),
                                        (b"X-Amz-Target", b"TrentService.Encrypt"), framing])
    conn = connection(server, STUCK)

    def watch(sent: int) -> bool:
        return sent % MiB >= 64 * 1024 or server_rss(server) - baseline < RSS_BOUND

    try:
        return conn.exchange(head, StreamedBody(size, b" ", chunked), progress=watch)
    finally:
        conn.close()


def _refused_as_too_large(answer: Answer, baseline: int, server: Server, what: str) -> None:
    grown = server_rss(server) - baseline
    assert answer.failure != "aborted", f"{what}: the server's RSS grew by {grown / MiB:.0f} MiB: it buffers the body"
    assert refused(answer, what) == "RequestEntityTooLargeException" and answer.status == 413, answer.summary()
    assert grown < RSS_BOUND, f"{what}: the server's RSS grew by {grown / MiB:.0f} MiB"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_200_mib_body_without_credentials_is_refused_early(size_server, chunked):
    baseline = server_rss(size_server)
    answer = _send_large(size_server, 200 * MiB, baseline, chunked)
    _refused_as_too_large(answer, baseline, size_server, "a 200 MiB body")


def test_four_200_mib_bodies_at_once(size_server):
    baseline, answers = server_rss(size_server), [None] * 4

    def send(slot: int) -> None:
        answers[slot] = _send_large(size_server, 200 * MiB, baseline)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, answer in enumerate(answers):
        _refused_as_too_large(answer, baseline, size_server, f"200 MiB body {n + 1} of 4")


def test_ten_megabyte_whitespace_padded_list_keys_is_refused(size_server):
    """A correctly signed ListKeys of 10 MB (whitespace around {}) was answered 200."""
    answer = call(size_server, "ListKeys", b"{" + b" " * 10_000_000 + b"}", timeout=STUCK)
    assert refused(answer, "10 MB ListKeys") == "RequestEntityTooLargeException" and answer.status == 413


# -- 4. Validation echoes -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nobody(shared_server: Server) -> Auth:
    """An access key of a user with no permissions at all."""
    arn = f"arn:aws:iam::{ACCOUNT_ID}:user/nobody-{uuid.uuid4().hex[:8]}"
    run(shared_server, "principals", "create", arn)
    made = json.loads(run(shared_server, "access-keys", "create", "--principal", arn, "--json").stdout)["AccessKey"]
    auth = Auth(key_id=made["AccessKeyId"], secret=made["SecretAccessKey"])
    for _ in range(50):  # the server caches access keys for up to KEYLEDGER_KEY_CACHE_SECONDS
        if error_type(call(shared_server, "ListKeys", {}, auth=auth).document()) != "UnrecognizedClientException":
            return auth
        time.sleep(0.2)
    raise AssertionError("the server never recognised the new access key")


def test_create_key_with_a_ten_million_character_description_gets_a_short_answer(shared_server, nobody):
    before = audit_version(shared_server)
    huge = call(shared_server, "CreateKey", {"Description": "d" * 10_000_000}, auth=nobody, timeout=STUCK)
    assert refused(huge, "10,000,000-character Description") == "RequestEntityTooLargeException"
    long = call(shared_server, "CreateKey", {"Description": "d" * 20_000}, auth=nobody)
    assert refused(long, "20,000-character Description") in ("ValidationException", "AccessDeniedException")
    assert "d" * (MAX_MESSAGE + 1) not in long.body.decode("latin-1")
    ours = {huge.headers.get("x-amzn-requestid"), long.headers.get("x-amzn-requestid")} - {None}
    for record in records_after(shared_server, before):
        if record.request_id in ours:
            assert record.record_bytes <= RECORD_LIMIT, f"{record.event_name}: a {record.record_bytes:,}-byte record"


# -- 5. /healthz lies ----------------------------------------------------------------------------------------

def _poll(server: Server, path: str, want: int, deadline_seconds: float = 60.0) -> list[int | None]:
    """GET ``path`` until it answers ``want``; while waiting, a KMS call in between (a write the lock blocks)."""
    seen: list[int | None] = []
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        seen.append(get(server, path).status)
        if seen[-1] == want:
            return seen
        call(server, "CreateKey", {}, timeout=STUCK)
        time.sleep(0.2)
    raise AssertionError(f"{path} never answered {want}; it answered {seen[-10:]}")


def test_readiness_follows_a_locked_sqlite_database(tmp_path):
    factory = ServerFactory("sqlite", tmp_path)
    try:
        server = factory.start(KEYLEDGER_SQLITE_BUSY_TIMEOUT_MS="300")
        assert get(server, "/healthz/ready").status == 200
        for begin in ("BEGIN EXCLUSIVE", "BEGIN IMMEDIATE"):
            with sqlite_locked(server.sqlite_file, begin):
                _poll(server, "/healthz/ready", 503)
                assert get(server, "/healthz/live").status == 200, f"not alive while {begin} holds the database"
            _poll(server, "/healthz/ready", 200)
            assert call(server, "CreateKey", {}).status == 200, f"no write after {begin} was released"
    finally:
        factory.close()


# -- 6. /v1 takes only bare key ids --------------------------------------------------------------------------

def test_v1_accepts_every_key_form(shared_server):
    kms = shared_server.client()
    key_id = kms.create_key(Description="named every way")["KeyMetadata"]["KeyId"]
    alias = f"alias/v1-forms-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    forms = {"key id": key_id, "key ARN": key_arn(key_id), "alias name, slash encoded": alias.replace("/", "%2F"),
             "alias name": alias, "alias ARN": alias_arn(alias),
             "alias ARN, slash encoded": alias_arn(alias).replace("/", "%2F")}
    for form, named in forms.items():
        answer = signed_get(shared_server, f"/v1/keys/{named}")
        assert answer.failure is None and answer.status == 200, f"/v1/keys/<{form}>: {answer.summary()}"
        assert answer.document()["KeyMetadata"]["KeyId"] == key_id, form
