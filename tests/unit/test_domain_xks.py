"""The XKS proxy's AES-GCM (domain/crypto/xks.py) against the specification: the Appendix C integrity value
example, the length-prefixed AAD of the Encrypt API, and what a changed field does."""
from __future__ import annotations

import pytest

from domain.crypto import xks
from domain.errors import InvalidCiphertextError


def test_the_integrity_value_of_the_specification_example():
    # Appendix C: 33 bytes of AAD, 13 of ciphertextMetadata, 12 of IV, 12 of ciphertext, a 16-byte tag.
    sealed = xks.Sealed(bytes.fromhex("821c642b5b71783367deaf18"), b"key_version=1",
                        bytes.fromhex("1ccae5470f39700254779031"), bytes.fromhex("bc1c4dda7707d6812447c5955e99b261"))
    assert xks.integrity_value(b"project=nile,department=marketing", sealed) == \
        "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="


def test_the_aad_input_is_length_prefixed_as_the_specification_says():
    assert xks.gcm_aad(b"ab", b"m") == b"\x00\x02ab\x01m"
    assert xks.gcm_aad(b"", b"") == b"\x00\x00\x00"
    # Metadata passed as AAD (and none as metadata) is a different input: it cannot stand in for the other.
    assert xks.gcm_aad(b"", b"m") != xks.gcm_aad(b"m", b"")


def test_seal_and_open_and_every_changed_part_is_refused():
    key, material = bytes(range(32)), bytes(16)
    sealed = xks.seal(key, material, b"data key", b"aad")
    assert len(sealed.initialization_vector) == 16 and len(sealed.authentication_tag) == 16
    assert len(sealed.ciphertext) == len(b"data key") and len(sealed.ciphertext_metadata) <= xks.MAX_METADATA_BYTES
    assert xks.material_of(sealed.ciphertext_metadata) == material
    assert xks.open_sealed(key, sealed, b"aad") == b"data key"
    for other in (
        xks.Sealed(bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:], sealed.ciphertext_metadata,
                   sealed.initialization_vector, sealed.authentication_tag),
        xks.Sealed(sealed.ciphertext, b"\x01" + bytes(15) + b"\x01", sealed.initialization_vector,
                   sealed.authentication_tag),
        xks.Sealed(sealed.ciphertext, sealed.ciphertext_metadata, bytes(16), sealed.authentication_tag),
        xks.Sealed(sealed.ciphertext, sealed.ciphertext_metadata, sealed.initialization_vector, bytes(16)),
    ):
        with pytest.raises(InvalidCiphertextError):
            xks.open_sealed(key, other, b"aad")
    with pytest.raises(InvalidCiphertextError):
        xks.open_sealed(key, sealed, b"other aad")
    with pytest.raises(InvalidCiphertextError):
        xks.material_of(b"\x02" + material)
