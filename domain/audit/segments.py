"""Archive segments of the audit log (docs/audit.md, "Retention: archived segments"): the manifest that says what a
segment holds, signed with the checkpoint signing key, and the checks that a run of segments continues the chain.

A segment holds the stored rows of records ``first_seq``..``last_seq`` exactly as the event store held them (with
their store positions), so `verify` reads them as if they had never left. The manifest binds them:

    {format, first_seq, last_seq, first_position, last_position, records, chain_in, chain_out,
     checkpoint (the signed checkpoint at last_seq), previous (manifest_hash of the segment before, or null),
     body_sha256, body_bytes, era_over}  + signature = Ed25519 over canonical(manifest without signature)

``manifest_hash`` links each segment to the one before, as checkpoints are linked, so a dropped, reordered or
replaced segment breaks the run even before any record is read. Nothing in it depends on when it was made (Ed25519
signatures are deterministic too), so two runs over the same records write the same bytes.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.audit.chain import GENESIS, Checkpoint, canonical, verify_checkpoint_signature

SEGMENT_FORMAT = "keyledger-audit-segment/1"
_MANIFEST_PREFIX = b"\x03"  # keeps a manifest from hashing like a record (0x00), checkpoint (0x01) or event (0x02)
FIELDS = frozenset({"format", "first_seq", "last_seq", "first_position", "last_position", "records", "chain_in",
                    "chain_out", "checkpoint", "previous", "body_sha256", "body_bytes", "era_over"})


def _unsigned(manifest: Mapping[str, Any]) -> bytes:
    return canonical({k: v for k, v in manifest.items() if k != "signature"})


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(_MANIFEST_PREFIX + canonical(dict(manifest))).hexdigest()


def sign_manifest(private_key_raw32: bytes, manifest: dict[str, Any]) -> dict[str, Any]:
    signature = Ed25519PrivateKey.from_private_bytes(private_key_raw32).sign(_unsigned(manifest))
    return {**manifest, "signature": signature.hex()}


def manifest_signature_ok(public_key_raw32: bytes, manifest: Mapping[str, Any]) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw32).verify(bytes.fromhex(manifest["signature"]),
                                                                    _unsigned(manifest))
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return False
    return True


def checkpoint_of(manifest: Mapping[str, Any]) -> Checkpoint:
    c = manifest["checkpoint"]
    return Checkpoint(c["seq"], c["chain"], c["time"], c["previous_checkpoint_hash"], c["signature"])


def manifest_problem(manifest: Mapping[str, Any], public_key_raw32: bytes | None) -> str | None:
    """What is wrong with one manifest on its own (shape, signature, its checkpoint), or None."""
    if not isinstance(manifest, dict) or set(manifest) != FIELDS | {"signature"}:
        return "is not a keyledger audit segment (its manifest has other fields)"
    if manifest["format"] != SEGMENT_FORMAT:
        return f"has format {manifest['format']!r}, not {SEGMENT_FORMAT}"
    ints = ("first_seq", "last_seq", "first_position", "last_position", "records", "body_bytes")
    if any(isinstance(manifest[k], bool) or not isinstance(manifest[k], int) for k in ints):
        return "has a malformed manifest"
    if not 1 <= manifest["first_seq"] <= manifest["last_seq"] or \
            manifest["records"] != manifest["last_seq"] - manifest["first_seq"] + 1:
        return "has a malformed manifest (its seqs do not add up)"
    if public_key_raw32 is not None and not manifest_signature_ok(public_key_raw32, manifest):
        return "is forged or altered: its manifest's signature does not verify with the checkpoint public key"
    try:
        checkpoint = checkpoint_of(manifest)
    except (KeyError, TypeError):
        return "has a malformed checkpoint"
    if checkpoint.seq != manifest["last_seq"] or checkpoint.chain != manifest["chain_out"]:
        return "names a checkpoint that does not cover its last record"
    if public_key_raw32 is not None and not verify_checkpoint_signature(public_key_raw32, checkpoint):
        return "names a forged checkpoint"
    return None


def run_problem(manifests: Iterable[Mapping[str, Any]]) -> str | None:
    """Whether ``manifests`` (in seq order) are one unbroken run from the first record: each starts where the one
    before ended, chained from its chain and linked to its manifest."""
    expected_seq, chain, previous = 1, GENESIS.hex(), None
    for manifest in manifests:
        name = f"the segment of records {manifest['first_seq']}-{manifest['last_seq']}"
        if manifest["first_seq"] != expected_seq:
            missing = f"records {expected_seq}-{manifest['first_seq'] - 1}"
            return (f"{name} does not follow the one before it: {missing} are in no segment given (a segment was "
                    "dropped)" if manifest["first_seq"] > expected_seq else f"{name} overlaps the one before it")
        if manifest["chain_in"] != chain or manifest["previous"] != previous:
            return f"{name} is not the one that followed the segment before it: segments were replaced or reordered"
        expected_seq, chain, previous = manifest["last_seq"] + 1, manifest["chain_out"], manifest_hash(manifest)
    return None
