"""The CustomKeyStore aggregate: a custom key store's life (created, renamed, reconfigured, connected,
disconnected, deleted) as events, so "which store held key K on date D, and was it connected" is a replay.

One aggregate for every store type: ``store_type`` says which and ``settings`` holds that type's own fields
(AWS_CLOUDHSM: cluster_id, trust_anchor_certificate; EXTERNAL_KEY_STORE: uri_endpoint, uri_path, connectivity,
access_key_id). The connection rules, which state allows which operation, are AWS KMS's and the same for both
types, except that an external key store's credential and path may change while it is CONNECTED. No secret is in
any event: the key store password (an XKS proxy credential's secret access key) lives root-wrapped in its own
table; ``PasswordChanged`` only says it changed.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from enum import Enum
from typing import Any, Mapping

from eventsourcing.domain import Aggregate

from domain.errors import CustomKeyStoreInvalidStateError, ValidationError
from domain.identifiers import Scope

AWS_CLOUDHSM, EXTERNAL_KEY_STORE = "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"
STORE_TYPES = (AWS_CLOUDHSM, EXTERNAL_KEY_STORE)
MAX_STORES_PER_REGION = 10  # AWS's quota: custom key stores per account and Region
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "keyledger:custom-key-store")


class ConnectionState(str, Enum):
    CONNECTED = "CONNECTED"
    CONNECTING = "CONNECTING"
    DISCONNECTED = "DISCONNECTED"
    DISCONNECTING = "DISCONNECTING"
    FAILED = "FAILED"


# ConnectionErrorCode values a CloudHSM key store may show (botocore's ConnectionErrorCodeType).
INVALID_CREDENTIALS, CLUSTER_NOT_FOUND, NETWORK_ERRORS = "INVALID_CREDENTIALS", "CLUSTER_NOT_FOUND", "NETWORK_ERRORS"
INTERNAL_ERROR, USER_LOCKED_OUT, INSUFFICIENT_CLOUDHSM_HSMS = "INTERNAL_ERROR", "USER_LOCKED_OUT", "INSUFFICIENT_CLOUDHSM_HSMS"
# ...and an external key store (INVALID_CREDENTIALS and INTERNAL_ERROR too).
XKS_PROXY_ACCESS_DENIED, XKS_PROXY_NOT_REACHABLE = "XKS_PROXY_ACCESS_DENIED", "XKS_PROXY_NOT_REACHABLE"
XKS_PROXY_INVALID_RESPONSE, XKS_PROXY_INVALID_CONFIGURATION = "XKS_PROXY_INVALID_RESPONSE", "XKS_PROXY_INVALID_CONFIGURATION"
XKS_PROXY_TIMED_OUT, XKS_PROXY_INVALID_TLS_CONFIGURATION = "XKS_PROXY_TIMED_OUT", "XKS_PROXY_INVALID_TLS_CONFIGURATION"
# External key store settings that may change while the store is CONNECTED (AWS: the credential and the path).
XKS_CHANGEABLE_CONNECTED = frozenset({"uri_path", "access_key_id"})


def new_store_id() -> str:
    """AWS's form: ``cks-`` and 17 hex digits."""
    return "cks-" + secrets.token_hex(9)[:17]


def store_uuid(store_id: str) -> uuid.UUID:
    """The aggregate id of a store id (the store id is what callers see)."""
    return uuid.uuid5(_NAMESPACE, store_id)


def _invalid(store_id: str, state: str, doing: str) -> CustomKeyStoreInvalidStateError:
    return CustomKeyStoreInvalidStateError(
        f"Custom key store {store_id} is {state}; {doing}. Use DescribeCustomKeyStores to see its ConnectionState.")


