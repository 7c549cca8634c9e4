"""Symmetric cryptography end to end: Encrypt / Decrypt / ReEncrypt / GenerateDataKey(WithoutPlaintext) /
GenerateRandom against a real server on both backends, including every way a ciphertext can be wrong."""
from __future__ import annotations

import base64
import os

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.helpers import all_key_forms, code, create_key, key_arn, unvalidated_client

UNKNOWN_KEY_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def key_id(kms) -> str:
    return create_key(kms, Description="crypto test key")["KeyId"]


@pytest.fixture(scope="module")
def module_kms(shared_server):
    return shared_server.client()


@pytest.fixture(scope="module")
def module_key(module_kms) -> str:
    return create_key(module_kms, Description="property test key")["KeyId"]


def _refused(call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as excinfo:
        call(*args, **kwargs)
    return excinfo.value


# -- Encrypt / Decrypt -------------------------------------------------------------------------------

def test_encrypt_decrypt_round_trip_without_key_id(kms, key_id):
    plaintext = os.urandom(100)
    encrypted = kms.encrypt(KeyId=key_id, Plaintext=plaintext)
    assert encrypted["KeyId"] == key_arn(key_id)
    assert encrypted["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert plaintext not in encrypted["CiphertextBlob"]
    decrypted = kms.decrypt(CiphertextBlob=encrypted["CiphertextBlob"])
    assert decrypted["Plaintext"] == plaintext
    assert decrypted["KeyId"] == key_arn(key_id)
    assert decrypted["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"


def test_same_plaintext_encrypts_differently(kms, key_id):
    first = kms.encrypt(KeyId=key_id, Plaintext=b"same")["CiphertextBlob"]
    second = kms.encrypt(KeyId=key_id, Plaintext=b"same")["CiphertextBlob"]
    assert first != second
    assert kms.decrypt(CiphertextBlob=first)["Plaintext"] == kms.decrypt(CiphertextBlob=second)["Plaintext"] == b"same"


def test_encrypt_and_decrypt_with_key_id_in_every_form(kms, key_id):
    forms = all_key_forms(kms, key_id)
    for encrypt_form, encrypt_ref in forms.items():
        plaintext = f"encrypted via {encrypt_form}".encode()
        blob = kms.encrypt(KeyId=encrypt_ref, Plaintext=plaintext)["CiphertextBlob"]
        for decrypt_form, decrypt_ref in forms.items():
            decrypted = kms.decrypt(CiphertextBlob=blob, KeyId=decrypt_ref)
            assert decrypted["Plaintext"] == plaintext, (encrypt_form, decrypt_form)
            assert decrypted["KeyId"] == key_arn(key_id)


def test_decrypt_with_wrong_key_id_is_incorrect_key(kms, key_id):
    other = create_key(kms)["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    for ref in all_key_forms(kms, other).values():
        with pytest.raises(kms.exceptions.IncorrectKeyException):
            kms.decrypt(CiphertextBlob=blob, KeyId=ref)


def test_decrypt_naming_unknown_key(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    error = _refused(kms.decrypt, CiphertextBlob=blob, KeyId=UNKNOWN_KEY_ID)
    assert code(error) in ("NotFoundException", "IncorrectKeyException")


def test_ciphertext_from_another_region_is_invalid(kms, shared_server, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"us-east-1 only")["CiphertextBlob"]
    other_region = shared_server.client(region="eu-west-1")
    with pytest.raises(other_region.exceptions.InvalidCiphertextException):
        other_region.decrypt(CiphertextBlob=blob)


def test_non_symmetric_algorithm_on_symmetric_key_is_refused(kms, key_id):
    error = _refused(kms.encrypt, KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert code(error) in ("InvalidKeyUsageException", "ValidationException")
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="SYMMETRIC_DEFAULT")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionAlgorithm="SYMMETRIC_DEFAULT")["Plaintext"] == b"x"


def test_encrypt_with_unknown_key_is_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.encrypt(KeyId=UNKNOWN_KEY_ID, Plaintext=b"x")
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.encrypt(KeyId="alias/does-not-exist-e2e", Plaintext=b"x")


# -- Encryption context ------------------------------------------------------------------------------

def test_encryption_context_round_trip(kms, key_id):
    context = {"tenant": "acme", "purpose": "invoice", "ünïcode": "välue"}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"with context", EncryptionContext=context)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == b"with context"
    # Order does not matter.
    reordered = dict(reversed(list(context.items())))
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=reordered)["Plaintext"] == b"with context"


@pytest.mark.parametrize("wrong", [
    None,  # missing
    {},
    {"tenant": "acme"},  # subset
    {"tenant": "acme", "purpose": "invoice", "extra": "x"},  # superset
    {"tenant": "ACME", "purpose": "invoice"},  # value case differs
    {"Tenant": "acme", "purpose": "invoice"},  # key case differs
    {"tenant": "acme", "purpose": "invoice "},  # trailing space
], ids=["missing", "empty", "subset", "superset", "value-case", "key-case", "trailing-space"])
def test_wrong_encryption_context_is_invalid_ciphertext(kms, key_id, wrong):
    context = {"tenant": "acme", "purpose": "invoice"}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"bound", EncryptionContext=context)["CiphertextBlob"]
    kwargs = {} if wrong is None else {"EncryptionContext": wrong}
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, **kwargs)


