"""CreateCustomKeyStore and UpdateCustomKeyStore for EXTERNAL_KEY_STORE stores: their members as the store's
settings, and the two operations (a mixin of CustomKeyStoreService, which holds the writer, the view, the sealing
and the proxies).

Settings: ``uri_endpoint`` (https://<host>), ``uri_path`` (``[/<prefix>]/kms/xks/v1``), ``connectivity``
(PUBLIC_ENDPOINT: keyledger has no VPC endpoint services; api/members.py refuses VPC_ENDPOINT_SERVICE and the
XksProxyVpcEndpointService* members before anything is done) and ``access_key_id``. The credential's secret is
never a setting: it is root-wrapped in the store's secret row, as a CloudHSM store's password is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from application.calls import Call
from application.keystores.ports import KEY_STORE_PASSWORD_PURPOSE, KeyStoreRow, XksConnection
from application.writer import Outcome
from domain.errors import ValidationError, XksProxyUriInUseError
from domain.keystores.store import EXTERNAL_KEY_STORE, CustomKeyStore, new_store_id

if TYPE_CHECKING:
    from application.keystores.external import ExternalKeyStores

XKS_MEMBERS = ("XksProxyUriEndpoint", "XksProxyUriPath", "XksProxyVpcEndpointServiceName",
               "XksProxyVpcEndpointServiceOwner", "XksProxyAuthenticationCredential", "XksProxyConnectivity")
CLOUDHSM_MEMBERS = ("CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword")
PUBLIC_ENDPOINT = "PUBLIC_ENDPOINT"
_SETTING = {"XksProxyUriEndpoint": "uri_endpoint", "XksProxyUriPath": "uri_path", "XksProxyConnectivity": "connectivity"}


def xks_settings(p: Mapping[str, Any], current: Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """(the settings that change, the new secret access key or None). ``current`` None: a new store, which
    needs them all."""
    changes = {name: p[member] for member, name in _SETTING.items() if p.get(member) is not None}
    credential = p.get("XksProxyAuthenticationCredential")
    secret = None
    if credential is not None:
        changes["access_key_id"] = credential["AccessKeyId"]
        secret = credential["RawSecretAccessKey"]
    if current is None:
        missing = [m for m in ("XksProxyUriEndpoint", "XksProxyUriPath", "XksProxyAuthenticationCredential",
                               "XksProxyConnectivity") if p.get(m) is None]
        if missing:
            raise ValidationError(f"An EXTERNAL_KEY_STORE key store needs {', '.join(missing)}.")
    else:
        changes = {k: v for k, v in changes.items() if current.get(k) != v}
    if changes.get("connectivity", PUBLIC_ENDPOINT) != PUBLIC_ENDPOINT:
        raise ValidationError("XksProxyConnectivity must be PUBLIC_ENDPOINT: keyledger has no VPC endpoint services.")
    return changes, secret


def xks_connection(settings: Mapping[str, Any], secret: str, region: str) -> XksConnection:
    return XksConnection(settings["uri_endpoint"], settings["uri_path"], settings["access_key_id"], secret, region)


def proxy_uri_in_use(rows: Iterable[KeyStoreRow], settings: Mapping[str, Any], store_id: str) -> str | None:
    """The id of another store of the account and Region with the same endpoint and path (AWS: unique per both)."""
    for row in rows:
        config = row.entry.get("XksProxyConfiguration") or {}
        if row.store_id != store_id and (config.get("UriEndpoint"), config.get("UriPath")) == (
                settings.get("uri_endpoint"), settings.get("uri_path")):
            return row.store_id
    return None


class ExternalStoreChanges:
    """CustomKeyStoreService's EXTERNAL_KEY_STORE creation and updates."""

    _external: ExternalKeyStores | None
    _view: Any
    _passwords: Any
    _writer: Any
    _clock: Any
    _seal: Callable[..., bytes]
    load: Callable[[Call, str], CustomKeyStore]
    _new_store_checks: Callable[[Any, Any, str], None]
    _name_free: Callable[[Any, Any, str, str], None]

    def _require_external(self) -> ExternalKeyStores:
        if self._external is None:
            raise ValidationError("External key stores are not available in this process.")
        return self._external

    def _uri_free(self, tx: Any, scope: Any, settings: Mapping[str, Any], store_id: str) -> None:
        other = proxy_uri_in_use(self._view.in_region(tx, scope.account_id, scope.region), settings, store_id)
        if other is not None:
            raise XksProxyUriInUseError(f"XksProxyUriEndpoint and XksProxyUriPath are those of custom key store {other} "
                                        "already; each external key store in a Region needs its own proxy address.")

    def _create_external(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        """The proxy must answer GetHealthStatus with these settings first (AWS KMS connects while creating a store
        with public endpoint connectivity); a new store is DISCONNECTED, as AWS's."""
        scope, external = call.in_scope(), self._require_external()
        if any(p.get(m) is not None for m in CLOUDHSM_MEMBERS):
            raise ValidationError("CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword apply to AWS_CLOUDHSM "
                                  "key stores only.")
        settings, secret = xks_settings(p, None)
        assert secret is not None
        external.check_proxy(xks_connection(settings, secret, scope.region), "CreateCustomKeyStore", call.request_id)
        store_id, name = new_store_id(), p["CustomKeyStoreName"]
        wrapped = self._seal(secret.encode("utf-8"), purpose=KEY_STORE_PASSWORD_PURPOSE, key_id=store_id)

        def checks(tx: Any) -> None:
            self._new_store_checks(tx, scope, name)
            self._uri_free(tx, scope, settings, store_id)
            self._passwords.put(tx, store_id, wrapped)

        def attempt() -> Outcome[None]:
            store = CustomKeyStore.create(store_id=store_id, scope=scope, name=name, store_type=EXTERNAL_KEY_STORE,
                                          settings=settings, at=self._clock.now())
            return Outcome([store], also=[checks])

        self._writer.retrying(call, attempt)
        return {"CustomKeyStoreId": store_id}

    def _update_external(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        """Name, credential and path while CONNECTED or DISCONNECTED; endpoint and connectivity only while
        DISCONNECTED. New proxy settings must answer GetHealthStatus before they are recorded (as AWS KMS)."""
        store_id, external, scope = p["CustomKeyStoreId"], self._require_external(), call.in_scope()
        if any(p.get(m) is not None for m in CLOUDHSM_MEMBERS):
            raise ValidationError("KeyStorePassword and CloudHsmClusterId apply to AWS_CLOUDHSM key stores only.")
        new_name = p.get("NewCustomKeyStoreName")
        probe = self.load(call, store_id)
        changes, secret = xks_settings(p, probe.settings)
        now = self._clock.now()
        probe.change_settings(changes, now)  # the connection state allows it (nothing is saved from the probe)
        if secret is not None:
            probe.change_password(now)
        if changes or secret is not None:
            current = secret if secret is not None else external.connection(store_id).secret
            external.check_proxy(xks_connection({**probe.settings, **changes}, current, scope.region),
                                 "UpdateCustomKeyStore", call.request_id)
        wrapped = (self._seal(secret.encode("utf-8"), purpose=KEY_STORE_PASSWORD_PURPOSE, key_id=store_id)
                   if secret is not None else None)

        def attempt() -> Outcome[None]:
            store = self.load(call, store_id)
            now = self._clock.now()
            also: list[Callable[[Any], None]] = []
            store.change_settings(changes, now)
            if {"uri_endpoint", "uri_path"} & set(changes):
                also.append(lambda tx: self._uri_free(tx, scope, store.settings, store_id))
            if wrapped is not None:
                store.change_password(now)
                also.append(lambda tx: self._passwords.put(tx, store_id, wrapped))
            if new_name is not None and new_name != store.name:
                store.rename(new_name, now)
                also.append(lambda tx: self._name_free(tx, scope, new_name, store_id))
            return Outcome([store], also=also)

        self._writer.retrying(call, attempt)
        self._view.forget(store_id)
        external.forget(store_id)
        return {}

