"""Asymmetric and HMAC keys end to end, on SQLite and PostgreSQL, checked for interoperability against
`cryptography` locally: key specs and their algorithms, Sign/Verify (RAW and DIGEST), RSA encryption,
GenerateMac/VerifyMac, data key pairs, ECDH key agreement, and the errors AWS gives for misuse."""
from __future__ import annotations

import hashlib
import os
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from domain.crypto.asymmetric import POST_QUANTUM_SUPPORTED
from tests.e2e.helpers import create_key, error_code, unvalidated_client

RSA_SIGNING = ["RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
               "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"]
RSA_ENCRYPTION = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
HASHES = {"SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512, "SHA_1": hashes.SHA1}
CURVES = {"ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1,
          "ECC_SECG_P256K1": ec.SECP256K1}


# -- helpers -----------------------------------------------------------------------------------------


def hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return HASHES["SHA_" + algorithm.rpartition("SHA_")[2]]()


def digest(algorithm: str, message: bytes) -> bytes:
    h = hashes.Hash(hash_of(algorithm))
    h.update(message)
    return h.finalize()


def public_key(kms: Any, key: str):
    return serialization.load_der_public_key(kms.get_public_key(KeyId=key)["PublicKey"])


def verify_locally(public, algorithm: str, message: bytes, signature: bytes, prehashed: bool = False) -> None:
    """Raises cryptography's InvalidSignature unless ``signature`` is valid (AWS's conventions: PSS salt as
    long as the digest, DER-encoded ECDSA, pure Ed25519)."""
    if algorithm.startswith("ED25519"):
        public.verify(signature, message)
        return
    h = hash_of(algorithm)
    chosen = utils.Prehashed(h) if prehashed else h
    if algorithm.startswith("RSASSA_PSS"):
        public.verify(signature, message, padding.PSS(mgf=padding.MGF1(hash_of(algorithm)),
                                                      salt_length=h.digest_size), chosen)
    elif algorithm.startswith("RSASSA_PKCS1"):
        public.verify(signature, message, padding.PKCS1v15(), chosen)
    else:
        public.verify(signature, message, ec.ECDSA(chosen))


def sign_locally(private, algorithm: str, message: bytes) -> bytes:
    if algorithm.startswith("ED25519"):
        return private.sign(message)
    h = hash_of(algorithm)
    if algorithm.startswith("RSASSA_PSS"):
        return private.sign(message, padding.PSS(mgf=padding.MGF1(hash_of(algorithm)), salt_length=h.digest_size), h)
    if algorithm.startswith("RSASSA_PKCS1"):
        return private.sign(message, padding.PKCS1v15(), h)
    return private.sign(message, ec.ECDSA(h))


def oaep(algorithm: str) -> padding.OAEP:
    h = hash_of(algorithm)
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


def spki(public) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pkcs8(private) -> bytes:
    return private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


@pytest.fixture(scope="module")
def key_of(shared_server) -> Callable[[str, str], str]:
    """One key per (KeySpec, KeyUsage) per server, created on first use (RSA key generation is slow)."""
    kms = shared_server.client()
    made: dict[tuple[str, str], str] = {}

    def get(spec: str, usage: str) -> str:
        if (spec, usage) not in made:
            made[(spec, usage)] = create_key(kms, KeySpec=spec, KeyUsage=usage)["KeyId"]
        return made[(spec, usage)]

    return get


# -- Key specs and their algorithms ---------------------------------------------------------------------

DESCRIBED = [
    ("RSA_2048", "ENCRYPT_DECRYPT", "EncryptionAlgorithms", RSA_ENCRYPTION),
    ("RSA_2048", "SIGN_VERIFY", "SigningAlgorithms", RSA_SIGNING),
    ("RSA_3072", "SIGN_VERIFY", "SigningAlgorithms", RSA_SIGNING),
    ("RSA_4096", "ENCRYPT_DECRYPT", "EncryptionAlgorithms", RSA_ENCRYPTION),
    ("ECC_NIST_P256", "SIGN_VERIFY", "SigningAlgorithms", ["ECDSA_SHA_256"]),
    ("ECC_NIST_P384", "SIGN_VERIFY", "SigningAlgorithms", ["ECDSA_SHA_384"]),
    ("ECC_NIST_P521", "SIGN_VERIFY", "SigningAlgorithms", ["ECDSA_SHA_512"]),
    ("ECC_SECG_P256K1", "SIGN_VERIFY", "SigningAlgorithms", ["ECDSA_SHA_256"]),
    ("ECC_NIST_P256", "KEY_AGREEMENT", "KeyAgreementAlgorithms", ["ECDH"]),
    # Ed25519ph is not advertised: this build cannot sign with it (decision 88)
    ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY", "SigningAlgorithms", ["ED25519_SHA_512"]),
    ("HMAC_224", "GENERATE_VERIFY_MAC", "MacAlgorithms", ["HMAC_SHA_224"]),
    ("HMAC_256", "GENERATE_VERIFY_MAC", "MacAlgorithms", ["HMAC_SHA_256"]),
    ("HMAC_384", "GENERATE_VERIFY_MAC", "MacAlgorithms", ["HMAC_SHA_384"]),
    ("HMAC_512", "GENERATE_VERIFY_MAC", "MacAlgorithms", ["HMAC_SHA_512"]),
]
ALGORITHM_MEMBERS = {"EncryptionAlgorithms", "SigningAlgorithms", "MacAlgorithms", "KeyAgreementAlgorithms"}


@pytest.mark.parametrize("spec,usage,member,algorithms", DESCRIBED, ids=[f"{s}-{u}" for s, u, _, _ in DESCRIBED])
def test_describe_key_lists_the_algorithms_of_the_spec(kms, key_of, spec, usage, member, algorithms):
    key = key_of(spec, usage)
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeySpec"] == spec
    if spec != "ECC_NIST_EDWARDS25519":  # the deprecated CustomerMasterKeySpec enum stops before Ed25519
        assert meta["CustomerMasterKeySpec"] == spec
    assert meta["KeyUsage"] == usage
    assert meta["KeyState"] == "Enabled" and meta["Enabled"] is True
    assert meta["Origin"] == "AWS_KMS"
    assert sorted(meta[member]) == sorted(algorithms)
    for other in ALGORITHM_MEMBERS - {member}:
        assert other not in meta, f"{other} should not be listed for {spec}/{usage}"
    if spec.startswith("HMAC"):
        assert error_code(kms.get_public_key, KeyId=key) == "UnsupportedOperationException"
        return
    response = kms.get_public_key(KeyId=key)
    assert response["KeySpec"] == spec and response["KeyUsage"] == usage
    assert sorted(response[member]) == sorted(algorithms)
    public = serialization.load_der_public_key(response["PublicKey"])
    if spec.startswith("RSA_"):
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == int(spec[4:])
    elif spec in CURVES:
        assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == CURVES[spec].name
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)


