"""domain.crypto.asymmetric and domain.crypto.mac checked against `cryptography` and the stdlib used directly, so a bug
shared by our helpers and these tests would have to be in the independent library too."""
from __future__ import annotations

import hashlib
import hmac as std_hmac
from typing import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from domain.crypto import asymmetric, asymmetric_encryption, mac
from domain.errors import InvalidCiphertextError, InvalidKeyUsageError, UnsupportedOperationError, ValidationError

RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
NIST = {"ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1}
CURVES = {**NIST, "ECC_SECG_P256K1": ec.SECP256K1}
CLASSIC_SPECS = (*RSA_SPECS, *CURVES, "ECC_NIST_EDWARDS25519")
HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
SIGNING_CASES = [
    *[("RSA_2048", f"RSASSA_{scheme}_SHA_{n}") for scheme in ("PSS", "PKCS1_V1_5") for n in HASH],
    ("RSA_4096", "RSASSA_PSS_SHA_512"), ("RSA_3072", "RSASSA_PKCS1_V1_5_SHA_384"),
    ("ECC_NIST_P256", "ECDSA_SHA_256"), ("ECC_NIST_P384", "ECDSA_SHA_384"), ("ECC_NIST_P521", "ECDSA_SHA_512"),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
]
OAEP_LIMITS = {("RSA_2048", "RSAES_OAEP_SHA_1"): 214, ("RSA_2048", "RSAES_OAEP_SHA_256"): 190,
               ("RSA_3072", "RSAES_OAEP_SHA_1"): 342, ("RSA_3072", "RSAES_OAEP_SHA_256"): 318,
               ("RSA_4096", "RSAES_OAEP_SHA_1"): 470, ("RSA_4096", "RSAES_OAEP_SHA_256"): 446}
MESSAGE = b"keyledger interoperability message"


@pytest.fixture(scope="module")
def key() -> Callable[[str], bytes]:
    """PKCS#8 DER per key spec, generated once per module: RSA-4096 key generation takes seconds."""
    cache: dict[str, bytes] = {}

    def get(spec: str) -> bytes:
        if spec not in cache:
            cache[spec] = asymmetric.generate_private_key(spec)
        return cache[spec]
    return get


def spki(private_der: bytes) -> bytes:
    return asymmetric.public_key_der(private_der)


def their_public(private_der: bytes):
    return serialization.load_der_public_key(spki(private_der))


def hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return HASH[algorithm.rsplit("_", 1)[1]]()


def their_verify(public_key, algorithm: str, signature: bytes, message: bytes) -> None:
    digest = hash_of(algorithm)
    if algorithm.startswith("RSASSA_PSS"):
        public_key.verify(signature, message, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
    elif algorithm.startswith("RSASSA_PKCS1"):
        public_key.verify(signature, message, padding.PKCS1v15(), digest)
    else:
        public_key.verify(signature, message, ec.ECDSA(digest))


def their_sign(private_der: bytes, algorithm: str, message: bytes) -> bytes:
    private_key = serialization.load_der_private_key(private_der, None)
    digest = hash_of(algorithm)
    if algorithm.startswith("RSASSA_PSS"):
        return private_key.sign(message, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
    if algorithm.startswith("RSASSA_PKCS1"):
        return private_key.sign(message, padding.PKCS1v15(), digest)
    return private_key.sign(message, ec.ECDSA(digest))


# --- key generation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", CLASSIC_SPECS)
def test_generated_key_is_unencrypted_pkcs8_of_the_spec(key, spec):
    private_key = serialization.load_der_private_key(key(spec), password=None)
    if spec in RSA_SPECS:
        assert isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size == int(spec[4:])
    elif spec in CURVES:
        assert isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.name == CURVES[spec].name
    else:
        assert isinstance(private_key, ed25519.Ed25519PrivateKey)
    assert spki(key(spec)) == private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_algorithms_table_matches_aws():
    table = asymmetric.ALGORITHMS
    assert set(table["RSA_3072"]) == {"ENCRYPT_DECRYPT", "SIGN_VERIFY"}
    assert table["RSA_2048"]["ENCRYPT_DECRYPT"] == ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
    assert len(table["RSA_4096"]["SIGN_VERIFY"]) == 6
    assert table["ECC_NIST_P384"] == {"SIGN_VERIFY": ("ECDSA_SHA_384",), "KEY_AGREEMENT": ("ECDH",)}
    assert table["ECC_SECG_P256K1"] == {"SIGN_VERIFY": ("ECDSA_SHA_256",)}
    assert table["ECC_NIST_EDWARDS25519"] == {"SIGN_VERIFY": ("ED25519_SHA_512", "ED25519_PH_SHA_512")}
    assert table["ML_DSA_65"] == {"SIGN_VERIFY": ("ML_DSA_SHAKE_256",)}
    assert table["ML_KEM_512"] == {"ENCAPSULATE_DECAPSULATE": ("ML_KEM",)}


@pytest.mark.parametrize("call", [
    lambda: asymmetric.generate_private_key("SM2"),
    lambda: asymmetric.generate_data_key_pair("SM2"),
    lambda: asymmetric.sign(b"", "SM2", "SM2DSA", b"m", "RAW"),
    lambda: asymmetric.validate_imported_private_key("SM2", b""),
])
def test_sm2_is_refused_everywhere(call):
    with pytest.raises(UnsupportedOperationError, match="only offered in China regions"):
        call()


def test_non_asymmetric_spec_is_a_validation_error():
    with pytest.raises(ValidationError):
        asymmetric.generate_private_key("SYMMETRIC_DEFAULT")


# --- signing ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,algorithm", SIGNING_CASES)
def test_our_signature_verifies_with_cryptography(key, spec, algorithm):
    signature = asymmetric.sign(key(spec), spec, algorithm, MESSAGE, "RAW")
    their_verify(their_public(key(spec)), algorithm, signature, MESSAGE)


@pytest.mark.parametrize("spec,algorithm", SIGNING_CASES)
def test_cryptography_signature_verifies_with_ours(key, spec, algorithm):
    signature = their_sign(key(spec), algorithm, MESSAGE)
    assert asymmetric.verify(spki(key(spec)), spec, algorithm, MESSAGE, "RAW", signature)
    assert not asymmetric.verify(spki(key(spec)), spec, algorithm, MESSAGE + b"!", "RAW", signature)


@pytest.mark.parametrize("spec,algorithm", SIGNING_CASES)
def test_digest_mode_is_raw_mode_of_the_same_message(key, spec, algorithm):
    digest = hashlib.new(hash_of(algorithm).name, MESSAGE).digest()
    from_digest = asymmetric.sign(key(spec), spec, algorithm, digest, "DIGEST")
    from_raw = asymmetric.sign(key(spec), spec, algorithm, MESSAGE, "RAW")
    assert asymmetric.verify(spki(key(spec)), spec, algorithm, MESSAGE, "RAW", from_digest)
    assert asymmetric.verify(spki(key(spec)), spec, algorithm, digest, "DIGEST", from_raw)
    if "PKCS1" in algorithm:  # deterministic: the two modes must give the very same bytes
        assert from_digest == from_raw


@pytest.mark.parametrize("spec,algorithm,size,expected", [
    ("ECC_NIST_P256", "ECDSA_SHA_256", 31, "Digest is 31 bytes; ECDSA_SHA_256 needs a 32-byte SHA-256 digest"),
    ("RSA_2048", "RSASSA_PSS_SHA_384", 32, "Digest is 32 bytes; RSASSA_PSS_SHA_384 needs a 48-byte SHA-384 digest"),
    ("ECC_NIST_P521", "ECDSA_SHA_512", 65, "needs a 64-byte SHA-512 digest"),
])
def test_digest_of_the_wrong_length_is_a_validation_error(key, spec, algorithm, size, expected):
    for call in (lambda: asymmetric.sign(key(spec), spec, algorithm, b"d" * size, "DIGEST"),
                 lambda: asymmetric.verify(spki(key(spec)), spec, algorithm, b"d" * size, "DIGEST", b"sig")):
        with pytest.raises(ValidationError, match=expected):
            call()


def test_raw_message_is_1_to_4096_bytes(key):
    spec = "ECC_NIST_P256"
    assert asymmetric.sign(key(spec), spec, "ECDSA_SHA_256", b"m" * 4096, "RAW")
    for bad in (b"m" * 4097, b""):
        with pytest.raises(ValidationError):
            asymmetric.sign(key(spec), spec, "ECDSA_SHA_256", bad, "RAW")


@pytest.mark.parametrize("spec,algorithm", [
    ("ECC_NIST_P256", "ECDSA_SHA_384"), ("ECC_SECG_P256K1", "ECDSA_SHA_512"), ("ECC_NIST_P256", "RSASSA_PSS_SHA_256"),
    ("RSA_2048", "ECDSA_SHA_256"), ("ECC_NIST_EDWARDS25519", "ECDSA_SHA_512"),
])
def test_algorithm_the_key_spec_does_not_offer_is_invalid_key_usage(key, spec, algorithm):
    with pytest.raises(InvalidKeyUsageError) as raised:
        asymmetric.sign(key(spec), spec, algorithm, MESSAGE, "RAW")
    assert asymmetric.ALGORITHMS[spec]["SIGN_VERIFY"][0] in raised.value.message


def test_unknown_signing_algorithm_or_message_type_is_a_validation_error(key):
    with pytest.raises(ValidationError):
        asymmetric.sign(key("ECC_NIST_P256"), "ECC_NIST_P256", "ECDSA_SHA_1", MESSAGE, "RAW")
    with pytest.raises(ValidationError):
        asymmetric.sign(key("ECC_NIST_P256"), "ECC_NIST_P256", "ECDSA_SHA_256", MESSAGE, "HASHED")


@pytest.mark.parametrize("spec,algorithm", [
    ("RSA_2048", "RSASSA_PSS_SHA_256"), ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_512"), ("ECC_NIST_P256", "ECDSA_SHA_256"),
    ("ECC_NIST_P521", "ECDSA_SHA_512"), ("ECC_SECG_P256K1", "ECDSA_SHA_256"), ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
])
def test_bad_signatures_return_false_and_never_raise(key, spec, algorithm):
    good = asymmetric.sign(key(spec), spec, algorithm, MESSAGE, "RAW")
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    for signature in (flipped, good[:-3], b"", b"\x30\x02\x01", b"\xff" * 600):
        assert asymmetric.verify(spki(key(spec)), spec, algorithm, MESSAGE, "RAW", signature) is False
    # verify also accepts the private key (callers that hold only the wrapped PKCS#8)
    assert asymmetric.verify(key(spec), spec, algorithm, MESSAGE, "RAW", good)


def test_ed25519_is_pure_ed25519_over_the_raw_message(key):
    spec = "ECC_NIST_EDWARDS25519"
    signature = asymmetric.sign(key(spec), spec, "ED25519_SHA_512", MESSAGE, "RAW")
    their_public(key(spec)).verify(signature, MESSAGE)
    theirs = serialization.load_der_private_key(key(spec), None).sign(MESSAGE)
    assert asymmetric.verify(spki(key(spec)), spec, "ED25519_SHA_512", MESSAGE, "RAW", theirs)
    with pytest.raises(ValidationError, match="DIGEST"):
        asymmetric.sign(key(spec), spec, "ED25519_SHA_512", hashlib.sha512(MESSAGE).digest(), "DIGEST")
    with pytest.raises(ValidationError, match="requires MessageType DIGEST"):
        asymmetric.sign(key(spec), spec, "ED25519_PH_SHA_512", MESSAGE, "RAW")


def test_ed25519ph_follows_library_support(key):
    spec, digest = "ECC_NIST_EDWARDS25519", hashlib.sha512(MESSAGE).digest()
    with pytest.raises(ValidationError, match="64-byte SHA-512"):
        asymmetric.sign(key(spec), spec, "ED25519_PH_SHA_512", digest[:32], "DIGEST")
    if asymmetric.ED25519_PH_SUPPORTED:
        signature = asymmetric.sign(key(spec), spec, "ED25519_PH_SHA_512", digest, "DIGEST")
        assert asymmetric.verify(spki(key(spec)), spec, "ED25519_PH_SHA_512", digest, "DIGEST", signature)
    else:
        with pytest.raises(UnsupportedOperationError, match="Ed25519ph"):
            asymmetric.sign(key(spec), spec, "ED25519_PH_SHA_512", digest, "DIGEST")


# --- RSA encryption --------------------------------------------------------------------------------------------

def their_oaep(algorithm: str) -> padding.OAEP:
    digest = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


@pytest.mark.parametrize("spec,algorithm", OAEP_LIMITS)
def test_oaep_interoperates_both_ways(key, spec, algorithm):
    theirs = their_public(key(spec)).encrypt(MESSAGE, their_oaep(algorithm))
    assert asymmetric_encryption.rsa_decrypt(key(spec), algorithm, theirs) == MESSAGE
    ours = asymmetric_encryption.rsa_encrypt(spki(key(spec)), algorithm, MESSAGE)
    assert len(ours) == int(spec[4:]) // 8  # raw RSA ciphertext, no header
    private_key = serialization.load_der_private_key(key(spec), None)
    assert private_key.decrypt(ours, their_oaep(algorithm)) == MESSAGE


@pytest.mark.parametrize("spec,algorithm", OAEP_LIMITS)
def test_oaep_plaintext_limit_is_exactly_aws(key, spec, algorithm):
    limit = OAEP_LIMITS[(spec, algorithm)]
    assert asymmetric_encryption.max_rsa_plaintext(int(spec[4:]), algorithm) == limit
    plaintext = bytes(range(256)) * 2
    ciphertext = asymmetric_encryption.rsa_encrypt(spki(key(spec)), algorithm, plaintext[:limit])
    assert asymmetric_encryption.rsa_decrypt(key(spec), algorithm, ciphertext) == plaintext[:limit]
    for bad in (plaintext[:limit + 1], b""):
        with pytest.raises(ValidationError, match=f"1 to {limit} bytes"):
            asymmetric_encryption.rsa_encrypt(spki(key(spec)), algorithm, bad)


def test_rsa_decrypt_failures_are_invalid_ciphertext(key):
    ciphertext = asymmetric_encryption.rsa_encrypt(spki(key("RSA_2048")), "RSAES_OAEP_SHA_1", MESSAGE)
    tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    for algorithm, blob in (("RSAES_OAEP_SHA_256", ciphertext), ("RSAES_OAEP_SHA_1", tampered),
                            ("RSAES_OAEP_SHA_1", ciphertext[:-1]), ("RSAES_OAEP_SHA_1", b"")):
        with pytest.raises(InvalidCiphertextError):
            asymmetric_encryption.rsa_decrypt(key("RSA_2048"), algorithm, blob)
    with pytest.raises(InvalidCiphertextError):  # right size, wrong key
        asymmetric_encryption.rsa_decrypt(asymmetric.generate_private_key("RSA_2048"), "RSAES_OAEP_SHA_1", ciphertext)


def test_rsa_encryption_refuses_other_algorithms_and_keys(key):
    with pytest.raises(InvalidKeyUsageError, match="RSAES_OAEP_SHA_1"):
        asymmetric_encryption.rsa_encrypt(spki(key("RSA_2048")), "SYMMETRIC_DEFAULT", MESSAGE)
    with pytest.raises(InvalidKeyUsageError):
        asymmetric_encryption.rsa_encrypt(spki(key("ECC_NIST_P256")), "RSAES_OAEP_SHA_256", MESSAGE)


# --- ECDH ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", NIST)
def test_ecdh_both_sides_derive_the_same_raw_secret(key, spec):
    peer = ec.generate_private_key(NIST[spec]())
    peer_spki = peer.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    ours = asymmetric_encryption.derive_shared_secret(key(spec), spec, peer_spki)
    assert ours == peer.exchange(ec.ECDH(), their_public(key(spec)))
    assert len(ours) == (NIST[spec]().key_size + 7) // 8  # the x coordinate, not a hash of it


def test_ecdh_peer_must_be_spki_on_the_same_curve(key):
    for other in ("ECC_NIST_P384", "ECC_SECG_P256K1", "RSA_2048", "ECC_NIST_EDWARDS25519"):
        with pytest.raises(ValidationError, match="same curve"):
            asymmetric_encryption.derive_shared_secret(key("ECC_NIST_P256"), "ECC_NIST_P256", spki(key(other)))
    for garbage in (b"not a key", b"", b"\x30" * 8193):
        with pytest.raises(ValidationError):
            asymmetric_encryption.derive_shared_secret(key("ECC_NIST_P256"), "ECC_NIST_P256", garbage)


@pytest.mark.parametrize("spec", ["ECC_SECG_P256K1", "RSA_2048", "ECC_NIST_EDWARDS25519"])
def test_ecdh_on_a_spec_without_key_agreement_is_invalid_key_usage(key, spec):
    with pytest.raises(InvalidKeyUsageError):
        asymmetric_encryption.derive_shared_secret(key(spec), spec, spki(key(spec)))


# --- data key pairs and imported material -----------------------------------------------------------------------

@pytest.mark.parametrize("spec", [s for s in CLASSIC_SPECS if s != "RSA_4096"])
def test_data_key_pair_is_a_matching_pkcs8_and_spki(spec):
    private_der, public_der = asymmetric.generate_data_key_pair(spec)
    private_key = serialization.load_der_private_key(private_der, None)
    assert serialization.load_der_public_key(public_der) == private_key.public_key()


def test_data_key_pair_refuses_non_pair_specs():
    with pytest.raises(ValidationError):
        asymmetric.generate_data_key_pair("ML_DSA_44")


@pytest.mark.parametrize("spec", CLASSIC_SPECS)
def test_imported_pkcs8_key_of_the_spec_is_accepted(key, spec):
    assert asymmetric.validate_imported_private_key(spec, key(spec)) == key(spec)


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256"])
def test_imported_key_must_be_pkcs8_not_pkcs1_or_sec1(key, spec):
    traditional = serialization.load_der_private_key(key(spec), None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    with pytest.raises(ValidationError, match="PKCS#8"):
        asymmetric.validate_imported_private_key(spec, traditional)


@pytest.mark.parametrize("spec,material_spec", [("RSA_3072", "RSA_2048"), ("ECC_NIST_P256", "ECC_NIST_P384"),
                                                ("ECC_NIST_P256", "ECC_SECG_P256K1"),
                                                ("ECC_NIST_EDWARDS25519", "ECC_NIST_P256")])
def test_imported_key_of_another_spec_is_a_validation_error(key, spec, material_spec):
    with pytest.raises(ValidationError, match=spec):
        asymmetric.validate_imported_private_key(spec, key(material_spec))


def test_imported_garbage_or_encrypted_key_is_a_validation_error(key):
    encrypted = serialization.load_der_private_key(key("ECC_NIST_P256"), None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    for material in (b"garbage", encrypted, spki(key("ECC_NIST_P256"))):
        with pytest.raises(ValidationError):
            asymmetric.validate_imported_private_key("ECC_NIST_P256", material)


# --- post-quantum: works or is refused, as the installed library decides ---------------------------------------

@pytest.mark.parametrize("spec", ["ML_DSA_44", "ML_DSA_65", "ML_DSA_87"])
def test_ml_dsa_round_trip_or_refusal(spec):
    if not asymmetric.POST_QUANTUM_SUPPORTED[spec]:
        with pytest.raises(UnsupportedOperationError):
            asymmetric.generate_private_key(spec)
        return
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSAMuHasher
    private_der = asymmetric.generate_private_key(spec)
    signature = asymmetric.sign(private_der, spec, "ML_DSA_SHAKE_256", MESSAGE, "RAW")
    their_public(private_der).verify(signature, MESSAGE)
    hasher = MLDSAMuHasher(their_public(private_der))
    hasher.update(MESSAGE)
    mu = hasher.finalize()
    from_mu = asymmetric.sign(private_der, spec, "ML_DSA_SHAKE_256", mu, "EXTERNAL_MU")
    assert asymmetric.verify(spki(private_der), spec, "ML_DSA_SHAKE_256", MESSAGE, "RAW", from_mu)
    assert asymmetric.verify(spki(private_der), spec, "ML_DSA_SHAKE_256", mu, "EXTERNAL_MU", signature)
    assert not asymmetric.verify(spki(private_der), spec, "ML_DSA_SHAKE_256", MESSAGE, "RAW", signature[:-1])
    with pytest.raises(ValidationError):
        asymmetric.sign(private_der, spec, "ML_DSA_SHAKE_256", mu, "DIGEST")


@pytest.mark.parametrize("spec", ["ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"])
def test_ml_kem_round_trip_or_refusal(spec):
    if not asymmetric.POST_QUANTUM_SUPPORTED[spec]:
        for call in (lambda: asymmetric.generate_private_key(spec), lambda: asymmetric.generate_data_key_pair(spec)):
            with pytest.raises(UnsupportedOperationError):
                call()
        return
    private_der, public_der = asymmetric.generate_data_key_pair(spec)
    secret, ciphertext = their_public(private_der).encapsulate()
    assert asymmetric_encryption.decapsulate(private_der, spec, ciphertext) == secret
    ours, our_ciphertext = asymmetric_encryption.encapsulate(public_der, spec)
    assert serialization.load_der_private_key(private_der, None).decapsulate(our_ciphertext) == ours
    with pytest.raises(InvalidCiphertextError):
        asymmetric_encryption.decapsulate(private_der, spec, ciphertext[:-1])
    with pytest.raises(InvalidKeyUsageError):
        asymmetric.sign(private_der, spec, "ML_DSA_SHAKE_256", MESSAGE, "RAW")


# --- HMAC ------------------------------------------------------------------------------------------------------

HMAC_CASES = [("HMAC_224", "HMAC_SHA_224", "sha224", 28), ("HMAC_256", "HMAC_SHA_256", "sha256", 32),
              ("HMAC_384", "HMAC_SHA_384", "sha384", 48), ("HMAC_512", "HMAC_SHA_512", "sha512", 64)]


@pytest.mark.parametrize("spec,algorithm,hash_name,key_bytes", HMAC_CASES)
def test_hmac_matches_the_stdlib(spec, algorithm, hash_name, key_bytes):
    key = mac.generate_hmac_key(spec)
    assert len(key) == key_bytes
    tag = mac.generate_mac(key, algorithm, MESSAGE, key_spec=spec)
    assert tag == std_hmac.new(key, MESSAGE, hash_name).digest()
    assert mac.verify_mac(key, algorithm, MESSAGE, tag, key_spec=spec)
    flipped = tag[:5] + bytes([tag[5] ^ 0x80]) + tag[6:]
    for bad in (flipped, tag[:-1], b""):
        assert mac.verify_mac(key, algorithm, MESSAGE, bad) is False


def test_hmac_algorithm_must_fit_the_spec():
    key = mac.generate_hmac_key("HMAC_256")
    with pytest.raises(InvalidKeyUsageError, match="use HMAC_SHA_256"):
        mac.generate_mac(key, "HMAC_SHA_512", MESSAGE, key_spec="HMAC_256")
    with pytest.raises(ValidationError):
        mac.generate_mac(key, "HMAC_SHA_1", MESSAGE)


def test_hmac_message_is_1_to_4096_bytes():
    key = mac.generate_hmac_key("HMAC_256")
    assert mac.generate_mac(key, "HMAC_SHA_256", b"m" * 4096)
    for bad in (b"", b"m" * 4097):
        with pytest.raises(ValidationError):
            mac.generate_mac(key, "HMAC_SHA_256", bad)
        with pytest.raises(ValidationError):
            mac.verify_mac(key, "HMAC_SHA_256", bad, b"tag")


@pytest.mark.parametrize("spec,low,high", [("HMAC_224", 28, 64), ("HMAC_256", 32, 64), ("HMAC_384", 48, 128),
                                           ("HMAC_512", 64, 128)])
def test_imported_hmac_key_length_ranges(spec, low, high):
    for size in (low, high):
        assert mac.validate_imported_hmac_key(spec, b"k" * size) == b"k" * size
    for size in (low - 1, high + 1):
        with pytest.raises(ValidationError, match=f"{low} to {high} bytes"):
            mac.validate_imported_hmac_key(spec, b"k" * size)