def test_context_given_on_decrypt_but_not_on_encrypt(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"no context")["CiphertextBlob"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    # Absent and empty are the same context.
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={})["Plaintext"] == b"no context"


def test_context_concatenation_cannot_collide(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"ab/c", EncryptionContext={"ab": "c"})["CiphertextBlob"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "bc"})
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"abc": ""})
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"ab": "c"})["Plaintext"] == b"ab/c"


# -- Bad ciphertexts -----------------------------------------------------------------------------------

def _flip(blob: bytes, index: int) -> bytes:
    mutable = bytearray(blob)
    mutable[index] ^= 0x01
    return bytes(mutable)


def test_tampered_ciphertext_is_invalid(kms, key_id):
    plaintext = os.urandom(64)
    blob = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext={"k": "v"})["CiphertextBlob"]
    body_start = len(blob) - len(plaintext) - 16  # whatever the header is, the last len+16 bytes carry data + tag
    header_positions = [0, 1, 8, body_start // 2, body_start - 1]
    body_positions = [body_start, body_start + len(plaintext) // 2, len(blob) - 17, len(blob) - 1]
    for index in header_positions + body_positions:
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=_flip(blob, index), EncryptionContext={"k": "v"})
    # The untouched blob still decrypts.
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})["Plaintext"] == plaintext


def test_tampered_ciphertext_with_key_id_is_invalid(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"payload")["CiphertextBlob"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=_flip(blob, len(blob) - 1), KeyId=key_id)


def test_truncated_ciphertext_is_invalid(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"truncate me please")["CiphertextBlob"]
    for length in (1, 10, len(blob) // 2, len(blob) - 16, len(blob) - 1):
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=blob[:length])


def test_extended_ciphertext_is_invalid(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"extend me")["CiphertextBlob"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob + b"\x00")


@pytest.mark.parametrize("size", [1, 16, 77, 200, 6144])
def test_random_garbage_is_invalid_ciphertext(kms, size):
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=os.urandom(size))


def test_ciphertext_over_6144_bytes_is_validation_error(shared_server):
    raw = unvalidated_client(shared_server)
    error = _refused(raw.decrypt, CiphertextBlob=os.urandom(6145))
    assert code(error) == "ValidationException"


def test_garbage_shaped_like_a_blob_is_invalid_ciphertext(kms, key_id):
    # A real blob's first bytes followed by random bytes: right version/key, nothing else.
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x" * 32)["CiphertextBlob"]
    for keep in (1, 17, 33):
        forged = blob[:keep] + os.urandom(len(blob) - keep)
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=forged)


