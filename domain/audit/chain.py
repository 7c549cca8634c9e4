"""The tamper-evident audit chain (docs/audit.md): hashing, sealing, signed checkpoints, verification.

Canonical JSON is ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8, with NaN and infinities refused (they have no JSON spelling, so no other verifier
could reproduce the bytes). Key order never matters; non-ASCII text is hashed as its UTF-8 bytes.

    leaf_i  = SHA-256(0x00 | canonical(record_i without "leaf" and "chain"))   -- "seq" is hashed
    chain_i = SHA-256(chain_{i-1} | leaf_i), chain_0 = 32 zero bytes             -- raw digests
    checkpoint_hash = SHA-256(0x01 | canonical(body)), body = {seq, chain, time, previous_checkpoint_hash}
    checkpoint signature = Ed25519 over canonical(body)

The 0x00/0x01 prefixes keep a record and a checkpoint from ever hashing alike.

``verify_log`` reports ``first_bad_seq`` as the lowest seq the log can no longer vouch for:
  * modified record (content does not give its leaf, or its chain does not follow) -> that position's seq;
  * deleted record (a seq gap) -> the missing seq; two swapped records -> the lower of the two;
  * a record whose seq does not increase (an inserted or replayed record that is intact) -> its own seq;
  * a log that was rewritten and re-chained, detected only by a checkpoint -> one past the last checkpoint
    that matched (some record between there and that checkpoint differs; the chain cannot say which);
  * truncation below the latest checkpoint -> the first seq that is missing at the end;
  * a problem in the checkpoint file itself (bad signature, broken link, seq going backwards) -> None:
    no record is at fault, the file the log is judged against is.
The checkpoint file must be complete: its first checkpoint has no previous one.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = bytes(32)
LEAF_PREFIX, _CHECKPOINT_PREFIX = b"\x00", b"\x01"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PROGRESS_EVERY = 10_000


# allow_nan=False makes json raise ValueError on NaN/inf instead of writing non-JSON tokens. One encoder for
# every call: json.dumps with these arguments would build a new one each time (it holds no per-call state).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(obj) -> bytes:
    return _CANONICAL.encode(obj).encode("utf-8")


def leaf_hash(record: Mapping) -> bytes:
    body = {k: v for k, v in record.items() if k not in ("leaf", "chain")}
    return hashlib.sha256(LEAF_PREFIX + canonical(body)).digest()


def _one_shot(value: object) -> object:
    raise TypeError(f"{type(value).__name__} has no JSON spelling")


def body_leaf(body: dict) -> bytes | None:
    """``leaf_hash`` of a record already split from its leaf and chain, decoded from JSON (so without cycles),
    or None when no verifier could canonicalise it. The same bytes as ``canonical``, from the C encoder called
    directly without its cycle check: about 2 µs less per record than ``JSONEncoder.encode`` (verify's loop)."""
    try:
        if c_make_encoder is None:  # an interpreter without the C accelerator
            return hashlib.sha256(LEAF_PREFIX + canonical(body)).digest()
        encode = c_make_encoder(None, _one_shot, encode_basestring, None, ":", ",", True, False, False)
        return hashlib.sha256(LEAF_PREFIX + "".join(encode(body, 0)).encode("utf-8")).digest()
    except (TypeError, ValueError, RecursionError):
        return None


def next_chain(previous: bytes, leaf: bytes) -> bytes:
    if len(previous) != 32 or len(leaf) != 32:
        raise ValueError("chain and leaf hashes are 32-byte SHA-256 digests")
    return hashlib.sha256(previous + leaf).digest()


def seal(record: dict, previous_chain: bytes, seq: int) -> dict:
    """A shallow copy of ``record`` with seq, leaf and chain set: do not mutate nested values afterwards."""
    return _seal(record, previous_chain, seq)[0]


def seal_run(records: Iterable[dict], previous_chain: bytes, first_seq: int,
             canonical_of: Callable[[dict], bytes] | None = None) -> list[dict]:
    """``seal`` of each record in turn, each on the chain of the one before, the first on ``previous_chain``
    as ``first_seq``: what appending them one by one gives, without a hex round trip of the chain between.
    ``canonical_of``: another encoder giving exactly ``canonical``'s bytes, or raising as it raises (the
    committer's, application/audit/record_json.py)."""
    sealed, chain, seq = [], previous_chain, first_seq
    for record in records:
        one, chain = _seal(record, chain, seq, canonical_of or canonical)
        sealed.append(one)
        seq += 1
    return sealed


def _seal(record: dict, previous_chain: bytes, seq: int,
          canonical_of: Callable[[dict], bytes] = canonical) -> tuple[dict, bytes]:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError(f"seq must be an integer from 1, not {seq!r}")
    # dict() then pop leaves the keys in the order leaf_hash's comprehension would, for one C-level copy.
    sealed = dict(record)
    sealed.pop("leaf", None)
    sealed.pop("chain", None)
    sealed["seq"] = seq
    leaf = hashlib.sha256(LEAF_PREFIX + canonical_of(sealed)).digest()  # leaf_hash(sealed), which copies it again
    chain = next_chain(previous_chain, leaf)
    sealed["leaf"], sealed["chain"] = leaf.hex(), chain.hex()
    return sealed, chain


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    chain: str
    time: str
    previous: str | None
    signature: str


def _body(cp: Checkpoint) -> bytes:
    return canonical({"seq": cp.seq, "chain": cp.chain, "time": cp.time, "previous_checkpoint_hash": cp.previous})


def checkpoint_hash(cp: Checkpoint) -> str:
    return hashlib.sha256(_CHECKPOINT_PREFIX + _body(cp)).hexdigest()


def make_checkpoint(private_key_bytes_raw32: bytes, seq: int, chain_hex: str, time_iso: str,
                    previous: Checkpoint | None) -> Checkpoint:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"checkpoint seq must be an integer from 0, not {seq!r}")
    if not isinstance(chain_hex, str) or not _HEX64.fullmatch(chain_hex):
        raise ValueError("checkpoint chain must be 64 lowercase hex digits")
    # A signer that goes backwards would produce a file its own verifier rejects; refuse at the source.
    if previous is not None and seq < previous.seq:
        raise ValueError(f"checkpoint seq {seq} is below the previous checkpoint's seq {previous.seq}")
    unsigned = Checkpoint(seq, chain_hex, time_iso, checkpoint_hash(previous) if previous else None, "")
    signature = Ed25519PrivateKey.from_private_bytes(private_key_bytes_raw32).sign(_body(unsigned))
    return Checkpoint(seq, chain_hex, time_iso, unsigned.previous, signature.hex())


