"""AWS_CLOUDHSM custom key stores on PKCS#11 tokens: the operator's cluster map, one logged-in token per
connected store in each process, and the stores' root-wrapped passwords.

``KEYLEDGER_CLOUDHSM_CLUSTERS`` names a JSON file mapping AWS-style cluster ids to tokens:
    {"cluster-1a2b3c4d5e6": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "store-1",
                             "trust_anchor_certificate": "/etc/keyledger/store-1-ca.crt"}}
(``trust_anchor_certificate`` is optional: when given, CreateCustomKeyStore must present that certificate.)
The file is read on each use, so an operator may add a cluster without a restart.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from application.keystores.ports import StoreConnectionError
from domain.errors import (
    CloudHsmClusterInvalidConfigurationError,
    CloudHsmClusterNotActiveError,
    CloudHsmClusterNotFoundError,
    InvalidStateError,
    shown,
)
from domain.keystores.store import (
    CLUSTER_NOT_FOUND,
    INSUFFICIENT_CLOUDHSM_HSMS,
    INTERNAL_ERROR,
    INVALID_CREDENTIALS,
    NETWORK_ERRORS,
    USER_LOCKED_OUT,
)
from infrastructure.pkcs11_token import Token, TokenUnavailable
from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import custom_key_store_secrets

MAX_MAP_BYTES = 1 << 20
CLUSTER_ID = re.compile(r"cluster-[2-7a-zA-Z]{11,16}")
REQUIRED_MECHANISMS = {"AES_KEY_GEN", "AES_GCM"}
_CONNECTION_ERRORS = {"module": NETWORK_ERRORS, "no-token": INSUFFICIENT_CLOUDHSM_HSMS, "pin": INVALID_CREDENTIALS,
                      "pin-locked": USER_LOCKED_OUT, "session": INTERNAL_ERROR, "key": INTERNAL_ERROR}


class ClusterMap:
    def __init__(self, path: Path | None) -> None:
        self._path = path

    def clusters(self) -> dict[str, dict[str, str]]:
        if self._path is None:
            return {}
        try:
            with open(self._path, "rb") as f:
                raw = f.read(MAX_MAP_BYTES + 1)
        except OSError as exc:
            raise CloudHsmClusterInvalidConfigurationError(
                f"The CloudHSM cluster map {self._path} cannot be read ({exc.strerror}).") from None
        if len(raw) > MAX_MAP_BYTES:
            raise CloudHsmClusterInvalidConfigurationError(f"The CloudHSM cluster map {self._path} is over 1 MiB.")
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise CloudHsmClusterInvalidConfigurationError(f"The CloudHSM cluster map {self._path} is not JSON.") from None
        if not isinstance(parsed, dict):
            raise CloudHsmClusterInvalidConfigurationError(
                f"The CloudHSM cluster map {self._path} must be an object of cluster ids.")
        out: dict[str, dict[str, str]] = {}
        for cluster_id, entry in parsed.items():
            if not (CLUSTER_ID.fullmatch(cluster_id) and isinstance(entry, dict)
                    and isinstance(entry.get("module"), str) and isinstance(entry.get("token_label"), str)):
                raise CloudHsmClusterInvalidConfigurationError(
                    f"The CloudHSM cluster map {self._path} entry {shown(cluster_id, 40)!r} needs a cluster id like "
                    "cluster-1a2b3c4d5e6 and the strings module and token_label.")
            out[cluster_id] = {k: v for k, v in entry.items() if isinstance(v, str)}
        return out

    def get(self, cluster_id: str) -> dict[str, str] | None:
        return self.clusters().get(cluster_id)


def _probe_token(module: str, label: str) -> set[str]:
    """The mechanisms of the token labelled ``label``, without logging in; CloudHsmClusterNotActive if absent."""
    import pkcs11

    try:
        token = pkcs11.lib(module).get_token(token_label=label)
        return {getattr(m, "name", str(m)) for m in token.slot.get_mechanisms()}
    except (pkcs11.NoSuchToken, pkcs11.MultipleTokensReturned):
        raise CloudHsmClusterNotActiveError(
            f"The token of this cluster ({label!r}) is not present: the cluster has no active HSM.") from None
    except pkcs11.PKCS11Error as exc:
        raise CloudHsmClusterNotActiveError(
            f"The token of this cluster ({label!r}) cannot be reached ({type(exc).__name__}).") from None
    except RuntimeError as exc:  # python-pkcs11: another module already loaded in this process
        raise CloudHsmClusterInvalidConfigurationError(f"The cluster's PKCS#11 module cannot be loaded ({exc}).") from None


class Pkcs11StoreTokens:
    """application/keystores/ports.py: StoreTokens."""

    def __init__(self, clusters: ClusterMap) -> None:
        self._clusters = clusters
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def _entry(self, cluster_id: str) -> dict[str, str]:
        entry = self._clusters.get(cluster_id)
        if entry is None:
            raise CloudHsmClusterNotFoundError(
                f"Cluster {shown(cluster_id, 40)} is not in this keyledger's cluster map (KEYLEDGER_CLOUDHSM_CLUSTERS).")
        return entry

    def check_cluster(self, cluster_id: str) -> str:
        entry = self._entry(cluster_id)
        mechanisms = _probe_token(entry["module"], entry["token_label"])
        missing = REQUIRED_MECHANISMS - mechanisms
        if missing:
            raise CloudHsmClusterInvalidConfigurationError(
                f"The token of cluster {cluster_id} does not support {', '.join(sorted(missing))}, which keys need.")
        return f"{entry['module']}|{entry['token_label']}"

    def trust_anchor(self, cluster_id: str) -> str | None:
        path = self._entry(cluster_id).get("trust_anchor_certificate")
        if path is None:
            return None
        try:
            return Path(path).read_text()
        except OSError as exc:
            raise CloudHsmClusterInvalidConfigurationError(
                f"The trust anchor certificate of cluster {cluster_id} cannot be read ({exc.strerror}).") from None

    def open(self, store_id: str, cluster_id: str, password: str) -> None:
        try:
            entry = self._entry(cluster_id)
        except CloudHsmClusterNotFoundError as exc:
            raise StoreConnectionError(CLUSTER_NOT_FOUND, str(exc)) from None
        except CloudHsmClusterInvalidConfigurationError as exc:
            raise StoreConnectionError(INTERNAL_ERROR, str(exc)) from None
        self.close(store_id)
        try:
            token = Token(entry["module"], entry["token_label"], password)
        except TokenUnavailable as exc:
            raise StoreConnectionError(_CONNECTION_ERRORS.get(exc.reason, INTERNAL_ERROR), str(exc)) from None
        except RuntimeError as exc:
            raise StoreConnectionError(INTERNAL_ERROR, f"The cluster's PKCS#11 module cannot be loaded ({exc}).") from None
        with self._lock:
            old, self._tokens[store_id] = self._tokens.get(store_id), token
        if old is not None:
            old.close()

    def is_open(self, store_id: str) -> bool:
        return store_id in self._tokens

    def close(self, store_id: str) -> None:
        with self._lock:
            token = self._tokens.pop(store_id, None)
        if token is not None:
            token.close()

    def close_all(self) -> None:
        for store_id in list(self._tokens):
            self.close(store_id)

    def _token(self, store_id: str) -> Token:
        token = self._tokens.get(store_id)
        if token is None:
            raise InvalidStateError(f"Custom key store {store_id} is not connected in this process.")
        return token

    def _use(self, store_id: str, what: Any) -> Any:
        try:
            return what(self._token(store_id))
        except TokenUnavailable as exc:
            if exc.reason in ("session", "no-token", "module"):
                self.close(store_id)  # opened again on next use
            raise InvalidStateError(f"The token of custom key store {store_id} cannot be used: {exc}") from None

    def generate_key(self, store_id: str, label: str, object_id: bytes) -> None:
        self._use(store_id, lambda t: t.generate_key(label, object_id))

    def destroy_key(self, store_id: str, label: str, object_id: bytes) -> bool:
        return bool(self._use(store_id, lambda t: t.destroy_key(label, object_id)))

    def encrypt(self, store_id: str, label: str, object_id: bytes, iv: bytes, data: bytes, aad: bytes) -> bytes:
        return self._use(store_id, lambda t: t.encrypt(label, object_id, iv, data, aad))

    def decrypt(self, store_id: str, label: str, object_id: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        return self._use(store_id, lambda t: t.decrypt(label, object_id, iv, sealed, aad))

    def random(self, store_id: str, length: int) -> bytes:
        return self._use(store_id, lambda t: t.random(length))

    def objects(self, store_id: str) -> list[tuple[str, bytes]]:
        return self._use(store_id, lambda t: t.objects())


class SqlStorePasswords:
    """application/keystores/ports.py: StorePasswords over custom_key_store_secrets."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def put(self, tx: Any, store_id: str, wrapped: bytes) -> None:
        self.delete(tx, store_id)
        tx.execute(custom_key_store_secrets.insert().values(store_id=store_id, wrapped=wrapped))

    def get(self, store_id: str) -> bytes | None:
        with self._uow.read() as session:
            row = session.execute(sa.select(custom_key_store_secrets.c.wrapped).where(
                custom_key_store_secrets.c.store_id == store_id)).first()
        return bytes(row[0]) if row else None

    def delete(self, tx: Any, store_id: str) -> None:
        tx.execute(custom_key_store_secrets.delete().where(custom_key_store_secrets.c.store_id == store_id))


def related_clusters(clusters: ClusterMap, cluster_id: str) -> list[str]:
    """Cluster ids that name the same token as ``cluster_id`` (itself included): AWS's "related" clusters, the
    ones that share its keys (a cluster made from a backup of another)."""
    try:
        mapping = clusters.clusters()
    except Exception:  # noqa: BLE001 - an unreadable map relates nothing; the operations report it themselves
        return [cluster_id]
    entry = mapping.get(cluster_id)
    if entry is None:
        return [cluster_id]
    same = (entry["module"], entry["token_label"])
    return sorted({cluster_id} | {c for c, e in mapping.items() if (e["module"], e["token_label"]) == same})