def test_ciphertext_of_other_key_spliced_is_invalid(kms, key_id):
    other = create_key(kms)["KeyId"]
    mine = kms.encrypt(KeyId=key_id, Plaintext=b"A" * 40)["CiphertextBlob"]
    theirs = kms.encrypt(KeyId=other, Plaintext=b"B" * 40)["CiphertextBlob"]
    # Header of one, body of the other (same lengths).
    for index in (17, 33, 49, 61):
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=mine[:index] + theirs[index:])


# -- Plaintext size -----------------------------------------------------------------------------------

def test_plaintext_of_4096_bytes_is_accepted(kms, key_id):
    plaintext = os.urandom(4096)
    blob = kms.encrypt(KeyId=key_id, Plaintext=plaintext)["CiphertextBlob"]
    assert len(blob) <= 6144
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext


def test_plaintext_of_4097_bytes_is_refused_without_echoing_it(kms, key_id):
    marker = b"TOP-SECRET-PLAINTEXT-"
    plaintext = (marker * 200)[:4097]
    assert len(plaintext) == 4097
    error = _refused(kms.encrypt, KeyId=key_id, Plaintext=plaintext)
    assert code(error) == "ValidationException"
    message = error.response["Error"]["Message"]
    assert "TOP-SECRET" not in message
    assert base64.b64encode(plaintext)[:40].decode() not in message
    assert base64.b64encode(marker).decode()[:20] not in message


def test_empty_plaintext_is_refused(shared_server, key_id):
    raw = unvalidated_client(shared_server)
    error = _refused(raw.encrypt, KeyId=key_id, Plaintext=b"")
    assert code(error) == "ValidationException"


# -- Key states ---------------------------------------------------------------------------------------

def test_disabled_key_refuses_crypto(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"before disable")["CiphertextBlob"]
    kms.disable_key(KeyId=key_id)
    with pytest.raises(kms.exceptions.DisabledException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    with pytest.raises(kms.exceptions.DisabledException):
        kms.decrypt(CiphertextBlob=blob)
    with pytest.raises(kms.exceptions.DisabledException):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    with pytest.raises(kms.exceptions.DisabledException):
        kms.generate_data_key_without_plaintext(KeyId=key_id, KeySpec="AES_256")
    other = create_key(kms)["KeyId"]
    with pytest.raises(kms.exceptions.DisabledException):
        kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other)
    # Re-enabled, the old ciphertext decrypts again.
    kms.enable_key(KeyId=key_id)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before disable"


def test_key_pending_deletion_refuses_crypto(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"before deletion")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.decrypt(CiphertextBlob=blob)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.generate_data_key_without_plaintext(KeyId=key_id, NumberOfBytes=32)
    # Cancelled, the key is Disabled; enabled again, the old ciphertext decrypts.
    kms.cancel_key_deletion(KeyId=key_id)
    with pytest.raises(kms.exceptions.DisabledException):
        kms.decrypt(CiphertextBlob=blob)
    kms.enable_key(KeyId=key_id)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before deletion"


# -- ReEncrypt ----------------------------------------------------------------------------------------

def test_re_encrypt_to_another_key_with_contexts(kms, key_id):
    destination = create_key(kms)["KeyId"]
    source_context, destination_context = {"stage": "source"}, {"stage": "destination", "n": "2"}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"move me", EncryptionContext=source_context)["CiphertextBlob"]

    moved = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=source_context,
                           DestinationKeyId=destination, DestinationEncryptionContext=destination_context)
    assert moved["SourceKeyId"] == key_arn(key_id)
    assert moved["KeyId"] == key_arn(destination)
    assert moved["SourceEncryptionAlgorithm"] == moved["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    new_blob = moved["CiphertextBlob"]

    decrypted = kms.decrypt(CiphertextBlob=new_blob, EncryptionContext=destination_context)
    assert decrypted["Plaintext"] == b"move me"
    assert decrypted["KeyId"] == key_arn(destination)
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=new_blob, EncryptionContext=source_context)
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.decrypt(CiphertextBlob=new_blob, KeyId=key_id, EncryptionContext=destination_context)


