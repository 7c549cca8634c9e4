"""What a built keyledger is made of: its services (Services) and the process-wide state around them
(Runtime: storage, clock, audit trail, health, the root key's state), with how it closes. Built by
infrastructure/bootstrap.py."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.audit.checkpoints import Checkpointer
from application.audit.group_commit import AuditUnavailable
from application.audit.trail import AuditTrail
from application.audit.unauthenticated import UnauthenticatedFailures
from application.authorization.authorizer import Authorizer
from application.clock_service import ClockService
from application.crypto.asymmetric_service import AsymmetricService
from application.crypto.symmetric_service import CryptoService
from application.health import HealthService
from application.history.last_usage import KeyLastUsage
from application.history.point_in_time import PointInTime
from application.history.replay import ProjectionReplay
from application.history.reports import Reports
from application.keys.alias_service import AliasService
from application.keys.grant_service import GrantService
from application.keys.import_service import ImportService
from application.keys.key_service import KeyService
from application.keys.maintenance import Maintenance
from application.keys.multi_region_service import MultiRegionService
from application.keys.resolver import KeyResolver
from application.keys.rotation_service import RotationService
from application.keystores.keys import StoreKeys
from application.keystores.service import CustomKeyStoreService
from application.ledger import KeyLedger
from application.principals.directory import PrincipalDirectory
from application.principals.service import PrincipalService
from application.quotas import RequestQuotas
from application.root_key.service import CurrentRootVersion, RootKeyService
from application.xks.credentials import XksCredentialService
from application.xks.proxy import XksProxyService
from infrastructure.clock import DatabaseClock
from infrastructure.credentials import CredentialStore
from infrastructure.settings import Settings
from infrastructure.storage import SqlUnitOfWork
from infrastructure.xks_credentials import SqlXksCredentialStore
from projections.audit_index import SqlAuditIndex
from projections.custom_key_store_view import SqlCustomKeyStoreView


@dataclass
class Services:
    keys: KeyService
    aliases: AliasService
    crypto: CryptoService
    asymmetric: AsymmetricService
    rotation: RotationService
    imports: ImportService
    maintenance: Maintenance
    credentials: CredentialStore
    authorizer: Authorizer
    resolver: KeyResolver  # any KeyId form to the key it names now, as the KMS API resolves it
    checkpointer: Checkpointer
    audit_public_key: bytes
    history: PointInTime
    grants: GrantService
    principals: PrincipalDirectory  # who callers are: existence and identity policies, now and at a moment
    principal_admin: PrincipalService  # the operator's principal and access-key commands
    root_key: RootKeyService  # root-key rotation and retirement
    key_stores: CustomKeyStoreService  # custom key stores (AWS_CLOUDHSM on PKCS#11 tokens)
    store_keys: StoreKeys
    key_store_view: SqlCustomKeyStoreView
    multi_region: MultiRegionService  # ReplicateKey, UpdatePrimaryRegion (decisions 155-164)
    last_usage: KeyLastUsage | None = None  # GetKeyLastUsage, from the audit log
    xks_proxy: XksProxyService | None = None  # keyledger serving the XKS proxy API (api/xks_front.py)
    xks_credentials: SqlXksCredentialStore | None = None  # the credentials XKS proxy requests are signed with
    xks_credential_admin: XksCredentialService | None = None  # `keyledger xks credentials ...`
    archive: Any = None  # application/audit/archive.py: `keyledger audit archive`
    console_session_key: bytes = b""  # signs web console sessions (api/console/session.py); root-wrapped at rest


@dataclass
class Runtime:
    settings: Settings
    ledger: KeyLedger
    uow: SqlUnitOfWork
    clock: DatabaseClock
    audit: AuditTrail
    health: HealthService
    # Operator services that read the event log and need no root key (they work on a sealed service, and
    # on an auditor's copy of the database): point in time, reports, replay, the service clock.
    history: PointInTime
    reports: Reports
    replay: ProjectionReplay
    clock_service: ClockService
    quotas: RequestQuotas
    unauthenticated: UnauthenticatedFailures  # failed authentication: aggregated records, per-source limit
    audit_index: SqlAuditIndex | None = None  # finds records by key, principal, event, error and time
    archive_store: Any = None  # infrastructure/audit_archive_store.py: which records were archived (docs/audit.md)
    sealed_reason: str | None = None
    services: Services | None = None
    admin_created: bool = False
    admin_note: str | None = None  # why no administrator key was created or written (infrastructure/node_files.py)
    serving: bool = False  # a server process: it signed a checkpoint at start and signs one at shutdown
    root_key_provider: Any = None  # application/ports.py: RootKeyProvider, closed with the runtime
    root_version: CurrentRootVersion | None = None  # the rotation state, cached
    store_tokens: Any = None  # infrastructure/cloudhsm.py: Pkcs11StoreTokens, closed with the runtime
    leadership: Any = None  # infrastructure/leadership.py: who runs background work; released with the runtime
    xks_client: Any = None  # infrastructure/xks_proxy_client.py: HttpXksProxyClient, closed with the runtime
    # infrastructure/audit_committer_launch.py: the CommitterProcess this process started and alone feeds;
    # stopped with the runtime, before the process exits (uvicorn ends a signalled process as soon as it returns).
    audit_committer: Any = None
    # Where the committer process listens, when this process hands it batches: its event loop connects there too.
    audit_committer_address: bytes | None = None

    def key_store_state(self) -> list[dict[str, Any]]:
        """What /healthz and /metrics say about custom key stores: id, type and connection state (no secret)."""
        if self.services is None or self.sealed_reason is not None:
            return []
        try:
            rows = self.services.key_store_view.all()
        except Exception:  # noqa: BLE001 - health answers whatever the database does (readiness says why)
            return []
        return [{"id": r.store_id, "type": r.store_type, "connection_state": r.connection_state,
                 **({"connection_error_code": r.entry["ConnectionErrorCode"]} if "ConnectionErrorCode" in r.entry else {})}
                for r in rows]

    def background_state(self) -> dict[str, Any] | None:
        """What /healthz and /metrics say about background work: whether this process leads it, by which lock."""
        if self.leadership is None:
            return None
        return {"leader": self.leadership.holding, "lock": self.leadership.kind}

    def root_key_state(self) -> dict[str, Any]:
        """What /healthz and /metrics say about the root key: provider, sealed or not, version and rotation."""
        state: dict[str, Any] = {"provider": self.settings.root_key_provider, "sealed": self.sealed_reason is not None}
        if self.root_version is not None and self.sealed_reason is None:
            state.update(self.root_version.state())
        return state

    async def open_audit_channel(self) -> None:
        """On the serving event loop, as it starts: the loop's own connection to the committer process, so that its
        calls' records are handed over on the loop (decision 267). Without one (logged) they go by the committer
        thread, as before."""
        address = self.audit_committer_address
        if address is None or not self.audit.hands_batches_over:
            return
        from infrastructure.audit_committer_connections import CommitterChannel

        try:
            self.audit.hand_loop_batches_to(await CommitterChannel.connect(address))
        except OSError as exc:
            logging.getLogger("keyledger.audit").error(
                "could not reach the audit committer process from the event loop (%s); records go by the committer "
                "thread", exc)

    def now(self) -> datetime:
        return self.clock.now()

    def flush_unauthenticated(self, force: bool = False) -> int:
        """Writes the summary records of the failed-authentication windows that ended (all, if ``force``)."""
        return self.unauthenticated.flush(self.audit.record, force)

    def close(self) -> None:
        try:  # graceful shutdown: the window under way gets its summary while the committer still runs
            self.flush_unauthenticated(force=True)
        except AuditUnavailable:
            pass  # the store is gone: nothing more can be recorded, and stopping must go on
        self.health.close()
        self.audit.stop()
        if self.audit_committer is not None:  # after the last batch was handed to it: it finishes that one
            self.audit_committer.stop()
        if self.services is not None and (self.serving or self.audit.appended):
            try:  # what this process recorded leaves covered by a checkpoint (docs/audit.md)
                self.services.checkpointer.checkpoint_if_behind()
            except Exception:  # the store is gone: `verify` will report the uncovered tail
                logging.getLogger("keyledger").exception("the shutdown checkpoint could not be signed")
        if self.store_tokens is not None:
            self.store_tokens.close_all()
        if self.xks_client is not None:
            self.xks_client.close()
        if self.root_key_provider is not None:
            self.root_key_provider.close()
        if self.leadership is not None:  # after the shutdown checkpoint: another node leads from here on
            self.leadership.release()
        self.ledger.close()
        # Closing the last SQLite connection checkpoints the WAL into the database and removes it.
        self.ledger.recorder.datastore.engine.dispose()  # type: ignore[attr-defined]
