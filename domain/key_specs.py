"""Key specs, key usages and the algorithms each allows, as AWS KMS defines them."""
from __future__ import annotations

from dataclasses import dataclass

from domain.errors import UnsupportedOperationError, ValidationError

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
ORIGIN_AWS_KMS = "AWS_KMS"
ORIGIN_EXTERNAL = "EXTERNAL"


@dataclass(frozen=True)
class KeySpecInfo:
    name: str
    usages: tuple[str, ...]
    encryption_algorithms: tuple[str, ...] = ()
    signing_algorithms: tuple[str, ...] = ()
    mac_algorithms: tuple[str, ...] = ()
    key_agreement_algorithms: tuple[str, ...] = ()


KEY_SPECS: dict[str, KeySpecInfo] = {
    SYMMETRIC_DEFAULT: KeySpecInfo(SYMMETRIC_DEFAULT, (ENCRYPT_DECRYPT,), encryption_algorithms=("SYMMETRIC_DEFAULT",)),
}

# Key specs AWS defines that this build does not offer yet; they are refused with a clear message
# rather than a validation error, because the request itself is well formed.
_KNOWN_AWS_SPECS = {
    "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2",
    "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024",
}


def resolve_key_spec(key_spec: str | None, key_usage: str | None) -> KeySpecInfo:
    spec = KEY_SPECS.get(key_spec or SYMMETRIC_DEFAULT)
    if spec is None:
        if key_spec in _KNOWN_AWS_SPECS:
            raise UnsupportedOperationError(f"KeySpec {key_spec} is not supported by this keyledger version.")
        raise ValidationError(f"KeySpec '{key_spec}' is not a valid key spec.")
    usage = key_usage or spec.usages[0]
    if usage not in spec.usages:
        raise ValidationError(
            f"KeyUsage {usage} is not compatible with KeySpec {spec.name}; use one of: {', '.join(spec.usages)}."
        )
    return spec


DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}