def test_re_encrypt_with_wrong_source_context_or_key(kms, key_id):
    destination = create_key(kms)["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"a": "1"})["CiphertextBlob"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"a": "2"}, DestinationKeyId=destination)
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"a": "1"}, SourceKeyId=destination,
                       DestinationKeyId=destination)
    moved = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"a": "1"}, SourceKeyId=key_id,
                           DestinationKeyId=destination)
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"] == b"x"


# -- GenerateDataKey ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,length", [
    ({"KeySpec": "AES_256"}, 32),
    ({"KeySpec": "AES_128"}, 16),
    ({"NumberOfBytes": 1}, 1),
    ({"NumberOfBytes": 64}, 64),
    ({"NumberOfBytes": 1024}, 1024),
], ids=["AES_256", "AES_128", "1-byte", "64-bytes", "1024-bytes"])
def test_generate_data_key(kms, key_id, kwargs, length):
    context = {"file": "report.pdf"}
    response = kms.generate_data_key(KeyId=key_id, EncryptionContext=context, **kwargs)
    assert response["KeyId"] == key_arn(key_id)
    assert len(response["Plaintext"]) == length
    decrypted = kms.decrypt(CiphertextBlob=response["CiphertextBlob"], EncryptionContext=context)
    assert decrypted["Plaintext"] == response["Plaintext"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=response["CiphertextBlob"])