def checkpoint_public_key(private_key_bytes_raw32: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key that verifies what ``make_checkpoint`` signs with this private key."""
    return Ed25519PrivateKey.from_private_bytes(private_key_bytes_raw32).public_key().public_bytes_raw()


def verify_checkpoint_signature(public_key_raw32: bytes, cp: Checkpoint) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw32).verify(bytes.fromhex(cp.signature), _body(cp))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def checkpoint_to_json(cp: Checkpoint) -> str:
    # JSON escapes control characters inside strings, so the line never contains a raw newline.
    return canonical({"seq": cp.seq, "chain": cp.chain, "time": cp.time,
                      "previous_checkpoint_hash": cp.previous, "signature": cp.signature}).decode("utf-8")


def checkpoint_from_json(line: str) -> Checkpoint:
    obj = json.loads(line)
    if not isinstance(obj, dict) or set(obj) != {"seq", "chain", "time", "previous_checkpoint_hash", "signature"}:
        raise ValueError("not a checkpoint: expected seq, chain, time, previous_checkpoint_hash and signature")
    seq, prev = obj["seq"], obj["previous_checkpoint_hash"]
    strings = all(isinstance(obj[k], str) for k in ("chain", "time", "signature"))
    if isinstance(seq, bool) or not isinstance(seq, int) or not strings or not (prev is None or isinstance(prev, str)):
        raise ValueError("not a checkpoint: a field has the wrong type")
    return Checkpoint(seq, obj["chain"], obj["time"], prev, obj["signature"])


@dataclass
class VerifyResult:
    ok: bool
    records: int                # records that passed the per-record checks before the problem (all when ok)
    first_bad_seq: int | None
    problem: str | None
    checkpoints_checked: int    # checkpoints whose chain was matched against the log


def _checkpoint_file_problem(checkpoints: Sequence[Checkpoint], public_key: bytes | None,
                             after: Checkpoint | None = None) -> str | None:
    """``after``: the checkpoints continue the file after this one, which an earlier verify proved."""
    for i, cp in enumerate(checkpoints):
        where = f"checkpoint #{i + 1} (seq {cp.seq}, {cp.time})"
        before = checkpoints[i - 1] if i else after
        seq_ok = not isinstance(cp.seq, bool) and isinstance(cp.seq, int) and cp.seq >= 0
        if not seq_ok or not isinstance(cp.chain, str) or not _HEX64.fullmatch(cp.chain):
            return f"{where} is malformed"
        if public_key is not None and not verify_checkpoint_signature(public_key, cp):
            return f"{where} is forged: its signature does not verify with the checkpoint public key"
        expected_prev = checkpoint_hash(before) if before is not None else None
        if cp.previous != expected_prev and before is not None:
            return f"{where} is not linked to the checkpoint before it: checkpoints were removed, inserted or replaced"
        if cp.previous != expected_prev:
            return f"{where} names a previous checkpoint, so the checkpoint file is not complete"
        if before is not None and cp.seq < before.seq:
            return f"{where} goes backwards: the checkpoint before it covers seq {before.seq}"
    return None


def _with_leaves(records: Iterable[Mapping]) -> Iterator[tuple[Mapping, bytes | None]]:
    for record in records:
        try:
            leaf = leaf_hash(record) if isinstance(record, Mapping) else None
        except (TypeError, ValueError):  # content no verifier could canonicalise cannot match any leaf
            leaf = None
        yield record, leaf


def verify_log(records: Iterable[Mapping], checkpoints: Sequence[Checkpoint] = (),
               public_key_raw32: bytes | None = None,
               progress: Callable[[int], None] | None = None, *, after_seq: int = 0,
               after_chain: bytes = GENESIS, after_checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Stream ``records`` (expected in seq order) and stop at the first problem; see the module docstring.

    Without ``public_key_raw32`` checkpoint signatures are not checked, only their links and chains.
    ``after_seq``/``after_chain``: the records follow a position already proved (a signed checkpoint's).
    ``after_checkpoint``: ``checkpoints`` continue the file after this one (already proved), so the first of
    them links to it instead of starting the file.
    """
    return verify_leaves(_with_leaves(records), checkpoints, public_key_raw32, progress, after_seq=after_seq,
                         after_chain=after_chain, after_checkpoint=after_checkpoint)


def verify_leaves(entries: Iterable[tuple[Mapping, bytes | None]], checkpoints: Sequence[Checkpoint] = (),
                  public_key_raw32: bytes | None = None,
                  progress: Callable[[int], None] | None = None, *, after_seq: int = 0,
                  after_chain: bytes = GENESIS, after_checkpoint: Checkpoint | None = None) -> VerifyResult:
    """``verify_log`` of (record, the leaf of its content or None when it has none) pairs: the leaf computed
    by whoever decoded the record, as ``leaf_hash`` would (``body_leaf``)."""
    checked = 0

    def bad(seq: int | None, problem: str, good: int) -> VerifyResult:
        return VerifyResult(False, good, seq, problem, checked)

    problem = _checkpoint_file_problem(checkpoints, public_key_raw32, after_checkpoint)
    if problem:
        return bad(None, problem, 0)
    chain, last, vouched, cp_index = after_chain, after_seq, after_seq, 0

    def match_checkpoints() -> VerifyResult | None:
        nonlocal cp_index, checked, vouched
        while cp_index < len(checkpoints) and checkpoints[cp_index].seq == last:
            cp = checkpoints[cp_index]
            if cp.chain != chain.hex():
                return bad(vouched + 1, f"the log does not match the checkpoint at seq {cp.seq} ({cp.time}): a "
                           f"record between seq {vouched + 1} and {cp.seq} was changed, inserted or deleted and the "
                           f"chain recomputed (log rolled back, forked or rewritten)", last)
            cp_index, checked, vouched = cp_index + 1, checked + 1, cp.seq
        return None

    failure = match_checkpoints()  # checkpoints taken while the log was still empty
    if failure:
        return failure
    if len(chain) != 32:
        raise ValueError("chain hashes are 32-byte SHA-256 digests")
    sha256, due = hashlib.sha256, checkpoints[cp_index].seq if cp_index < len(checkpoints) else -1
    stream: Iterator[tuple[Mapping, bytes | None]] = iter(entries)
    for record, leaf in stream:
        expected = last + 1
        seq = record.get("seq") if type(record) is dict or isinstance(record, Mapping) else None
        if type(seq) is not int and (isinstance(seq, bool) or not isinstance(seq, int)):  # the usual case: one test
            return bad(expected, f"the record after seq {last} has no valid seq", last)
        if leaf is None or record.get("leaf") != leaf.hex():
            who = f"record seq {seq}" if seq == expected else f"the record after seq {last} (claiming seq {seq})"
            return bad(expected, f"{who} was modified: its leaf does not match its content", last)
        if seq != expected:
            if seq > expected:
                # One record of lookahead tells a swap from a deletion; the stream stops here either way.
                following = next(stream, (None, None))[0]
                if isinstance(following, Mapping) and following.get("seq") == expected:
                    return bad(expected, f"records seq {expected} and {seq} are out of order: seq {seq} comes first",
                               last)
                return bad(expected, f"record seq {expected} is missing (deleted): seq {seq} follows seq {last}", last)
            return bad(seq, f"record seq {seq} appears again after seq {last}: a record was inserted or replayed", last)
        chain = sha256(chain + leaf).digest()  # next_chain: both are 32-byte digests here
        if record.get("chain") != chain.hex():
            return bad(seq, f"record seq {seq} does not follow seq {last}: its chain hash does not derive from the "
                       f"previous chain (its chain was altered, or records before it were changed)", last)
        last = seq
        if progress is not None and last % _PROGRESS_EVERY == 0:
            progress(last)
        if last == due:
            failure = match_checkpoints()
            if failure:
                return failure
            due = checkpoints[cp_index].seq if cp_index < len(checkpoints) else -1
    if progress is not None and (last == 0 or last % _PROGRESS_EVERY):
        progress(last)  # the final count, unless the loop just reported it
    if checkpoints and checkpoints[-1].seq > last:
        return bad(last + 1, f"truncated: log ends at seq {last} but checkpoint covers seq {checkpoints[-1].seq}", last)
    return VerifyResult(True, last, None, None, checked)
