"""The composition root: builds the storage, the root keyring and the services from Settings.

Nothing here runs at import time. A missing or wrong root key yields a sealed Runtime (``sealed_reason``
set, no services): health answers, every key operation refuses.
"""
from __future__ import annotations

import time
from typing import Callable

from application.audit.archive import AuditArchive
from application.audit.checkpoints import Checkpointer, audit_records
from application.audit.ledger_verify import verify_since
from application.audit.records import cloudtrail_record, new_ids
from application.audit.trail import AuditTrail
from application.audit.unauthenticated import UnauthenticatedFailures
from application.authorization.authorizer import Authorizer
from application.calls import Call
from application.clock_service import ClockService
from application.crypto.asymmetric_service import AsymmetricService
from application.crypto.symmetric_service import CryptoService
from application.health import HealthService
from application.history.last_usage import KeyLastUsage
from application.history.point_in_time import PointInTime
from application.history.replay import ProjectionReplay
from application.history.reports import Reports
from application.keys.access import KeyAccess
from application.keys.alias_service import AliasService
from application.keys.external_keys import ExternalStoreKeys
from application.keys.grant_service import GrantService
from application.keys.import_service import ImportService
from application.keys.key_service import KeyService, check_key_policy
from application.keys.maintenance import Maintenance
from application.keys.managed_keys import AwsManagedKeys
from application.keys.materials import KeyMaterials
from application.keys.multi_region_service import MultiRegionService
from application.keys.resolver import KeyResolver
from application.keys.rotation_service import RotationService
from application.keystores.external import ExternalKeyStores
from application.keystores.keys import StoreKeys
from application.keystores.service import CustomKeyStoreService
from application.principals.directory import PrincipalDirectory
from application.principals.service import PrincipalService
from application.quotas import RequestQuotas
from application.root_key.service import CurrentRootVersion, RootKeyService
from application.writer import LedgerWriter
from application.xks.credentials import XksCredentialService
from application.xks.proxy import XksProxyService
from domain.audit.segments import checkpoint_of
from domain.crypto.asymmetric import POST_QUANTUM_SUPPORTED
from domain.crypto.wrapping import RootKeyring
from domain.keys import grant_tokens
from domain.keystores.store import store_uuid
from domain.policy.evaluation import Grant
from domain.xks.credential import new_credential
from infrastructure.audit_archive_store import SqlArchiveStore
from infrastructure.audit_segments import SegmentDirectory
from infrastructure.checkpoint_file import CheckpointFile
from infrastructure.clock import DatabaseClock, SqlClockOffset
from infrastructure.cloudhsm import ClusterMap, Pkcs11StoreTokens, SqlStorePasswords, related_clusters
from infrastructure.credentials import CredentialStore, new_access_key
from infrastructure.health_probe import SqlStorageProbe
from infrastructure.ledger_upgrade import untagged_events, upgrade_ledger
from infrastructure.node_files import ensure_admin, ensure_data_dir, history_copy_url
from infrastructure.persistence import assert_storage_settings, build_ledger
from infrastructure.price_table import load_price_table
from infrastructure.root_keys import (
    RootKeyUnavailable,
    check_root_keyring,
    has_root_key_checks,
    new_check_value,
    root_key_provider,
)
from infrastructure.root_wrapped import SqlRootWrappedRows
from infrastructure.runtime import Runtime, Services
from infrastructure.service_secrets import ROW_KEY, has_service_secret, service_secret
from infrastructure.settings import Settings
from infrastructure.storage import SqlBackingKeyStore, SqlImportKeyStore, SqlUnitOfWork, writer_gate_for
from infrastructure.tables import access_keys, add_missing_columns
from infrastructure.tables import metadata as infrastructure_metadata
from infrastructure.xks_credentials import SqlXksCredentialStore
from infrastructure.xks_proxy_client import HttpXksProxyClient
from projections.audit_index import SqlAuditIndex
from projections.custom_key_store_view import SqlCustomKeyStoreView, keys_in_store, xks_key_in_use
from projections.grants_view import SqlGrantIndex
from projections.key_event_index import SqlKeyEventIndex
from projections.key_state_view import SqlKeyStateView
from projections.key_usage import SqlKeyUsageIndex
from projections.key_usage import metadata as key_usage_metadata
from projections.principal_tables import metadata as principal_metadata
from projections.principal_view import SqlPrincipalView
from projections.replay import SqlProjectionRebuilder
from projections.schema import create_missing, ensure_current