def test_symmetric_key_has_no_public_key(kms):
    key = create_key(kms)["KeyId"]
    assert error_code(kms.get_public_key, KeyId=key) == "UnsupportedOperationException"


def test_sm2_is_unsupported(kms):
    for usage in ("SIGN_VERIFY", "ENCRYPT_DECRYPT"):
        assert error_code(kms.create_key, KeySpec="SM2", KeyUsage=usage) == "UnsupportedOperationException"


@pytest.mark.parametrize("spec,usage", [("ECC_SECG_P256K1", "KEY_AGREEMENT"), ("ECC_NIST_P256", "ENCRYPT_DECRYPT"),
                                        ("HMAC_256", "ENCRYPT_DECRYPT"), ("RSA_2048", "GENERATE_VERIFY_MAC"),
                                        ("ECC_NIST_EDWARDS25519", "KEY_AGREEMENT")])
def test_key_usage_the_spec_does_not_allow_is_refused(kms, spec, usage):
    assert error_code(kms.create_key, KeySpec=spec, KeyUsage=usage) == "ValidationException"


def test_ml_dsa_65(kms):
    if not POST_QUANTUM_SUPPORTED["ML_DSA_65"]:
        assert error_code(kms.create_key, KeySpec="ML_DSA_65", KeyUsage="SIGN_VERIFY") == "UnsupportedOperationException"
        return
    from cryptography.hazmat.primitives.asymmetric import mldsa

    meta = create_key(kms, KeySpec="ML_DSA_65", KeyUsage="SIGN_VERIFY")
    assert meta["KeySpec"] == "ML_DSA_65"
    assert meta["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]
    public = public_key(kms, meta["KeyId"])
    assert isinstance(public, mldsa.MLDSA65PublicKey)
    message = b"post-quantum signature"
    signature = kms.sign(KeyId=meta["KeyId"], Message=message, SigningAlgorithm="ML_DSA_SHAKE_256")["Signature"]
    public.verify(signature, message)
    local = mldsa.MLDSA65PrivateKey.generate()
    assert kms.verify(KeyId=meta["KeyId"], Message=message, Signature=signature,
                      SigningAlgorithm="ML_DSA_SHAKE_256")["SignatureValid"] is True
    assert error_code(kms.verify, KeyId=meta["KeyId"], Message=message, Signature=local.sign(message),
                      SigningAlgorithm="ML_DSA_SHAKE_256") == "KMSInvalidSignatureException"


# -- Sign / Verify ----------------------------------------------------------------------------------------

SIGNING = ([("RSA_2048", a) for a in RSA_SIGNING] + [("RSA_3072", "RSASSA_PSS_SHA_384")]
           + [("ECC_NIST_P256", "ECDSA_SHA_256"), ("ECC_NIST_P384", "ECDSA_SHA_384"),
              ("ECC_NIST_P521", "ECDSA_SHA_512"), ("ECC_SECG_P256K1", "ECDSA_SHA_256")])


@pytest.mark.parametrize("spec,algorithm", SIGNING, ids=[f"{s}-{a}" for s, a in SIGNING])
def test_sign_raw_and_digest_verify_locally(kms, key_of, spec, algorithm):
    key = key_of(spec, "SIGN_VERIFY")
    public = public_key(kms, key)
    message = b"interop: signed by keyledger, verified by cryptography " + spec.encode()

    raw = kms.sign(KeyId=key, Message=message, SigningAlgorithm=algorithm)
    assert raw["SigningAlgorithm"] == algorithm and raw["KeyId"].endswith(key)
    verify_locally(public, algorithm, message, raw["Signature"])

    # DIGEST: the message is the hash, signed as given -- never hashed again.
    hashed = digest(algorithm, message)
    signed = kms.sign(KeyId=key, Message=hashed, MessageType="DIGEST", SigningAlgorithm=algorithm)
    verify_locally(public, algorithm, message, signed["Signature"])
    verify_locally(public, algorithm, hashed, signed["Signature"], prehashed=True)

    # Both verify through the API, each with its message type.
    assert kms.verify(KeyId=key, Message=message, Signature=signed["Signature"],
                      SigningAlgorithm=algorithm)["SignatureValid"] is True
    assert kms.verify(KeyId=key, Message=hashed, MessageType="DIGEST", Signature=raw["Signature"],
                      SigningAlgorithm=algorithm)["SignatureValid"] is True


def test_ed25519_sign_verifies_locally(kms, key_of):
    key = key_of("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")
    public = public_key(kms, key)
    message = b"ed25519 interop"
    signature = kms.sign(KeyId=key, Message=message, SigningAlgorithm="ED25519_SHA_512")["Signature"]
    assert len(signature) == 64
    public.verify(signature, message)
    private = ed25519.Ed25519PrivateKey.generate()
    assert error_code(kms.verify, KeyId=key, Message=message, Signature=private.sign(message),
                      SigningAlgorithm="ED25519_SHA_512") == "KMSInvalidSignatureException"
    # Pure Ed25519 does not sign digests.
    assert error_code(kms.sign, KeyId=key, Message=hashlib.sha512(message).digest(), MessageType="DIGEST",
                      SigningAlgorithm="ED25519_SHA_512") == "ValidationException"


def test_ed25519ph_is_neither_advertised_nor_half_served(kms, key_of):
    """Decision 88: cryptography has no Ed25519ph, so the key does not list ED25519_PH_SHA_512 and Sign and Verify
    with it answer UnsupportedOperationException (an algorithm AWS knows, that this build cannot run)."""
    key = key_of("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")
    assert "ED25519_PH_SHA_512" not in kms.describe_key(KeyId=key)["KeyMetadata"]["SigningAlgorithms"]
    assert "ED25519_PH_SHA_512" not in kms.get_public_key(KeyId=key)["SigningAlgorithms"]
    digest = hashlib.sha512(b"prehashed").digest()
    assert error_code(kms.sign, KeyId=key, Message=digest, MessageType="DIGEST",
                      SigningAlgorithm="ED25519_PH_SHA_512") == "UnsupportedOperationException"
    assert error_code(kms.verify, KeyId=key, Message=digest, MessageType="DIGEST", Signature=b"s" * 64,
                      SigningAlgorithm="ED25519_PH_SHA_512") == "UnsupportedOperationException"


@pytest.mark.parametrize("spec,algorithm", [("RSA_2048", "RSASSA_PSS_SHA_256"), ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_512"),
                                            ("ECC_NIST_P384", "ECDSA_SHA_384")])
def test_local_signatures_verify_through_the_api(kms, spec, algorithm):
    """Verify with a key whose private half we hold: an imported key, so the local signer is the same key."""
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if spec.startswith("RSA")
               else ec.generate_private_key(CURVES[spec]()))
    key = create_key(kms, KeySpec=spec, KeyUsage="SIGN_VERIFY", Origin="EXTERNAL")["KeyId"]
    _import_private_key(kms, key, private)
    message = b"signed locally"
    signature = sign_locally(private, algorithm, message)
    assert kms.verify(KeyId=key, Message=message, Signature=signature,
                      SigningAlgorithm=algorithm)["SignatureValid"] is True
    assert kms.verify(KeyId=key, Message=digest(algorithm, message), MessageType="DIGEST", Signature=signature,
                      SigningAlgorithm=algorithm)["SignatureValid"] is True
    assert error_code(kms.verify, KeyId=key, Message=b"another message", Signature=signature,
                      SigningAlgorithm=algorithm) == "KMSInvalidSignatureException"