class CustomKeyStore(Aggregate):
    class Created(Aggregate.Created):
        store_id: str
        account_id: str
        region: str
        partition: str
        name: str
        store_type: str
        settings: dict[str, Any]

    class Renamed(Aggregate.Event):
        name: str

        def apply(self, store: CustomKeyStore) -> None:
            store.name = self.name

    class SettingsChanged(Aggregate.Event):
        """Per-type settings changed (AWS_CLOUDHSM: a related cluster id)."""

        settings: dict[str, Any]

        def apply(self, store: CustomKeyStore) -> None:
            store.settings = {**store.settings, **self.settings}

    class PasswordChanged(Aggregate.Event):
        """The key store password was replaced (its new value is root-wrapped in its own table, not here)."""

        def apply(self, store: CustomKeyStore) -> None:
            store.password_changes += 1

    class ConnectionRequested(Aggregate.Event):
        def apply(self, store: CustomKeyStore) -> None:
            store.connection_state = ConnectionState.CONNECTING.value
            store.error_code = None

    class Connected(Aggregate.Event):
        def apply(self, store: CustomKeyStore) -> None:
            store.connection_state = ConnectionState.CONNECTED.value
            store.error_code = None

    class ConnectionFailed(Aggregate.Event):
        error_code: str

        def apply(self, store: CustomKeyStore) -> None:
            store.connection_state = ConnectionState.FAILED.value
            store.error_code = self.error_code

    class Disconnected(Aggregate.Event):
        def apply(self, store: CustomKeyStore) -> None:
            store.connection_state = ConnectionState.DISCONNECTED.value
            store.error_code = None

    class Deleted(Aggregate.Event):
        def apply(self, store: CustomKeyStore) -> None:
            store.deleted = True

    def __init__(self, *, store_id: str, account_id: str, region: str, partition: str, name: str, store_type: str,
                 settings: dict[str, Any]) -> None:
        self.store_id = store_id
        self.account_id = account_id
        self.region = region
        self.partition = partition
        self.name = name
        self.store_type = store_type
        self.settings = dict(settings)
        self.connection_state = ConnectionState.DISCONNECTED.value  # AWS: a new store is disconnected
        self.error_code: str | None = None
        self.password_changes = 0
        self.deleted = False

    @classmethod
    def create(cls, *, store_id: str, scope: Scope, name: str, store_type: str, settings: Mapping[str, Any],
               at: datetime) -> CustomKeyStore:
        if store_type not in STORE_TYPES:
            raise ValidationError(f"CustomKeyStoreType must be one of {', '.join(STORE_TYPES)}.")
        return cls._create(cls.Created, id=store_uuid(store_id), timestamp=at, store_id=store_id,
                           account_id=scope.account_id, region=scope.region, partition=scope.partition, name=name,
                           store_type=store_type, settings=dict(settings))

    # -- reading ---------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return ConnectionState(self.connection_state)

    @property
    def connected(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    def describe(self) -> dict[str, Any]:
        """A CustomKeyStoresListEntry (DescribeCustomKeyStores), as AWS shapes it."""
        entry: dict[str, Any] = {
            "CustomKeyStoreId": self.store_id, "CustomKeyStoreName": self.name,
            "ConnectionState": self.connection_state, "CreationDate": self.created_on,
            "CustomKeyStoreType": self.store_type,
        }
        if self.store_type == AWS_CLOUDHSM:
            entry["CloudHsmClusterId"] = self.settings.get("cluster_id")
            entry["TrustAnchorCertificate"] = self.settings.get("trust_anchor_certificate")
        else:
            entry["XksProxyConfiguration"] = {
                "Connectivity": self.settings.get("connectivity"), "AccessKeyId": self.settings.get("access_key_id"),
                "UriEndpoint": self.settings.get("uri_endpoint"), "UriPath": self.settings.get("uri_path")}
        if self.state is ConnectionState.FAILED and self.error_code:
            entry["ConnectionErrorCode"] = self.error_code  # AWS shows it only while FAILED
        return entry

    # -- commands (each checks the connection state first: a refused command leaves no event) -----

    def rename(self, name: str, at: datetime) -> None:
        if self.state not in (ConnectionState.CONNECTED, ConnectionState.DISCONNECTED):
            raise _invalid(self.store_id, self.connection_state,
                           "its name can be changed only while it is CONNECTED or DISCONNECTED")
        if name != self.name:
            self.trigger_event(self.Renamed, name=name, timestamp=at)

    def require_disconnected(self, doing: str) -> None:
        if self.state is not ConnectionState.DISCONNECTED:
            raise _invalid(self.store_id, self.connection_state, f"disconnect it before you {doing}")

    def _changeable_connected(self) -> frozenset[str]:
        return XKS_CHANGEABLE_CONNECTED if self.store_type == EXTERNAL_KEY_STORE else frozenset()

    def change_settings(self, settings: Mapping[str, Any], at: datetime) -> None:
        changed = {k: v for k, v in settings.items() if self.settings.get(k) != v}
        if not set(changed) <= self._changeable_connected() or self.state is not ConnectionState.CONNECTED:
            self.require_disconnected("change its settings" if self.store_type == AWS_CLOUDHSM else
                                      "change its XksProxyUriEndpoint or XksProxyConnectivity")
        if changed:
            self.trigger_event(self.SettingsChanged, settings=changed, timestamp=at)

    def change_password(self, at: datetime) -> None:
        if not (self.store_type == EXTERNAL_KEY_STORE and self.state is ConnectionState.CONNECTED):
            self.require_disconnected("change its password")
        self.trigger_event(self.PasswordChanged, timestamp=at)

    def request_connection(self, at: datetime) -> bool:
        """True when a connection attempt should follow (False: already connected)."""
        if self.state in (ConnectionState.DISCONNECTING, ConnectionState.FAILED):
            raise _invalid(self.store_id, self.connection_state, "a FAILED store must be disconnected (DisconnectCustomKeyStore) "
                           "and the cause fixed before it is connected again")
        if self.state is ConnectionState.CONNECTED:
            return False
        if self.state is ConnectionState.DISCONNECTED:
            self.trigger_event(self.ConnectionRequested, timestamp=at)
        return True  # CONNECTING: an attempt interrupted (a crash, another process) is made again

    def finish_connection(self, error_code: str | None, at: datetime) -> None:
        if self.state is not ConnectionState.CONNECTING:
            return  # disconnected meanwhile: the attempt's outcome no longer matters
        if error_code is None:
            self.trigger_event(self.Connected, timestamp=at)
        else:
            self.trigger_event(self.ConnectionFailed, error_code=error_code, timestamp=at)

    def disconnect(self, at: datetime) -> None:
        if self.state in (ConnectionState.DISCONNECTING, ConnectionState.DISCONNECTED):
            raise _invalid(self.store_id, self.connection_state, "it is not connected")
        self.trigger_event(self.Disconnected, timestamp=at)

    def delete(self, at: datetime) -> None:
        self.require_disconnected("delete it")
        self.trigger_event(self.Deleted, timestamp=at)
