"""The six custom key store operations (CreateCustomKeyStore, DescribeCustomKeyStores, UpdateCustomKeyStore,
DeleteCustomKeyStore, ConnectCustomKeyStore, DisconnectCustomKeyStore), on the CustomKeyStore aggregate.

Every change commits through LedgerWriter with its call's audit record. Uniqueness rules (a name per account
and Region, one store per token, ten stores per account and Region) are checked inside the commit's
transaction, after the writers' lock is taken, so two concurrent creates cannot both pass them.

ConnectCustomKeyStore records CONNECTING with the caller's record, then logs in to the token and records the
outcome (CONNECTED, or FAILED with a ConnectionErrorCode) as a service call, before it answers: the state
is final when the call returns, and a crash in between leaves CONNECTING, which the next Connect finishes.
"""
from __future__ import annotations

from typing import Any, Callable

from eventsourcing.application import AggregateNotFoundError

from application.audit.records import new_ids
from application.calls import Call
from application.keystores.external import ExternalKeyStores
from application.keystores.external_settings import XKS_MEMBERS, ExternalStoreChanges
from application.keystores.ports import (
    KEY_STORE_PASSWORD_PURPOSE,
    KeyStoreView,
    StoreConnectionError,
    StorePasswords,
    StoreTokens,
)
from application.ledger import KeyLedger
from application.pagination import page
from application.ports import Clock
from application.writer import LedgerWriter, Outcome
from domain.errors import (
    CloudHsmClusterInUseError,
    CloudHsmClusterNotRelatedError,
    CustomKeyStoreHasKeysError,
    CustomKeyStoreNameInUseError,
    CustomKeyStoreNotFoundError,
    IncorrectTrustAnchorError,
    LimitExceededError,
    ValidationError,
    shown,
)
from domain.keystores.store import (
    AWS_CLOUDHSM,
    EXTERNAL_KEY_STORE,
    MAX_STORES_PER_REGION,
    CustomKeyStore,
    new_store_id,
    store_uuid,
)