UNSUPPORTED_SPECS = {
    spec: f"{spec} needs post-quantum support that the installed 'cryptography' library does not have."
    for spec, supported in POST_QUANTUM_SUPPORTED.items() if not supported
}


def audit_public_key(signing_key: bytes) -> bytes:
    """Raw 32-byte Ed25519 public key of the checkpoint signing key (a key separate from the root key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(signing_key).public_key().public_bytes_raw()


def build_runtime(settings: Settings) -> Runtime:
    ensure_data_dir(settings.data_dir)
    ledger = build_ledger(settings)
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    engine = datastore.engine
    infrastructure_metadata.create_all(engine)
    add_missing_columns(engine, access_keys)
    principal_metadata.create_all(engine)
    create_missing(engine)  # out-of-date read models are rebuilt once the row key can tag their rows
    key_usage_metadata.create_all(engine)
    assert_storage_settings(engine)
    uow = SqlUnitOfWork(datastore, ledger.recorder.events_record_cls.__table__,  # type: ignore[attr-defined]
                        gate=writer_gate_for(datastore.engine))
    clock = DatabaseClock(uow)
    audit_index = SqlAuditIndex(uow)
    audit_index.backfill(ledger)  # records from before the index (once); later ones are indexed as written
    audit_index.refresh_statistics()
    audit = AuditTrail(ledger, uow, clock, window_seconds=settings.audit_group_commit_window,
                       max_batch=settings.audit_group_commit_max, index=audit_index)
    quotas = RequestQuotas(settings.quota_cryptographic_per_second, settings.quota_management_per_second,
                           settings.quota_account_overrides)
    unauthenticated = UnauthenticatedFailures(
        window_seconds=settings.audit_unauthenticated_window_seconds, per_source=settings.audit_unauthenticated_per_source,
        total=settings.audit_unauthenticated_total, per_second=settings.quota_unauthenticated_per_second, now=clock.now)
    probe = SqlStorageProbe(engine, settings.health_probe_timeout)
    history = PointInTime(ledger, SqlKeyEventIndex(uow), clock)
    runtime = Runtime(
        settings=settings, ledger=ledger, uow=uow, clock=clock, audit=audit, quotas=quotas, unauthenticated=unauthenticated,
        audit_index=audit_index,
        archive_store=SqlArchiveStore(uow, ledger.recorder.events_record_cls.__table__),  # type: ignore[attr-defined]
        health=HealthService(lambda: runtime.sealed_reason, probe, audit.stats,
                             probe_timeout=settings.health_probe_timeout, cache_seconds=settings.health_cache_seconds,
                             on_close=probe.close),
        history=history,
        reports=Reports(ledger, SqlKeyEventIndex(uow), clock, history,
                        directory=lambda: runtime.services.principals if runtime.services else None,
                        prices=lambda: load_price_table(settings.price_table)),
        replay=ProjectionReplay(SqlProjectionRebuilder(ledger), history,
                                location_for=lambda moment: history_copy_url(settings, moment)),
        clock_service=ClockService(SqlClockOffset(uow), clock.refresh),
    )
    current_version = runtime.root_version = CurrentRootVersion(ledger, settings.key_cache_seconds, time.monotonic)
    try:
        provider = runtime.root_key_provider = root_key_provider(settings)
        with uow.transaction() as tx:
            versions, current = provider.load(first_start=not has_root_key_checks(tx))
            keyring = RootKeyring(versions, current, locate=provider.locate, current_version=current_version)
            current_version.keyring = keyring
            current_version()  # the rotation state: which version wraps, which are retired
            check_root_keyring(tx, keyring, retired=frozenset(current_version.retired))
    except RootKeyUnavailable as exc:
        runtime.sealed_reason = str(exc)
        return runtime

    # Every event and read-model row is tagged under the row key (docs/audit.md, "One ledger"). A ledger
    # from before tags gets them once, covered by one upgrade record; then out-of-date read models are
    # rebuilt from the (now checked) events.
    first_row_key = not has_service_secret(uow, ROW_KEY)
    ledger.authenticate_with(service_secret(uow, keyring, ROW_KEY))
    seal = ledger.row_seal
    assert seal is not None
    if first_row_key and untagged_events(ledger, uow):
        upgrade_ledger(ledger, uow, audit, clock, _first_region(settings))
    ensure_current(ledger, engine)
    view = SqlKeyStateView(datastore, settings.key_cache_seconds, seal, head_version=uow.last_version,
                           head_versions=uow.last_versions)
    materials = KeyMaterials(SqlBackingKeyStore(uow, engine), keyring)
    grant_token_key = service_secret(uow, keyring, "grant-token-key")
    access: KeyAccess | None = None

    def fresh_grants(key_id: str) -> list[Grant]:
        key = access.load_any(key_id) if access is not None else None
        return key.active_grants() if key is not None else []

    principal_view = SqlPrincipalView(uow, seal)
    principals = PrincipalDirectory(ledger, principal_view, settings.key_cache_seconds)
    authorizer = Authorizer(identity_policies=principals.identity_policies, aliases_of=view.aliases_of,
                            grant_token=lambda t: grant_tokens.decode(grant_token_key, t), fresh_grants=fresh_grants)
    resolver = KeyResolver(view, authorizer)
    access = KeyAccess(LedgerWriter(ledger, uow, view, audit), resolver)
    import_keys = SqlImportKeyStore(uow)
    asymmetric = AsymmetricService(resolver, materials)
    credentials = CredentialStore(uow, keyring, seal, settings.key_cache_seconds)
    credentials.seal_untagged()
    signing_key = service_secret(uow, keyring, "audit-signing-key")
    # Custom key stores: the stores' view, their root-wrapped passwords, and their tokens (docs/custom-key-stores.md).
    key_store_view = SqlCustomKeyStoreView(datastore, settings.key_cache_seconds, seal, head_version=uow.last_version,
                                           head_versions=uow.last_versions)
    cluster_map = ClusterMap(settings.cloudhsm_clusters)
    store_tokens = runtime.store_tokens = Pkcs11StoreTokens(cluster_map)
    store_passwords = SqlStorePasswords(uow)
    xks_client = runtime.xks_client = HttpXksProxyClient(
        settings.xks_proxy_timeout, settings.xks_proxy_port, settings.xks_proxy_ca_bundle,
        user_agent=f"keyledger/{_package_version() or 'unknown'}")
    external = ExternalKeyStores(key_store_view, store_passwords, xks_client, materials.unseal, settings.key_cache_seconds)
    key_stores = CustomKeyStoreService(
        ledger, access.writer, key_store_view, store_passwords, store_tokens, clock,
        seal=materials.seal, unseal=materials.unseal, related_clusters=lambda c: related_clusters(cluster_map, c),
        keys_in_store=keys_in_store, authorize=authorizer.authorize_call, external=external)
    store_keys = StoreKeys(key_store_view, store_tokens, key_stores.open_token,
                           load_store=lambda store_id: ledger.repository.get(store_uuid(store_id)))
    resolver.overlay = store_keys.overlay
    maintenance = Maintenance(access, view, materials, import_keys, uow, clock)
    maintenance.store_keys = store_keys
    multi_region = MultiRegionService(access, materials, clock, settings.regions)
    maintenance.related = multi_region.related
    runtime.services = Services(
        keys=KeyService(access, view, materials, clock, UNSUPPORTED_SPECS, store_keys, ExternalStoreKeys(
            access, materials, clock, store_keys, external, xks_key_in_use, check_key_policy)),
        aliases=AliasService(access, view, clock),
        crypto=CryptoService(resolver, materials, asymmetric, store_keys, external),
        asymmetric=asymmetric,
        rotation=RotationService(access, materials, clock, multi_region.related),
        imports=ImportService(access, materials, import_keys, clock,
                              token_key=service_secret(uow, keyring, "import-token-key"), related=multi_region.related),
        maintenance=maintenance,
        credentials=credentials,
        authorizer=authorizer,
        resolver=resolver,
        checkpointer=Checkpointer(ledger, clock, signing_key,
                                  CheckpointFile(settings.checkpoint_file) if settings.checkpoint_file else None,
                                  settings.audit_checkpoint_records, settings.audit_checkpoint_seconds,
                                  settings.audit_checkpoint_heartbeat_seconds),
        audit_public_key=audit_public_key(signing_key),
        history=history,
        grants=GrantService(access, SqlGrantIndex(uow, seal), clock, token_key=grant_token_key),
        principals=principals,
        principal_admin=PrincipalService(access.writer, audit, clock, principal_view, credentials, principals,
                                         new_access_key, authorizer),
        root_key=RootKeyService(ledger, access.writer, clock, keyring, provider, SqlRootWrappedRows(uow), new_check_value,
                                account_id=settings.account_id,
                                region="us-east-1" if "us-east-1" in settings.regions else settings.regions[0],
                                settle_seconds=settings.key_cache_seconds),
        console_session_key=service_secret(uow, keyring, "console-session-key"),
        key_stores=key_stores,
        store_keys=store_keys,
        key_store_view=key_store_view,
        multi_region=multi_region,
    )
    resolver.managed = AwsManagedKeys(access, materials, clock).ensure
    runtime.services.archive = AuditArchive(
        ledger, access.writer, runtime.archive_store, SegmentDirectory(), signing_key, audit_public_key(signing_key),
        clock.now, region=_first_region(settings), account_id=settings.account_id)
    runtime.services.last_usage = KeyLastUsage(lambda position: audit_records(ledger, after_seq=position),
                                               SqlKeyUsageIndex(uow), resolver)
    services = runtime.services
    services.xks_credentials = SqlXksCredentialStore(uow, keyring, seal, settings.key_cache_seconds)
    services.xks_proxy = XksProxyService(resolver, materials, _package_version())
    services.xks_credential_admin = XksCredentialService(
        access.writer, audit, clock, services.xks_credentials, principals, authorizer, new_credential,
        _first_region(settings))
    admin_key = ensure_admin(settings, credentials, runtime.services.principal_admin, _first_region(settings))
    runtime.admin_created, runtime.admin_note = admin_key.created, admin_key.note
    return runtime


def start_serving(runtime: Runtime) -> None:
    """Before a server answers anything: prove what was stored since the newest signed checkpoint, then sign
    one over it. A tail that does not verify seals the service with the reason, unless the operator accepts
    it (KEYLEDGER_ACCEPT_UNVERIFIED_LEDGER, recorded as a call of its own; docs/audit.md)."""
    services = runtime.services
    if services is None:
        return
    archived = runtime.archive_store.archived()
    result = verify_since(runtime.ledger, services.checkpointer.newest(), services.audit_public_key,
                          runtime.uow.position_of,
                          (checkpoint_of(archived[-1]), archived[-1]["last_position"]) if archived else None)
    if not result.ok:
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        reason = f"the ledger since its newest checkpoint does not verify{where}: {result.problem}"
        accepted = runtime.settings.accept_unverified_ledger
        if not accepted:
            runtime.sealed_reason = (f"{reason}. Run 'keyledger audit verify'; to serve anyway, set "
                                     "KEYLEDGER_ACCEPT_UNVERIFIED_LEDGER to your reason (it is recorded).")
            runtime.services = None
            return
        request_id, event_id = new_ids(2)
        call = Call.service("AcceptUnverifiedLedger", at=runtime.now(), request_id=request_id, event_id=event_id)
        call.region = _first_region(runtime.settings)
        call.request_parameters = {"reason": accepted, "problem": reason}
        services.authorizer.authorize_call(call)
        runtime.audit.record(cloudtrail_record(call))
    services.checkpointer.sync_file()  # a crash between saving a checkpoint and appending it, repaired
    if services.checkpointer.file_problem is not None:  # another installation's file: not this node's to write
        runtime.sealed_reason = (f"the checkpoint file {runtime.settings.checkpoint_file}: "
                                 f"{services.checkpointer.file_problem}. Give this node its own data directory or "
                                 "KEYLEDGER_AUDIT_CHECKPOINT_FILE.")
        runtime.services = None
        return
    runtime.serving = True
    services.checkpointer.checkpoint_if_behind()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keyledger")
    except PackageNotFoundError:
        return ""


def _first_region(settings: Settings) -> str:
    return "us-east-1" if "us-east-1" in settings.regions else settings.regions[0]


def open_clock_service(settings: Settings) -> tuple[ClockService, Callable[[], None]]:
    """The service clock alone, and how to close it: moving the clock needs the database, not the root key
    (nor a first start's root key and administrator key, which ``build_runtime`` would make)."""
    ensure_data_dir(settings.data_dir)
    ledger = build_ledger(settings)
    try:
        infrastructure_metadata.create_all(ledger.recorder.datastore.engine)  # type: ignore[attr-defined]
        uow = SqlUnitOfWork(ledger.recorder.datastore)  # type: ignore[attr-defined]
    except BaseException:
        ledger.close()
        raise
    return ClockService(SqlClockOffset(uow), DatabaseClock(uow).refresh), ledger.close