def test_generate_data_keys_are_distinct(kms, key_id):
    keys = {kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")["Plaintext"] for _ in range(5)}
    assert len(keys) == 5


def test_generate_data_key_with_both_key_spec_and_number_of_bytes(kms, key_id):
    error = _refused(kms.generate_data_key, KeyId=key_id, KeySpec="AES_256", NumberOfBytes=32)
    assert code(error) == "ValidationException"


def test_generate_data_key_with_neither_key_spec_nor_number_of_bytes(kms, key_id):
    error = _refused(kms.generate_data_key, KeyId=key_id)
    assert code(error) == "ValidationException"
    error = _refused(kms.generate_data_key_without_plaintext, KeyId=key_id)
    assert code(error) == "ValidationException"


@pytest.mark.parametrize("number_of_bytes", [0, 1025, -1])
def test_generate_data_key_number_of_bytes_out_of_range(shared_server, key_id, number_of_bytes):
    raw = unvalidated_client(shared_server)
    error = _refused(raw.generate_data_key, KeyId=key_id, NumberOfBytes=number_of_bytes)
    assert code(error) == "ValidationException"


def test_generate_data_key_with_unknown_key_spec(shared_server, key_id):
    raw = unvalidated_client(shared_server)
    error = _refused(raw.generate_data_key, KeyId=key_id, KeySpec="AES_512")
    assert code(error) == "ValidationException"


def test_generate_data_key_without_plaintext(kms, key_id):
    response = kms.generate_data_key_without_plaintext(KeyId=key_id, KeySpec="AES_256",
                                                      EncryptionContext={"k": "v"})
    assert "Plaintext" not in response
    assert response["KeyId"] == key_arn(key_id)
    decrypted = kms.decrypt(CiphertextBlob=response["CiphertextBlob"], EncryptionContext={"k": "v"})
    assert len(decrypted["Plaintext"]) == 32
    response = kms.generate_data_key_without_plaintext(KeyId=key_id, NumberOfBytes=20)
    assert "Plaintext" not in response
    assert len(kms.decrypt(CiphertextBlob=response["CiphertextBlob"])["Plaintext"]) == 20


# -- GenerateRandom -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 32, 1024])
def test_generate_random(kms, n):
    random_bytes = kms.generate_random(NumberOfBytes=n)["Plaintext"]
    assert len(random_bytes) == n


def test_generate_random_differs(kms):
    assert kms.generate_random(NumberOfBytes=32)["Plaintext"] != kms.generate_random(NumberOfBytes=32)["Plaintext"]


@pytest.mark.parametrize("n", [0, 1025, -5])
def test_generate_random_out_of_range(shared_server, n):
    raw = unvalidated_client(shared_server)
    error = _refused(raw.generate_random, NumberOfBytes=n)
    assert code(error) == "ValidationException"


def test_generate_random_in_unknown_custom_key_store(kms):
    # GenerateRandom's CustomKeyStoreId names a CloudHSM key store; one that does not exist is
    # CustomKeyStoreNotFoundException (botocore model). Silently ignoring it would hand out bytes that did
    # not come from the HSM the caller asked for.
    error = _refused(kms.generate_random, NumberOfBytes=8, CustomKeyStoreId="cks-1234567890abcdef0")
    assert code(error) == "CustomKeyStoreNotFoundException"


_RECIPIENT = {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": b"not an attestation document"}


@pytest.mark.parametrize("operation", ["Decrypt", "GenerateDataKey", "GenerateRandom"])
def test_recipient_never_gets_plaintext_in_clear(kms, key_id, operation):
    # With Recipient, AWS encrypts the result to the enclave's public key (CiphertextForRecipient) and
    # returns no Plaintext; an attestation document that does not verify is refused. Either way, the
    # plaintext must never come back in clear.
    calls = {
        "Decrypt": lambda: kms.decrypt(
            CiphertextBlob=kms.encrypt(KeyId=key_id, Plaintext=b"enclave only")["CiphertextBlob"], Recipient=_RECIPIENT),
        "GenerateDataKey": lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", Recipient=_RECIPIENT),
        "GenerateRandom": lambda: kms.generate_random(NumberOfBytes=32, Recipient=_RECIPIENT),
    }
    try:
        response = calls[operation]()
    except ClientError as error:
        assert 400 <= error.response["ResponseMetadata"]["HTTPStatusCode"] < 500, error.response
        return
    assert not response.get("Plaintext"), f"{operation} with Recipient returned the plaintext in clear"
    assert response.get("CiphertextForRecipient")


# -- DryRun -------------------------------------------------------------------------------------------

def test_dry_run_encrypt(kms, key_id):
    with pytest.raises(kms.exceptions.DryRunOperationException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", DryRun=True)


def test_dry_run_decrypt_and_generate_data_key(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(kms.exceptions.DryRunOperationException):
        kms.decrypt(CiphertextBlob=blob, DryRun=True)
    with pytest.raises(kms.exceptions.DryRunOperationException):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", DryRun=True)


def test_dry_run_re_encrypt_and_data_key_without_plaintext(kms, key_id):
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    other = create_key(kms)["KeyId"]
    with pytest.raises(kms.exceptions.DryRunOperationException):
        kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other, DryRun=True)
    with pytest.raises(kms.exceptions.DryRunOperationException):
        kms.generate_data_key_without_plaintext(KeyId=key_id, KeySpec="AES_256", DryRun=True)


def test_dry_run_still_reports_real_errors_first(kms, key_id):
    # DryRun answers "would have succeeded" only when it would: a disabled key is still DisabledException.
    kms.disable_key(KeyId=key_id)
    with pytest.raises(kms.exceptions.DisabledException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", DryRun=True)


# -- Property: Decrypt(Encrypt(x)) == x ---------------------------------------------------------------

_contexts = st.dictionaries(
    keys=st.text(min_size=1, max_size=16),
    values=st.text(max_size=32),
    max_size=5,
)


@settings(max_examples=25, deadline=None, database=None)
@given(plaintext=st.binary(min_size=1, max_size=4096), context=_contexts)
def test_property_decrypt_inverts_encrypt(module_kms, module_key, plaintext, context):
    kms = module_kms
    encrypted = kms.encrypt(KeyId=module_key, Plaintext=plaintext, EncryptionContext=context)
    decrypted = kms.decrypt(CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext=context)
    assert decrypted["Plaintext"] == plaintext
    assert decrypted["KeyId"] == key_arn(module_key)
    if context:
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=encrypted["CiphertextBlob"])
