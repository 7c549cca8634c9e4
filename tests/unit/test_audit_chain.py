"""The tamper-evident audit chain (docs/audit.md): every kind of tampering is found and the first
bad seq is named exactly as domain/audit/chain.py defines it."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

import domain.audit.chain as audit_chain
from domain.audit.chain import (
    GENESIS,
    Checkpoint,
    canonical,
    checkpoint_from_json,
    checkpoint_hash,
    checkpoint_to_json,
    leaf_hash,
    make_checkpoint,
    next_chain,
    seal,
    verify_checkpoint_signature,
    verify_log,
)

ACCOUNT = "111122223333"
REGION = "eu-west-1"
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
N = 23           # checkpoints at 5, 10, 15, 20; records 21..23 are not yet covered
EVERY = 5
OPERATIONS = [  # (eventName, readOnly, eventType)
    ("Encrypt", True, "AwsApiCall"), ("Decrypt", True, "AwsApiCall"), ("GenerateDataKey", True, "AwsApiCall"),
    ("DescribeKey", True, "AwsApiCall"), ("CreateKey", False, "AwsApiCall"), ("PutKeyPolicy", False, "AwsApiCall"),
    ("RotateKey", False, "AwsServiceEvent"), ("DeleteKey", False, "AwsServiceEvent"),
]


def cloudtrail_record(i: int, *, event_name: str | None = None, key_id: str | None = None,
                      context: dict | None = None, user: str = "alice", error: str | None = None) -> dict:
    name, read_only, event_type = OPERATIONS[i % len(OPERATIONS)]
    name = event_name or name
    key_id = key_id or str(uuid.UUID(int=i % 3 + 1))
    arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    service = event_type == "AwsServiceEvent"
    return {
        "eventVersion": "1.08",
        "eventTime": (START + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "userIdentity": ({"type": "AWSService", "invokedBy": "kms.amazonaws.com"} if service else {
            "type": "IAMUser", "principalId": f"AIDA{user.upper()}", "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}",
            "accountId": ACCOUNT, "accessKeyId": "AKIAIOSFODNN7EXAMPLE"}),
        "sourceIPAddress": "kms.amazonaws.com" if service else "198.51.100.7",
        "userAgent": "kms.amazonaws.com" if service else "aws-cli/2.15.0 Python/3.11",
        "requestParameters": {"keyId": arn, "encryptionContext": context if context is not None else {"tenant": "café"},
                              "encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
        "responseElements": None,
        "errorCode": error,
        "errorMessage": f"{error}: denied" if error else None,
        "requestID": str(uuid.UUID(int=10_000 + i)),
        "eventID": str(uuid.UUID(int=20_000 + i)),
        "readOnly": read_only,
        "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": arn}],
        "eventType": event_type,
        "managementEvent": True,
        "eventCategory": "Management",
    }


def seal_all(raw: list[dict], previous: bytes = GENESIS, first_seq: int = 1) -> list[dict]:
    out = []
    for seq, record in enumerate(raw, start=first_seq):
        out.append(seal(record, previous, seq))
        previous = bytes.fromhex(out[-1]["chain"])
    return out


def sign_checkpoints(log: list[dict], private: bytes, every: int = EVERY, start: list[Checkpoint] | None = None):
    cps = list(start or [])
    for r in log:
        if r["seq"] % every == 0 and (not cps or r["seq"] > cps[-1].seq):
            cps.append(make_checkpoint(private, r["seq"], r["chain"], f"2024-05-01T13:00:{r['seq']:02d}Z",
                                       cps[-1] if cps else None))
    return cps


def new_key() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes_raw(), key.public_key().public_bytes_raw()


@pytest.fixture
def keys():
    return new_key()


@pytest.fixture
def log():
    return seal_all([cloudtrail_record(i) for i in range(N)])


@pytest.fixture
def cps(log, keys):
    return sign_checkpoints(log, keys[0])


def verify(log, cps=(), public=None, **kw):
    return verify_log(iter(log), cps, public, **kw)  # an iterator: the verifier must not need len() or indexing


# --- canonical JSON, leaf and chain definitions -------------------------------------------------------

def test_canonical_is_independent_of_key_order():
    assert canonical({"b": 1, "a": {"y": [1, 2], "x": None}}) == canonical({"a": {"x": None, "y": [1, 2]}, "b": 1})
    assert canonical({"b": 1, "a": {"y": [1, 2], "x": None}}) == b'{"a":{"x":null,"y":[1,2]},"b":1}'


def test_canonical_preserves_unicode_as_utf8():
    assert canonical({"ctx": "café ☕ 鍵"}) == '{"ctx":"café ☕ 鍵"}'.encode("utf-8")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_rejects_nan_and_infinity(bad):
    with pytest.raises(ValueError):
        canonical({"x": [1, {"y": bad}]})


def test_leaf_is_sha256_of_0x00_and_canonical_record_without_leaf_and_chain():
    record = cloudtrail_record(0)
    expected = hashlib.sha256(b"\x00" + json.dumps(record, sort_keys=True, separators=(",", ":"),
                                                   ensure_ascii=False).encode("utf-8")).digest()
    assert leaf_hash(record) == expected
    assert leaf_hash({**record, "leaf": "00" * 32, "chain": "ff" * 32}) == expected


def test_chain_is_sha256_of_raw_previous_and_leaf():
    leaf = hashlib.sha256(b"x").digest()
    assert next_chain(GENESIS, leaf) == hashlib.sha256(bytes(32) + leaf).digest()
    with pytest.raises(ValueError):
        next_chain(GENESIS.hex().encode(), leaf)


def test_seal_sets_seq_leaf_chain_on_a_copy():
    raw = cloudtrail_record(3)
    before = copy.deepcopy(raw)
    sealed = seal(raw, GENESIS, 1)
    assert raw == before
    assert sealed["seq"] == 1 and sealed["leaf"] == leaf_hash(sealed).hex()
    assert sealed["chain"] == next_chain(GENESIS, leaf_hash(sealed)).hex()
    assert seal(sealed, GENESIS, 1) == sealed  # resealing ignores the old leaf and chain
    assert {"eventVersion", "eventTime", "eventType", "resources", "seq", "leaf", "chain"} <= set(sealed)
    with pytest.raises(ValueError):
        seal(raw, GENESIS, 0)


# --- the untouched log --------------------------------------------------------------------------------

def test_untouched_log_verifies(log, cps, keys):
    result = verify(log, cps, keys[1])
    assert (result.ok, result.records, result.first_bad_seq, result.problem, result.checkpoints_checked) == \
        (True, N, None, None, 4)


def test_empty_log_verifies_also_against_an_idle_checkpoint_at_seq_0(keys):
    assert verify([]).ok
    idle = make_checkpoint(keys[0], 0, GENESIS.hex(), "2024-05-01T12:00:00Z", None)
    result = verify([], [idle], keys[1])
    assert result.ok and result.checkpoints_checked == 1


def test_idle_checkpoints_repeat_a_seq(log, keys):
    cp1 = make_checkpoint(keys[0], 5, log[4]["chain"], "2024-05-01T13:00:00Z", None)
    cp2 = make_checkpoint(keys[0], 5, log[4]["chain"], "2024-05-01T13:01:00Z", cp1)
    assert verify(log, [cp1, cp2], keys[1]).checkpoints_checked == 2


def test_progress_reports_counts(log, monkeypatch):
    seen = []
    monkeypatch.setattr(audit_chain, "_PROGRESS_EVERY", 10)
    assert verify(log, progress=seen.append).ok
    assert seen == [10, 20, N]


# --- tampering with records ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 7, N])
@pytest.mark.parametrize("path,value", [
    (("eventName",), "ScheduleKeyDeletion"),
    (("userIdentity", "arn"), f"arn:aws:iam::{ACCOUNT}:user/mallory"),
    (("requestParameters", "encryptionContext", "tenant"), "cafe"),
    (("errorCode",), "AccessDeniedException"),
    (("eventTime",), "2023-12-31T23:59:59Z"),
    (("leaf",), "00" * 32),
    (("chain",), "00" * 32),
])
def test_modified_record_is_named(log, cps, keys, k, path, value):
    target = log[k - 1]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    result = verify(log, cps, keys[1])
    assert not result.ok and result.first_bad_seq == k and result.records == k - 1
    assert f"record seq {k}" in result.problem


def test_modified_content_message_is_for_people(log):
    log[16]["sourceIPAddress"] = "203.0.113.9"
    assert verify(log).problem == "record seq 17 was modified: its leaf does not match its content"


@pytest.mark.parametrize("k", [1, 8, N - 1])
def test_deleted_record_is_named_by_the_missing_seq(log, cps, keys, k):
    del log[k - 1]
    result = verify(log, cps, keys[1])
    assert result.first_bad_seq == k
    assert result.problem == f"record seq {k} is missing (deleted): seq {k + 1} follows seq {k - 1}"


def test_deleting_the_last_covered_record_is_truncation(log, cps, keys):
    del log[19:]
    result = verify(log, cps, keys[1])
    assert result.first_bad_seq == 20
    assert result.problem == "truncated: log ends at seq 19 but checkpoint covers seq 20"


def test_deleting_the_uncovered_tail_is_not_detectable(log, cps, keys):
    # Records after the latest checkpoint are vouched for by nothing yet: the reason for time-based checkpoints.
    assert verify(log[:21], cps, keys[1]).ok


@pytest.mark.parametrize("k", [1, 9, N - 1])
def test_swapped_records_are_named_by_the_lower_seq(log, cps, keys, k):
    log[k - 1], log[k] = log[k], log[k - 1]
    result = verify(log, cps, keys[1])
    assert result.first_bad_seq == k
    assert result.problem == f"records seq {k} and {k + 1} are out of order: seq {k + 1} comes first"


@pytest.mark.parametrize("k", [1, 12])
def test_inserted_well_chained_forged_record_is_named_by_its_seq(log, cps, keys, k):
    previous = bytes.fromhex(log[k - 2]["chain"]) if k > 1 else GENESIS
    forged = seal(cloudtrail_record(99, event_name="DisableKeyRotation", user="mallory"), previous, k)
    log.insert(k - 1, forged)
    result = verify(log, cps, keys[1])
    assert result.first_bad_seq == k
    assert result.problem == f"record seq {k} appears again after seq {k}: a record was inserted or replayed"


def test_inserted_unchained_forged_record_is_named_by_its_seq(log, cps, keys):
    log.insert(11, seal(cloudtrail_record(99, user="mallory"), GENESIS, 12))
    result = verify(log, cps, keys[1])
    assert result.first_bad_seq == 12 and "does not follow seq 11" in result.problem


def test_replayed_old_record_is_named_by_its_own_seq(log):
    log.append(copy.deepcopy(log[2]))
    result = verify(log)
    assert result.first_bad_seq == 3 and result.records == N


def test_record_without_seq_is_named_by_its_position(log):
    del log[5]["seq"]
    assert verify(log).first_bad_seq == 6


def test_rewritten_and_rechained_log_is_caught_only_by_a_checkpoint(log, cps, keys):
    raw = [{k: v for k, v in r.items() if k not in ("seq", "leaf", "chain")} for r in log]
    raw.insert(6, cloudtrail_record(99, event_name="CancelKeyDeletion", user="mallory"))  # at seq 7
    rewritten = seal_all(raw)
    assert verify(rewritten).ok  # the chain alone cannot see a full rewrite
    result = verify(rewritten, cps, keys[1])
    assert result.first_bad_seq == 6 and result.checkpoints_checked == 1 and result.records == 10
    assert result.problem.startswith("the log does not match the checkpoint at seq 10 (2024-05-01T13:00:10Z): "
                                     "a record between seq 6 and 10 was changed")


# --- truncation, roll-back, fork ----------------------------------------------------------------------

def test_truncated_tail_below_the_last_checkpoint(log, cps, keys):
    result = verify(log[:13], cps, keys[1])
    assert (result.ok, result.first_bad_seq, result.records, result.checkpoints_checked) == (False, 14, 13, 2)
    assert result.problem == "truncated: log ends at seq 13 but checkpoint covers seq 20"


def test_rolled_back_log_with_newer_checkpoints(keys):
    raw = [cloudtrail_record(i) for i in range(N)]
    old_copy = seal_all(raw[:12])                 # a backup taken at seq 12
    newer = seal_all(raw)
    cps = sign_checkpoints(newer, keys[0])
    assert verify(old_copy, cps, keys[1]).problem == "truncated: log ends at seq 12 but checkpoint covers seq 20"
    # The restored backup then keeps taking writes: the log forks from the signed history.
    forked = old_copy + seal_all([cloudtrail_record(i, user="bob") for i in range(12, N)],
                                 bytes.fromhex(old_copy[-1]["chain"]), 13)
    result = verify(forked, cps, keys[1])
    assert result.first_bad_seq == 11 and result.checkpoints_checked == 2
    assert "does not match the checkpoint at seq 15" in result.problem and "rolled back, forked" in result.problem


# --- tampering with checkpoints -----------------------------------------------------------------------

def test_checkpoint_signed_by_another_key_is_forged(log, cps, keys):
    other_private, _ = new_key()
    forged = make_checkpoint(other_private, 20, log[19]["chain"], cps[3].time, cps[2])
    result = verify(log, cps[:3] + [forged], keys[1])
    assert result.first_bad_seq is None and result.checkpoints_checked == 0
    assert result.problem == ("checkpoint #4 (seq 20, 2024-05-01T13:00:20Z) is forged: its signature does not "
                              "verify with the checkpoint public key")


def test_checkpoint_with_altered_chain(log, cps, keys):
    altered = Checkpoint(cps[1].seq, log[8]["chain"], cps[1].time, cps[1].previous, cps[1].signature)
    tampered = [cps[0], altered] + cps[2:]
    assert "checkpoint #2 (seq 10" in verify(log, tampered, keys[1]).problem
    assert "is forged" in verify(log, tampered, keys[1]).problem
    # Without the public key the chain still disagrees with the log (and the link to #3 breaks).
    result = verify(log, tampered)
    assert "checkpoint #3 (seq 15" in result.problem and "not linked" in result.problem
    assert "does not match the checkpoint at seq 10" in verify(log, tampered[:2]).problem


def test_checkpoint_chain_link_broken(log, cps, keys):
    result = verify(log, [cps[0], cps[2], cps[3]], keys[1])  # checkpoint at seq 10 removed
    assert result.first_bad_seq is None
    assert result.problem.startswith("checkpoint #2 (seq 15, 2024-05-01T13:00:15Z) is not linked to the checkpoint")
    relinked = make_checkpoint(keys[0], 15, log[14]["chain"], cps[2].time, cps[0])  # signed, but skips #2
    assert "not linked" in verify(log, [cps[0], cps[1], relinked], keys[1]).problem


def test_checkpoint_file_with_its_head_removed(log, cps, keys):
    result = verify(log, cps[1:], keys[1])
    assert "names a previous checkpoint, so the checkpoint file is not complete" in result.problem


def _signed(private: bytes, seq: int, chain: str, time: str, previous: str | None) -> Checkpoint:
    # Signs the documented body directly, to build what make_checkpoint refuses to build.
    body = canonical({"seq": seq, "chain": chain, "time": time, "previous_checkpoint_hash": previous})
    return Checkpoint(seq, chain, time, previous, Ed25519PrivateKey.from_private_bytes(private).sign(body).hex())


def test_checkpoint_seq_going_backwards(log, cps, keys):
    back = _signed(keys[0], 5, log[4]["chain"], "2024-05-01T14:00:00Z", checkpoint_hash(cps[1]))
    result = verify(log, cps[:2] + [back], keys[1])
    assert result.problem == ("checkpoint #3 (seq 5, 2024-05-01T14:00:00Z) goes backwards: the checkpoint "
                              "before it covers seq 10")
    with pytest.raises(ValueError):
        make_checkpoint(keys[0], 5, log[4]["chain"], "2024-05-01T14:00:00Z", cps[1])


def test_checkpoint_hash_and_signature_definitions(cps, keys):
    cp = cps[1]
    body = json.dumps({"seq": cp.seq, "chain": cp.chain, "time": cp.time,
                       "previous_checkpoint_hash": cp.previous},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert checkpoint_hash(cp) == hashlib.sha256(b"\x01" + body).hexdigest()
    assert cp.previous == checkpoint_hash(cps[0]) and cps[0].previous is None
    Ed25519PublicKey.from_public_bytes(keys[1]).verify(bytes.fromhex(cp.signature), body)
    assert verify_checkpoint_signature(keys[1], cp)
    assert not verify_checkpoint_signature(new_key()[1], cp)
    assert not verify_checkpoint_signature(keys[1], Checkpoint(cp.seq, cp.chain, cp.time, cp.previous, "zz"))


def test_checkpoint_json_lines_round_trip(cps):
    lines = [checkpoint_to_json(cp) for cp in cps]
    assert all("\n" not in line for line in lines)
    assert [checkpoint_from_json(line) for line in lines] == cps
    assert json.loads(lines[0])["previous_checkpoint_hash"] is None


@pytest.mark.parametrize("line", ['[]', '{"seq": 1}', '{"seq": "1", "chain": "", "time": "", '
                                  '"previous_checkpoint_hash": null, "signature": ""}', 'not json'])
def test_checkpoint_from_json_rejects_bad_lines(line):
    with pytest.raises(ValueError):
        checkpoint_from_json(line)


# --- properties ---------------------------------------------------------------------------------------

_text = st.text(max_size=12)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _text, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=6)
_raw_records = st.lists(
    st.builds(lambda i, ctx, user, err, name: cloudtrail_record(i, context=ctx, user=user, error=err, event_name=name),
              st.integers(0, 1000), st.dictionaries(_text, _text, max_size=3),
              st.from_regex(r"[a-z]{1,8}", fullmatch=True),
              st.none() | st.sampled_from(["AccessDeniedException", "NotFoundException", "DisabledException"]),
              st.none() | st.sampled_from([op[0] for op in OPERATIONS])),
    min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(raw=_raw_records, data=st.data())
def test_any_single_field_change_is_named_at_its_position(raw, data):
    log = seal_all(raw)
    k = data.draw(st.integers(1, len(log)), label="k")
    record = log[k - 1]
    field = data.draw(st.sampled_from(sorted(record)), label="field")
    new = data.draw(_json.filter(lambda v: v != record[field] or type(v) is not type(record[field])), label="new")
    record[field] = new
    result = verify_log(iter(log))
    assert not result.ok and result.first_bad_seq == k and result.records == k - 1


@settings(max_examples=100, deadline=None)
@given(raw=_raw_records.filter(lambda r: len(r) >= 2), data=st.data())
def test_any_deletion_or_swap_is_named_at_its_position(raw, data):
    log = seal_all(raw)
    k = data.draw(st.integers(1, len(log) - 1), label="k")
    if data.draw(st.booleans(), label="swap"):
        log[k - 1], log[k] = log[k], log[k - 1]
    else:
        del log[k - 1]
    assert verify_log(iter(log)).first_bad_seq == k


@settings(max_examples=50, deadline=None)
@given(raw=_raw_records)
def test_any_untouched_log_verifies_against_its_checkpoints(raw):
    private, public = new_key()
    log = seal_all(raw)
    cps = sign_checkpoints(log, private, every=3)
    result = verify_log(iter(log), cps, public)
    assert result.ok and result.records == len(log) and result.checkpoints_checked == len(cps)
