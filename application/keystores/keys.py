"""KMS keys in custom key stores: their material is a token object, used only inside the token.

The token object of a key is labelled with the key id (as AWS labels a key in a CloudHSM cluster) and has
CKA_ID = the key's 16-byte material id: a non-extractable, sensitive AES-256 key. Encrypt, Decrypt,
ReEncrypt, GenerateDataKey* and data key pairs run AES-GCM inside the token (domain/crypto/ciphertext.py,
blob version 2). A store that is not connected makes its keys Unavailable (``overlay``), AWS's state.

Each process opens a store's token on first use, with the store's password unwrapped from its root-wrapped
row; "connected" itself is the store's state in the ledger, which every process reads.
"""
from __future__ import annotations

import dataclasses
import secrets
import threading
from typing import Any, Callable

from application.calls import Call
from application.keystores.ports import KeyStoreRow, KeyStoreView, StoreConnectionError, StoreTokens
from application.ports import KeyRow
from domain.crypto.wrapping import UnwrapError
from domain.errors import (
    CustomKeyStoreInvalidStateError,
    CustomKeyStoreNotFoundError,
    InvalidCiphertextError,
    InvalidStateError,
    UnsupportedOperationError,
    shown,
)
from domain.keys.specs import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT
from domain.keys.states import KeyState

_SHOWN_AS_UNAVAILABLE = {KeyState.ENABLED.value, KeyState.DISABLED.value}


class StoreKeys:
    def __init__(self, view: KeyStoreView, tokens: StoreTokens, open_token: Callable[[Any], None],
                 load_store: Callable[[str], Any]) -> None:
        self._view = view
        self._tokens = tokens
        self._open_token = open_token  # CustomKeyStoreService.open_token: unwraps the password, logs in
        self._load_store = load_store
        self._lock = threading.Lock()

    # -- the store of a key ----------------------------------------------------------------------

    def overlay(self, row: KeyRow) -> KeyRow:
        """The key as callers see it now: Unavailable in place of Enabled or Disabled while its store is not
        connected (a key pending deletion stays so), and the store's cluster id."""
        store_id = row.metadata.get("CustomKeyStoreId")
        if not store_id:
            return row
        store = self._view.get(store_id)
        meta = dict(row.metadata)
        if store is not None and store.cluster_id:
            meta["CloudHsmClusterId"] = store.cluster_id
        state = row.key_state
        if (store is None or not store.connected) and state in _SHOWN_AS_UNAVAILABLE:
            state = meta["KeyState"] = KeyState.UNAVAILABLE.value
            meta["Enabled"] = False
        return dataclasses.replace(row, key_state=state, metadata=meta)

    def store_row(self, store_id: str) -> KeyStoreRow | None:
        return self._view.get(store_id)

    def connected_store(self, call: Call, store_id: str) -> KeyStoreRow:
        """The caller's store by id, which must be CONNECTED (CreateKey, GenerateRandom)."""
        scope = call.in_scope()
        self._view.forget(store_id)  # a decision that creates material reads the store as it is now
        row = self._view.get(store_id)
        if row is None or (row.account_id, row.region) != (scope.account_id, scope.region):
            raise CustomKeyStoreNotFoundError(f"Custom key store '{shown(store_id)}' does not exist in this account and Region.")
        if not row.connected:
            raise CustomKeyStoreInvalidStateError(
                f"Custom key store {store_id} is {row.connection_state}; it must be CONNECTED for this operation.")
        return row

    def _ensure_open(self, store_id: str) -> None:
        if self._tokens.is_open(store_id):
            return
        with self._lock:
            if self._tokens.is_open(store_id):
                return
            try:
                self._open_token(self._load_store(store_id))
            except StoreConnectionError as exc:
                raise InvalidStateError(f"The token of custom key store {store_id} cannot be opened ({exc.code}).") from None

    # -- key material ----------------------------------------------------------------------------

    def new_key(self, call: Call, store_id: str, key_id: str, key_spec: str, key_usage: str | None) -> tuple[str, str]:
        """Makes the key's token object; returns (material id, cluster id)."""
        if key_spec != SYMMETRIC_DEFAULT or (key_usage or ENCRYPT_DECRYPT) != ENCRYPT_DECRYPT:
            raise UnsupportedOperationError("A custom key store holds symmetric encryption keys only "
                                            "(KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT).")
        row = self.connected_store(call, store_id)
        material_id = secrets.token_hex(16)
        self._ensure_open(store_id)
        self._tokens.generate_key(store_id, key_id, bytes.fromhex(material_id))
        return material_id, row.cluster_id or ""

    def discard(self, store_id: str, key_id: str, material_id: str) -> None:
        """Removes a token object whose key was never recorded (its CreateKey failed)."""
        try:
            self._tokens.destroy_key(store_id, key_id, bytes.fromhex(material_id))
        except Exception:  # noqa: BLE001 - the CreateKey error is the one to report; the orphan is listed by label
            pass

    def can_destroy(self, key: Any) -> bool:
        row = self._view.get(key.custom_key_store_id)
        return row is not None and row.connected

    def destroy(self, key: Any) -> None:
        """Destroys the key's token objects (crypto-shredding in hardware); idempotent."""
        store_id = key.custom_key_store_id
        self._ensure_open(store_id)
        for material in key.materials:
            self._tokens.destroy_key(store_id, key.key_id, bytes.fromhex(material["material_id"]))

    def seal(self, row: KeyRow, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        store_id = row.metadata["CustomKeyStoreId"]
        assert row.current_material_id is not None
        self._ensure_open(store_id)
        return self._tokens.encrypt(store_id, row.key_id, bytes.fromhex(row.current_material_id), iv, plaintext, aad)

    def open(self, row: KeyRow, material_id: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        store_id = row.metadata["CustomKeyStoreId"]
        self._ensure_open(store_id)
        try:
            return self._tokens.decrypt(store_id, row.key_id, material_id, iv, sealed, aad)
        except UnwrapError:
            raise InvalidCiphertextError(
                "The ciphertext could not be decrypted: it was altered, or the encryption context differs from the one "
                "used to encrypt.") from None
        except InvalidStateError:
            if material_id.hex() != row.current_material_id:
                raise InvalidCiphertextError("The ciphertext was made with key material this key does not have.") from None
            raise

    def random(self, call: Call, store_id: str, length: int) -> bytes:
        row = self._view.get(store_id)
        if row is not None and row.store_type != "AWS_CLOUDHSM":  # AWS: external key store ids are not valid here
            raise UnsupportedOperationError(f"Custom key store {store_id} is an external key store; GenerateRandom "
                                            "draws from AWS_CLOUDHSM key stores only.")
        self.connected_store(call, store_id)
        self._ensure_open(store_id)
        return self._tokens.random(store_id, length)