@pytest.mark.parametrize("spec,algorithm", [("RSA_2048", "RSASSA_PSS_SHA_256"), ("ECC_NIST_P256", "ECDSA_SHA_256"),
                                            ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512")])
def test_bad_signature_is_refused(kms, key_of, spec, algorithm):
    key = key_of(spec, "SIGN_VERIFY")
    message = b"the signed message"
    signature = bytearray(kms.sign(KeyId=key, Message=message, SigningAlgorithm=algorithm)["Signature"])
    assert error_code(kms.verify, KeyId=key, Message=b"a different message", Signature=bytes(signature),
                      SigningAlgorithm=algorithm) == "KMSInvalidSignatureException"
    signature[len(signature) // 2] ^= 0x01
    assert error_code(kms.verify, KeyId=key, Message=message, Signature=bytes(signature),
                      SigningAlgorithm=algorithm) == "KMSInvalidSignatureException"
    assert error_code(kms.verify, KeyId=key, Message=message, Signature=b"\x00" * 8,
                      SigningAlgorithm=algorithm) == "KMSInvalidSignatureException"


@pytest.mark.parametrize("spec,algorithm,length", [("RSA_2048", "RSASSA_PSS_SHA_256", 31),
                                                   ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_384", 32),
                                                   ("ECC_NIST_P256", "ECDSA_SHA_256", 33),
                                                   ("ECC_NIST_P521", "ECDSA_SHA_512", 48)])
def test_digest_of_the_wrong_length_is_refused(kms, key_of, spec, algorithm, length):
    key = key_of(spec, "SIGN_VERIFY")
    assert error_code(kms.sign, KeyId=key, Message=os.urandom(length), MessageType="DIGEST",
                      SigningAlgorithm=algorithm) == "ValidationException"
    assert error_code(kms.verify, KeyId=key, Message=os.urandom(length), MessageType="DIGEST",
                      Signature=b"\x01" * 64, SigningAlgorithm=algorithm) == "ValidationException"


def test_raw_message_over_4096_bytes_is_refused(shared_server, key_of):
    raw = unvalidated_client(shared_server)
    key = key_of("ECC_NIST_P256", "SIGN_VERIFY")
    assert error_code(raw.sign, KeyId=key, Message=b"m" * 4097, SigningAlgorithm="ECDSA_SHA_256") == "ValidationException"


def test_signing_algorithm_of_another_spec_is_refused(kms, key_of):
    key = key_of("ECC_NIST_P256", "SIGN_VERIFY")
    assert error_code(kms.sign, KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_384") == "InvalidKeyUsageException"
    rsa_key = key_of("RSA_2048", "SIGN_VERIFY")
    assert error_code(kms.sign, KeyId=rsa_key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256") == "InvalidKeyUsageException"


def test_wrong_key_usage_is_refused(kms, key_of):
    sign_key = key_of("RSA_2048", "SIGN_VERIFY")
    encrypt_key = key_of("RSA_2048", "ENCRYPT_DECRYPT")
    ecc_key = key_of("ECC_NIST_P256", "SIGN_VERIFY")
    symmetric = create_key(kms)["KeyId"]
    assert error_code(kms.encrypt, KeyId=sign_key, Plaintext=b"x",
                      EncryptionAlgorithm="RSAES_OAEP_SHA_256") == "InvalidKeyUsageException"
    assert error_code(kms.encrypt, KeyId=ecc_key, Plaintext=b"x") == "InvalidKeyUsageException"
    assert error_code(kms.sign, KeyId=encrypt_key, Message=b"m",
                      SigningAlgorithm="RSASSA_PSS_SHA_256") == "InvalidKeyUsageException"
    assert error_code(kms.sign, KeyId=symmetric, Message=b"m",
                      SigningAlgorithm="RSASSA_PSS_SHA_256") == "InvalidKeyUsageException"
    assert error_code(kms.generate_mac, KeyId=symmetric, Message=b"m",
                      MacAlgorithm="HMAC_SHA_256") == "InvalidKeyUsageException"
    assert error_code(kms.generate_data_key, KeyId=encrypt_key, KeySpec="AES_256") == "InvalidKeyUsageException"


def test_disabled_asymmetric_key_is_refused(kms):
    key = create_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyId"]
    signature = kms.sign(KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    kms.disable_key(KeyId=key)
    assert error_code(kms.sign, KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256") == "DisabledException"
    assert error_code(kms.verify, KeyId=key, Message=b"m", Signature=signature,
                      SigningAlgorithm="ECDSA_SHA_256") == "DisabledException"
    assert error_code(kms.get_public_key, KeyId=key) == "DisabledException"
    kms.enable_key(KeyId=key)
    assert kms.verify(KeyId=key, Message=b"m", Signature=signature,
                      SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"] is True


# -- RSA encryption -----------------------------------------------------------------------------------------

def _import_private_key(kms: Any, key: str, private) -> None:
    p = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256",
                                      WrappingKeySpec="RSA_2048")
    wrapping = serialization.load_der_public_key(p["PublicKey"])
    aes_key = os.urandom(32)
    wrapped = wrapping.encrypt(aes_key, oaep("RSAES_OAEP_SHA_256")) + aes_key_wrap_with_padding(aes_key, pkcs8(private))
    kms.import_key_material(KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrapped,
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")


@pytest.mark.parametrize("spec,algorithm", [("RSA_2048", "RSAES_OAEP_SHA_256"), ("RSA_2048", "RSAES_OAEP_SHA_1"),
                                            ("RSA_4096", "RSAES_OAEP_SHA_256")])
def test_locally_encrypted_data_decrypts(kms, key_of, spec, algorithm):
    key = key_of(spec, "ENCRYPT_DECRYPT")
    public = public_key(kms, key)
    plaintext = os.urandom(64)
    blob = public.encrypt(plaintext, oaep(algorithm))
    out = kms.decrypt(KeyId=key, CiphertextBlob=blob, EncryptionAlgorithm=algorithm)
    assert out["Plaintext"] == plaintext
    assert out["EncryptionAlgorithm"] == algorithm
    assert out["KeyId"].endswith(key)
    # And the other way round: the API encrypts, the API decrypts.
    encrypted = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionAlgorithm=algorithm)
    assert encrypted["EncryptionAlgorithm"] == algorithm
    assert kms.decrypt(KeyId=key, CiphertextBlob=encrypted["CiphertextBlob"],
                       EncryptionAlgorithm=algorithm)["Plaintext"] == plaintext


@pytest.mark.parametrize("algorithm", RSA_ENCRYPTION)
def test_api_encrypted_data_decrypts_locally(kms, algorithm):
    """With an imported RSA key we hold the private half, so Encrypt's output can be decrypted locally."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = create_key(kms, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT", Origin="EXTERNAL")["KeyId"]
    _import_private_key(kms, key, private)
    assert kms.get_public_key(KeyId=key)["PublicKey"] == spki(private.public_key())
    plaintext = os.urandom(100)
    blob = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionAlgorithm=algorithm)["CiphertextBlob"]
    assert len(blob) == 256
    assert private.decrypt(blob, oaep(algorithm)) == plaintext


@pytest.mark.parametrize("algorithm,limit", [("RSAES_OAEP_SHA_256", 190), ("RSAES_OAEP_SHA_1", 214)])
def test_plaintext_over_the_oaep_limit_is_refused(kms, key_of, algorithm, limit):
    key = key_of("RSA_2048", "ENCRYPT_DECRYPT")
    blob = kms.encrypt(KeyId=key, Plaintext=os.urandom(limit), EncryptionAlgorithm=algorithm)["CiphertextBlob"]
    assert len(kms.decrypt(KeyId=key, CiphertextBlob=blob, EncryptionAlgorithm=algorithm)["Plaintext"]) == limit
    assert error_code(kms.encrypt, KeyId=key, Plaintext=os.urandom(limit + 1),
                      EncryptionAlgorithm=algorithm) == "ValidationException"


def test_encryption_context_with_an_rsa_key_is_refused(kms, key_of):
    key = key_of("RSA_2048", "ENCRYPT_DECRYPT")
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256",
                      EncryptionContext={"a": "b"}) == "ValidationException"
    blob = kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
    assert error_code(kms.decrypt, KeyId=key, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256",
                      EncryptionContext={"a": "b"}) == "ValidationException"


def test_rsa_decrypt_with_the_wrong_algorithm_or_garbage_fails(kms, key_of):
    key = key_of("RSA_2048", "ENCRYPT_DECRYPT")
    blob = kms.encrypt(KeyId=key, Plaintext=b"secret", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
    assert error_code(kms.decrypt, KeyId=key, CiphertextBlob=blob,
                      EncryptionAlgorithm="RSAES_OAEP_SHA_1") == "InvalidCiphertextException"
    assert error_code(kms.decrypt, KeyId=key, CiphertextBlob=os.urandom(256),
                      EncryptionAlgorithm="RSAES_OAEP_SHA_256") == "InvalidCiphertextException"


# -- HMAC ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [224, 256, 384, 512])
def test_generate_and_verify_mac(kms, key_of, bits):
    key = key_of(f"HMAC_{bits}", "GENERATE_VERIFY_MAC")
    algorithm = f"HMAC_SHA_{bits}"
    message = b"authenticate me"
    response = kms.generate_mac(KeyId=key, Message=message, MacAlgorithm=algorithm)
    mac = response["Mac"]
    assert len(mac) == bits // 8
    assert response["MacAlgorithm"] == algorithm and response["KeyId"].endswith(key)
    assert kms.generate_mac(KeyId=key, Message=message, MacAlgorithm=algorithm)["Mac"] == mac  # deterministic
    verified = kms.verify_mac(KeyId=key, Message=message, Mac=mac, MacAlgorithm=algorithm)
    assert verified["MacValid"] is True

    tampered = bytearray(mac)
    tampered[0] ^= 0x80
    assert error_code(kms.verify_mac, KeyId=key, Message=message, Mac=bytes(tampered),
                      MacAlgorithm=algorithm) == "KMSInvalidMacException"
    assert error_code(kms.verify_mac, KeyId=key, Message=b"another message", Mac=mac,
                      MacAlgorithm=algorithm) == "KMSInvalidMacException"
    assert error_code(kms.verify_mac, KeyId=key, Message=message, Mac=mac[:-1],
                      MacAlgorithm=algorithm) == "KMSInvalidMacException"

    wrong = "HMAC_SHA_384" if bits != 384 else "HMAC_SHA_256"
    assert error_code(kms.generate_mac, KeyId=key, Message=message, MacAlgorithm=wrong) == "InvalidKeyUsageException"
    assert error_code(kms.verify_mac, KeyId=key, Message=message, Mac=mac, MacAlgorithm=wrong) == "InvalidKeyUsageException"


def test_each_hmac_key_has_its_own_material(kms):
    a = create_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyId"]
    b = create_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyId"]
    mac = kms.generate_mac(KeyId=a, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert kms.generate_mac(KeyId=b, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"] != mac
    assert error_code(kms.verify_mac, KeyId=b, Message=b"m", Mac=mac,
                      MacAlgorithm="HMAC_SHA_256") == "KMSInvalidMacException"


def test_disabled_hmac_key_is_refused(kms):
    key = create_key(kms, KeySpec="HMAC_384", KeyUsage="GENERATE_VERIFY_MAC")["KeyId"]
    kms.disable_key(KeyId=key)
    assert error_code(kms.generate_mac, KeyId=key, Message=b"m", MacAlgorithm="HMAC_SHA_384") == "DisabledException"


# -- Data key pairs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("pair_spec", ["RSA_2048", "ECC_NIST_P256"])
def test_generate_data_key_pair(kms, pair_spec):
    key = create_key(kms)["KeyId"]
    context = {"pair": pair_spec}
    pair = kms.generate_data_key_pair(KeyId=key, KeyPairSpec=pair_spec, EncryptionContext=context)
    assert pair["KeyPairSpec"] == pair_spec and pair["KeyId"].endswith(key)
    private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    assert spki(private.public_key()) == pair["PublicKey"]
    if pair_spec == "RSA_2048":
        assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    else:
        assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
    decrypted = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=context)
    assert decrypted["Plaintext"] == pair["PrivateKeyPlaintext"]
    assert decrypted["KeyId"].endswith(key)
    assert error_code(kms.decrypt, CiphertextBlob=pair["PrivateKeyCiphertextBlob"]) == "InvalidCiphertextException"

    bare = kms.generate_data_key_pair_without_plaintext(KeyId=key, KeyPairSpec=pair_spec)
    assert "PrivateKeyPlaintext" not in bare
    assert bare["KeyPairSpec"] == pair_spec
    recovered = kms.decrypt(CiphertextBlob=bare["PrivateKeyCiphertextBlob"])["Plaintext"]
    assert spki(serialization.load_der_private_key(recovered, password=None).public_key()) == bare["PublicKey"]
    assert bare["PublicKey"] != pair["PublicKey"]


def test_generate_data_key_pair_needs_a_symmetric_key(kms, key_of):
    key = key_of("RSA_2048", "ENCRYPT_DECRYPT")
    assert error_code(kms.generate_data_key_pair, KeyId=key, KeyPairSpec="ECC_NIST_P256") == "InvalidKeyUsageException"
    disabled = create_key(kms)["KeyId"]
    kms.disable_key(KeyId=disabled)
    assert error_code(kms.generate_data_key_pair, KeyId=disabled, KeyPairSpec="ECC_NIST_P256") == "DisabledException"


# -- Key agreement -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "ECC_NIST_P384"])
def test_derive_shared_secret_matches_local_ecdh(kms, key_of, spec):
    key = key_of(spec, "KEY_AGREEMENT")
    kms_public = public_key(kms, key)
    peer = ec.generate_private_key(CURVES[spec]())
    response = kms.derive_shared_secret(KeyId=key, KeyAgreementAlgorithm="ECDH", PublicKey=spki(peer.public_key()))
    assert response["SharedSecret"] == peer.exchange(ec.ECDH(), kms_public)
    assert response["KeyAgreementAlgorithm"] == "ECDH"
    assert response["KeyId"].endswith(key)


def test_derive_shared_secret_refuses_bad_peer_keys(kms, key_of):
    key = key_of("ECC_NIST_P256", "KEY_AGREEMENT")
    other_curve = spki(ec.generate_private_key(ec.SECP384R1()).public_key())
    assert error_code(kms.derive_shared_secret, KeyId=key, KeyAgreementAlgorithm="ECDH",
                      PublicKey=other_curve) == "ValidationException"
    rsa_peer = spki(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    assert error_code(kms.derive_shared_secret, KeyId=key, KeyAgreementAlgorithm="ECDH",
                      PublicKey=rsa_peer) == "ValidationException"
    assert error_code(kms.derive_shared_secret, KeyId=key, KeyAgreementAlgorithm="ECDH",
                      PublicKey=b"not a public key") == "ValidationException"


def test_derive_shared_secret_needs_a_key_agreement_key(kms, key_of):
    key = key_of("ECC_NIST_P256", "SIGN_VERIFY")
    peer = spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert error_code(kms.derive_shared_secret, KeyId=key, KeyAgreementAlgorithm="ECDH",
                      PublicKey=peer) == "InvalidKeyUsageException"


@pytest.mark.skipif(not POST_QUANTUM_SUPPORTED.get("ML_KEM_768"),
                    reason="the installed cryptography has no ML-KEM-768")
def test_ml_kem_encapsulate_then_decapsulate(kms):
    key = kms.create_key(KeySpec="ML_KEM_768", KeyUsage="ENCAPSULATE_DECAPSULATE")["KeyMetadata"]
    assert key["EncapsulationAlgorithms"] == ["ML_KEM"]
    sent = kms.encapsulate(KeyId=key["KeyId"], EncapsulationAlgorithm="ML_KEM")
    got = kms.decapsulate(KeyId=key["KeyId"], SharedSecretCiphertextBlob=sent["SharedSecretCiphertextBlob"],
                          EncapsulationAlgorithm="ML_KEM")
    assert got["SharedSecret"] == sent["SharedSecret"] and len(sent["SharedSecret"]) == 32
    with pytest.raises(ClientError) as info:
        kms.encapsulate(KeyId=kms.create_key()["KeyMetadata"]["KeyId"], EncapsulationAlgorithm="ML_KEM")
    assert info.value.response["Error"]["Code"] == "InvalidKeyUsageException"
