"""Key specs, key usages and the algorithms each allows, as AWS KMS defines them."""
from __future__ import annotations

from dataclasses import dataclass, field

from domain.crypto.asymmetric import ED25519_PH_SUPPORTED
from domain.errors import UnsupportedOperationError, ValidationError, shown

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
SIGN_VERIFY = "SIGN_VERIFY"
GENERATE_VERIFY_MAC = "GENERATE_VERIFY_MAC"
KEY_AGREEMENT = "KEY_AGREEMENT"
ENCAPSULATE_DECAPSULATE = "ENCAPSULATE_DECAPSULATE"
ORIGIN_AWS_KMS = "AWS_KMS"
ORIGIN_EXTERNAL = "EXTERNAL"
ORIGIN_AWS_CLOUDHSM = "AWS_CLOUDHSM"  # the material is an object in a custom key store's token
ORIGIN_EXTERNAL_KEY_STORE = "EXTERNAL_KEY_STORE"  # double encryption: keyledger's layer, then an XKS proxy's

# KeyMetadata member that lists a usage's algorithms.
ALGORITHM_MEMBERS = {
    ENCRYPT_DECRYPT: "EncryptionAlgorithms",
    SIGN_VERIFY: "SigningAlgorithms",
    GENERATE_VERIFY_MAC: "MacAlgorithms",
    KEY_AGREEMENT: "KeyAgreementAlgorithms",
    ENCAPSULATE_DECAPSULATE: "EncapsulationAlgorithms",
}

_RSA_ENC = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
_RSA_SIGN = ("RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
             "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512")


@dataclass(frozen=True)
class KeySpecInfo:
    name: str
    usages: dict[str, tuple[str, ...]] = field(default_factory=dict)  # usage -> algorithms

    @property
    def asymmetric(self) -> bool:
        return self.name.startswith(("RSA_", "ECC_", "ML_"))

    def algorithms_for(self, usage: str) -> tuple[str, tuple[str, ...]] | None:
        algorithms = self.usages.get(usage)
        return (ALGORITHM_MEMBERS[usage], algorithms) if algorithms else None


def _spec(name: str, **usages: tuple[str, ...]) -> KeySpecInfo:
    return KeySpecInfo(name, {u: a for u, a in usages.items()})


KEY_SPECS: dict[str, KeySpecInfo] = {s.name: s for s in (
    _spec(SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT=("SYMMETRIC_DEFAULT",)),
    *(_spec(f"RSA_{n}", SIGN_VERIFY=_RSA_SIGN, ENCRYPT_DECRYPT=_RSA_ENC) for n in (2048, 3072, 4096)),
    _spec("ECC_NIST_P256", SIGN_VERIFY=("ECDSA_SHA_256",), KEY_AGREEMENT=("ECDH",)),
    _spec("ECC_NIST_P384", SIGN_VERIFY=("ECDSA_SHA_384",), KEY_AGREEMENT=("ECDH",)),
    _spec("ECC_NIST_P521", SIGN_VERIFY=("ECDSA_SHA_512",), KEY_AGREEMENT=("ECDH",)),
    _spec("ECC_SECG_P256K1", SIGN_VERIFY=("ECDSA_SHA_256",)),
    # Ed25519ph is advertised only where it can sign: cryptography offers pure Ed25519 alone (decision 88).
    _spec("ECC_NIST_EDWARDS25519",
          SIGN_VERIFY=("ED25519_SHA_512", "ED25519_PH_SHA_512") if ED25519_PH_SUPPORTED else ("ED25519_SHA_512",)),
    *(_spec(f"HMAC_{n}", GENERATE_VERIFY_MAC=(f"HMAC_SHA_{n}",)) for n in (224, 256, 384, 512)),
    *(_spec(f"ML_DSA_{n}", SIGN_VERIFY=("ML_DSA_SHAKE_256",)) for n in (44, 65, 87)),
    *(_spec(f"ML_KEM_{n}", ENCAPSULATE_DECAPSULATE=("ML_KEM",)) for n in (512, 768, 1024)),
)}

_REFUSED = {"SM2": "SM2 keys are offered only in AWS China regions; keyledger does not support them."}


def resolve_key_spec(key_spec: str | None, key_usage: str | None,
                     unsupported: dict[str, str] | None = None) -> KeySpecInfo:
    """``unsupported`` names specs this installation cannot offer (e.g. post-quantum without library support)."""
    name = key_spec or SYMMETRIC_DEFAULT
    reason = _REFUSED.get(name) or (unsupported or {}).get(name)
    if reason:
        raise UnsupportedOperationError(reason)
    spec = KEY_SPECS.get(name)
    if spec is None:
        raise ValidationError(f"KeySpec '{shown(name)}' is not a valid key spec.")
    usage = key_usage or ENCRYPT_DECRYPT  # AWS's default, also for specs that then need an explicit KeyUsage
    if usage not in spec.usages:
        raise ValidationError(
            f"KeyUsage {usage} is not compatible with KeySpec {spec.name}; use one of: {', '.join(spec.usages)}."
        )
    return spec


DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}

# CustomerMasterKeySpec is the deprecated name of KeySpec; its enum stopped growing before Ed25519 and
# the post-quantum specs, so responses carry it only for the specs it knows.
LEGACY_CUSTOMER_MASTER_KEY_SPECS = frozenset({
    "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2",
})
