"""What the custom key store services need from outside: the stores' read model, the wrapped passwords, and
the tokens (PKCS#11) that hold the stores' keys."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

KEY_STORE_PASSWORD_PURPOSE = "custom-key-store-password"  # AAD purpose of a root-wrapped key store password


@dataclass(frozen=True)
class KeyStoreRow:
    """One row of the custom key store view (tagged: authorization and every crypto call on a store's key
    read it to know whether the store is connected)."""

    store_id: str
    account_id: str
    region: str
    name: str
    store_type: str
    connection_state: str
    cluster_id: str | None
    entry: dict[str, Any]  # the CustomKeyStoresListEntry as DescribeCustomKeyStores answers it

    @property
    def connected(self) -> bool:
        return self.connection_state == "CONNECTED"


class KeyStoreView(Protocol):
    def get(self, store_id: str) -> KeyStoreRow | None: ...

    def list(self, account_id: str, region: str, limit: int, after: str | None) -> list[KeyStoreRow]: ...

    def by_name(self, tx: Any, account_id: str, region: str, name: str) -> KeyStoreRow | None: ...

    def by_cluster(self, tx: Any, cluster_ids: list[str]) -> list[KeyStoreRow]: ...

    def in_region(self, tx: Any, account_id: str, region: str) -> list[KeyStoreRow]: ...

    def count(self, tx: Any, account_id: str, region: str) -> int: ...

    def forget(self, store_id: str) -> None: ...


class StorePasswords(Protocol):
    """The key store passwords, root-wrapped (infrastructure/root_wrapped.py lists the table)."""

    def put(self, tx: Any, store_id: str, wrapped: bytes) -> None: ...

    def get(self, store_id: str) -> bytes | None: ...

    def delete(self, tx: Any, store_id: str) -> None: ...


class StoreConnectionError(Exception):
    """A token could not be opened: ``code`` is the ConnectionErrorCode AWS would show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class StoreTokens(Protocol):
    """Tokens of AWS_CLOUDHSM key stores, one logged-in connection per store in each process."""

    def check_cluster(self, cluster_id: str) -> str:
        """The token's identity ("module|label") for a cluster id; raises the CloudHsmCluster* errors."""

    def trust_anchor(self, cluster_id: str) -> str | None: ...

    def open(self, store_id: str, cluster_id: str, password: str) -> None:
        """Logs in; raises StoreConnectionError."""

    def is_open(self, store_id: str) -> bool: ...

    def close(self, store_id: str) -> None: ...

    def generate_key(self, store_id: str, label: str, object_id: bytes) -> None: ...

    def destroy_key(self, store_id: str, label: str, object_id: bytes) -> bool: ...

    def encrypt(self, store_id: str, label: str, object_id: bytes, iv: bytes, data: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, store_id: str, label: str, object_id: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes: ...

    def random(self, store_id: str, length: int) -> bytes: ...

    def objects(self, store_id: str) -> list[tuple[str, bytes]]: ...


# -- external key stores (keyledger calling an XKS proxy) -------------------------------------------------------

@dataclass(frozen=True)
class XksConnection:
    """Where and how to reach an external key store's proxy (the secret only ever in memory)."""

    uri_endpoint: str  # https://<host>
    uri_path: str  # [/<prefix>]/kms/xks/v1
    access_key_id: str
    secret: str = field(repr=False)
    region: str = "us-east-1"  # the SigV4 scope's: the store's region, as AWS KMS signs with its own


class XksProxyFailure(Exception):
    """A call to an XKS proxy that did not succeed. ``kind``: "unreachable" (no TCP connection, or it broke),
    "tls" (no TLS connection), "timeout" (no answer in the time allowed), "malformed" (an answer that is not the
    specification's), or "refused" (the proxy answered ``error_name``)."""

    def __init__(self, kind: str, detail: str, error_name: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.error_name = error_name


class XksProxyClient(Protocol):
    def post(self, connection: XksConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POSTs ``body`` to ``<endpoint><uri path><path>`` signed with the connection's credential and answers
        the JSON object of a 200, within the configured time; raises XksProxyFailure otherwise."""

    def close(self) -> None: ...


class MustRunInThread(Exception):
    """Raised before a call that waits on the network would start on the event loop: the caller runs the
    operation again in a worker thread (api/kms_front.py). Nothing was done yet."""