def _pem_certificate(text: str) -> bytes:
    """The DER bytes of a PEM certificate: AWS compares trust anchors as certificates, not as text."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(text.encode("utf-8")).tbs_certificate_bytes
    except ValueError:
        raise IncorrectTrustAnchorError("TrustAnchorCertificate is not a PEM-encoded X.509 certificate "
                                        "(the content of the cluster's customerCA.crt).") from None


class CustomKeyStoreService(ExternalStoreChanges):
    def __init__(self, ledger: KeyLedger, writer: LedgerWriter, view: KeyStoreView, passwords: StorePasswords,
                 tokens: StoreTokens, clock: Clock, *, seal: Callable[..., bytes], unseal: Callable[..., bytes],
                 related_clusters: Callable[[str], list[str]], keys_in_store: Callable[[Any, str], int],
                 authorize: Callable[[Call], None], external: ExternalKeyStores | None = None) -> None:
        self._ledger = ledger
        self._writer = writer
        self._view = view
        self._passwords = passwords
        self._tokens = tokens
        self._clock = clock
        self._seal = seal
        self._unseal = unseal
        self._related = related_clusters  # cluster ids mapped to the same token, this one included
        self._keys_in_store = keys_in_store
        self._authorize = authorize
        self._external = external  # external key stores: their XKS proxies (application/keystores/external.py)

    # -- loading ---------------------------------------------------------------------------------

    def load(self, call: Call, store_id: str | None) -> CustomKeyStore:
        scope = call.in_scope()
        store: CustomKeyStore | None = None
        if store_id:
            try:
                store = self._ledger.repository.get(store_uuid(store_id))  # type: ignore[assignment]
            except AggregateNotFoundError:
                store = None
        if (store is None or store.deleted or store.store_id != store_id
                or (store.account_id, store.region) != (scope.account_id, scope.region)):
            raise CustomKeyStoreNotFoundError(f"Custom key store '{shown(store_id)}' does not exist in this account and Region.")
        return store

    # -- operations ------------------------------------------------------------------------------

    def create(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        scope = call.in_scope()
        store_type = p.get("CustomKeyStoreType") or AWS_CLOUDHSM
        if store_type == EXTERNAL_KEY_STORE:
            return self._create_external(call, p)
        if any(p.get(m) is not None for m in XKS_MEMBERS):
            raise ValidationError("XksProxy* settings apply to EXTERNAL_KEY_STORE key stores only; set "
                                  "CustomKeyStoreType EXTERNAL_KEY_STORE.")
        missing = [m for m in ("CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword") if not p.get(m)]
        if missing:
            raise ValidationError(f"An AWS_CLOUDHSM key store needs {', '.join(missing)}.")
        name, cluster_id, anchor = p["CustomKeyStoreName"], p["CloudHsmClusterId"], p["TrustAnchorCertificate"]
        self._tokens.check_cluster(cluster_id)
        presented = _pem_certificate(anchor)
        expected = self._tokens.trust_anchor(cluster_id)
        if expected is not None and _pem_certificate(expected) != presented:
            raise IncorrectTrustAnchorError(f"The trust anchor certificate is not the one of cluster {cluster_id}.")
        store_id = new_store_id()
        wrapped = self._seal(p["KeyStorePassword"].encode("utf-8"), purpose=KEY_STORE_PASSWORD_PURPOSE, key_id=store_id)
        related = self._related(cluster_id)

        def checks(tx: Any) -> None:
            self._new_store_checks(tx, scope, name)
            users = self._view.by_cluster(tx, related)
            if users:
                raise CloudHsmClusterInUseError(
                    f"Cluster {cluster_id} (or a cluster on the same token) is already the cluster of custom key "
                    f"store {users[0].store_id}.")
            self._passwords.put(tx, store_id, wrapped)

        def attempt() -> Outcome[None]:
            store = CustomKeyStore.create(store_id=store_id, scope=scope, name=name, store_type=store_type,
                                          settings={"cluster_id": cluster_id, "trust_anchor_certificate": anchor},
                                          at=self._clock.now())
            return Outcome([store], also=[checks])

        self._writer.retrying(call, attempt)
        return {"CustomKeyStoreId": store_id}

    def _new_store_checks(self, tx: Any, scope: Any, name: str) -> None:
        """In the creating transaction, after the writers' lock: the name is free and the quota not spent."""
        if self._view.by_name(tx, scope.account_id, scope.region, name) is not None:
            raise CustomKeyStoreNameInUseError(f"A custom key store named '{shown(name)}' already exists.")
        if self._view.count(tx, scope.account_id, scope.region) >= MAX_STORES_PER_REGION:
            raise LimitExceededError(f"An account may have at most {MAX_STORES_PER_REGION} custom key stores in a Region.")

    def describe(self, call: Call, store_id: str | None, name: str | None, limit: int | None,
                 marker: str | None) -> dict[str, Any]:
        scope = call.in_scope()
        if store_id and name:
            raise ValidationError("Specify CustomKeyStoreId or CustomKeyStoreName, not both.")
        if store_id or name:
            if store_id:
                row = self._view.get(store_id)
                found = row if row is not None and (row.account_id, row.region) == (scope.account_id, scope.region) else None
            else:
                found = self._view.by_name(None, scope.account_id, scope.region, name or "")
            if found is None:
                raise CustomKeyStoreNotFoundError(
                    f"Custom key store '{shown(store_id or name)}' does not exist in this account and Region.")
            return {"CustomKeyStores": [found.entry], "Truncated": False}
        return page(lambda n, after: self._view.list(scope.account_id, scope.region, n, after), limit, marker,
                    sort_key=lambda r: r.store_id, render=lambda r: r.entry, member="CustomKeyStores")

    def update(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        store_id = p["CustomKeyStoreId"]
        if self.load(call, store_id).store_type == EXTERNAL_KEY_STORE:
            return self._update_external(call, p)
        if any(p.get(m) is not None for m in XKS_MEMBERS):
            raise ValidationError("XksProxy* settings apply to EXTERNAL_KEY_STORE key stores only.")
        new_name, password, cluster_id = p.get("NewCustomKeyStoreName"), p.get("KeyStorePassword"), p.get("CloudHsmClusterId")
        wrapped = (self._seal(password.encode("utf-8"), purpose=KEY_STORE_PASSWORD_PURPOSE, key_id=store_id)
                   if password else None)
        if cluster_id:
            self._tokens.check_cluster(cluster_id)

        def attempt() -> Outcome[None]:
            store = self.load(call, store_id)
            scope = call.in_scope()
            now = self._clock.now()
            also = []
            if cluster_id or password:
                store.require_disconnected("change its cluster or password")
            if cluster_id and cluster_id != store.settings.get("cluster_id"):
                if cluster_id not in self._related(store.settings.get("cluster_id") or ""):
                    raise CloudHsmClusterNotRelatedError(
                        f"Cluster {cluster_id} is not a cluster of the same token as {store.settings.get('cluster_id')}; "
                        "a key store can move only to a cluster that holds the same keys.")
                store.change_settings({"cluster_id": cluster_id}, now)
            if wrapped is not None:
                store.change_password(now)
                also.append(lambda tx: self._passwords.put(tx, store_id, wrapped))
            if new_name is not None and new_name != store.name:
                store.rename(new_name, now)
                also.append(lambda tx: self._name_free(tx, scope, new_name, store_id))
            return Outcome([store], also=also)

        self._writer.retrying(call, attempt)
        self._view.forget(store_id)
        return {}

    def _name_free(self, tx: Any, scope: Any, name: str, store_id: str) -> None:
        other = self._view.by_name(tx, scope.account_id, scope.region, name)
        if other is not None and other.store_id != store_id:
            raise CustomKeyStoreNameInUseError(f"A custom key store named '{shown(name)}' already exists.")

    def delete(self, call: Call, store_id: str) -> dict[str, Any]:
        def attempt() -> Outcome[None]:
            store = self.load(call, store_id)
            store.delete(self._clock.now())

            def no_keys(tx: Any) -> None:
                count = self._keys_in_store(tx, store_id)
                if count:
                    raise CustomKeyStoreHasKeysError(
                        f"Custom key store {store_id} still has {count} KMS keys (pending deletion counts too); "
                        "delete them first.")
                self._passwords.delete(tx, store_id)
            return Outcome([store], also=[no_keys])

        self._writer.retrying(call, attempt)
        self._view.forget(store_id)
        self._tokens.close(store_id)
        return {}

    def connect(self, call: Call, store_id: str) -> dict[str, Any]:
        attempting: list[bool] = []

        def attempt() -> Outcome[None]:
            store = self.load(call, store_id)
            attempting[:] = [store.request_connection(self._clock.now())]
            return Outcome([store])

        self._writer.retrying(call, attempt)
        self._view.forget(store_id)
        if attempting and attempting[0]:
            self.finish_connection(store_id, call.in_scope())
        return {}

    def finish_connection(self, store_id: str, scope: Any) -> None:
        """Logs in to the store's token and records the outcome (a service call of its own)."""
        store: CustomKeyStore = self._ledger.repository.get(store_uuid(store_id))  # type: ignore[assignment]
        error: str | None = None
        request_id, event_id = new_ids(2)
        if store.store_type == EXTERNAL_KEY_STORE:  # the proxy answers GetHealthStatus, with a healthy key manager
            self._view.forget(store_id)
            error = self._require_external().connection_error(store_id, request_id)
        else:
            try:
                self.open_token(store)
            except StoreConnectionError as exc:
                error = exc.code
        service = Call.service("ConnectCustomKeyStore", at=self._clock.now(), request_id=request_id,
                               event_id=event_id, scope=scope)
        self._authorize(service)  # a service call: allowed by rule, and its record says so
        service.request_parameters = {"customKeyStoreId": store_id}
        service.additional_event_data = {"connectionState": "FAILED" if error else "CONNECTED",
                                         **({"connectionErrorCode": error} if error else {})}

        def attempt() -> Outcome[None]:
            fresh: CustomKeyStore = self._ledger.repository.get(store_uuid(store_id))  # type: ignore[assignment]
            fresh.finish_connection(error, self._clock.now())
            return Outcome([fresh])

        self._writer.retrying(service, attempt)
        self._view.forget(store_id)
        if error is not None:
            self._tokens.close(store_id)

    def open_token(self, store: CustomKeyStore) -> None:
        wrapped = self._passwords.get(store.store_id)
        if wrapped is None:
            raise StoreConnectionError("INTERNAL_ERROR", f"Custom key store {store.store_id} has no password stored.")
        password = self._unseal(wrapped, purpose=KEY_STORE_PASSWORD_PURPOSE, key_id=store.store_id).decode("utf-8")
        self._tokens.open(store.store_id, store.settings["cluster_id"], password)

    def disconnect(self, call: Call, store_id: str) -> dict[str, Any]:
        def attempt() -> Outcome[None]:
            store = self.load(call, store_id)
            store.disconnect(self._clock.now())
            return Outcome([store])

        self._writer.retrying(call, attempt)
        self._view.forget(store_id)
        self._tokens.close(store_id)
        return {}
