"""The operator's XKS proxy credential commands (``keyledger xks credentials create|rotate|list|delete``).

Each change commits the XksCredential aggregate's events, the credential's row (its secret root-wrapped) and
the call's audit record in one transaction through the one write path; a refused change still gets its record.
A new secret is generated here, handed to the root-wrapping store and returned once; it is never in an event,
a record or a message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from eventsourcing.application import AggregateNotFoundError

from application.audit.records import cloudtrail_record, iso, new_ids
from application.audit.trail import AuditTrail
from application.authorization.authorizer import Authorizer
from application.calls import Call, Operator
from application.ports import Clock
from application.principals.directory import PrincipalDirectory
from application.writer import LedgerWriter, Outcome
from application.xks.ports import XKS_SOURCE, XksCredentialRow, XksCredentialStore
from domain.errors import KmsError, NotFoundError, ValidationError, shown
from domain.principals.arns import ROOT, SESSION, parse_principal_arn
from domain.xks.credential import XksCredential, credential_uuid

T = TypeVar("T")


@dataclass(frozen=True)
class NewXksCredential:
    row: XksCredentialRow
    secret: str = field(repr=False)


class XksCredentialService:
    def __init__(self, writer: LedgerWriter, audit: AuditTrail, clock: Clock, store: XksCredentialStore,
                 directory: PrincipalDirectory, authorizer: Authorizer, new_credential: Callable[[], tuple[str, str]],
                 region: str) -> None:
        self._writer = writer
        self._audit = audit
        self._clock = clock
        self._store = store
        self._directory = directory
        self._authorizer = authorizer
        self._new_credential = new_credential
        self._region = region  # operator calls are recorded in the deployment's first region

    def create(self, principal_arn: str, operator: Operator) -> NewXksCredential:
        """A credential acting as ``principal_arn`` (an account root, user or role of the account)."""
        name = parse_principal_arn(principal_arn)
        if name.kind == SESSION:
            raise ValidationError(f"'{shown(principal_arn)}' is a role session; name the role.")
        if name.kind != ROOT and self._directory.get(principal_arn) is None:
            raise NotFoundError(f"The principal {shown(principal_arn)} does not exist; create it first "
                                "(keyledger principals create).")
        return self._make("CreateXksProxyCredential", operator, name.account_id, principal_arn, None)

    def rotate(self, access_key_id: str, operator: Operator) -> NewXksCredential:
        """A successor for the same account and principal; the old credential keeps working until deleted."""
        old = self._row(access_key_id)
        return self._make("RotateXksProxyCredential", operator, old.account_id if old else None,
                          old.principal_arn if old else "", access_key_id)

    def delete(self, access_key_id: str, operator: Operator) -> XksCredentialRow:
        old = self._row(access_key_id)

        def attempt(call: Call) -> Outcome[XksCredentialRow]:
            credential = self._load(access_key_id)
            credential.delete(self._clock.now())
            row = self._require_row(access_key_id)
            store = self._store
            return Outcome([credential], row, also=[lambda tx: store.delete(tx, access_key_id)],
                           after=[lambda: store.forget(access_key_id)])

        return self._audited("DeleteXksProxyCredential", operator, old.account_id if old else None,
                             {"accessKeyId": access_key_id}, attempt)

    def rows(self, account_id: str | None = None) -> list[XksCredentialRow]:
        return self._store.rows(account_id)

    # -- helpers ---------------------------------------------------------------------------------

    def _make(self, event_name: str, operator: Operator, account_id: str | None, principal_arn: str,
              replaces: str | None) -> NewXksCredential:
        access_key_id, secret = self._new_credential()
        parameters: dict[str, Any] = {"principalArn": principal_arn, **({"replaces": replaces} if replaces else {})}

        def attempt(call: Call) -> Outcome[NewXksCredential]:
            now = self._clock.now()
            changed = []
            if replaces is not None:
                old = self._load(replaces)
                old.rotate(access_key_id, now)
                changed.append(old)
            credential = XksCredential.create(access_key_id=access_key_id, account_id=account_id or "",
                                              principal_arn=principal_arn, at=now, replaces=replaces)
            row = XksCredentialRow(access_key_id, account_id or "", principal_arn, now, replaces)
            call.response_elements = {"accessKeyId": access_key_id, "createDate": iso(now)}  # never the secret
            store = self._store
            also = [lambda tx: store.put(tx, row, secret)]
            if replaces is not None:
                also.append(lambda tx: store.mark_replaced(tx, replaces, access_key_id))
            return Outcome([*changed, credential], NewXksCredential(row, secret), also=also)

        return self._audited(event_name, operator, account_id, parameters, attempt)

    def _row(self, access_key_id: str) -> XksCredentialRow | None:
        return next((r for r in self._store.rows() if r.access_key_id == access_key_id), None)

    def _require_row(self, access_key_id: str) -> XksCredentialRow:
        row = self._row(access_key_id)
        if row is None:
            raise NotFoundError(f"XKS proxy credential {shown(access_key_id)} does not exist.")
        return row

    def _load(self, access_key_id: str) -> XksCredential:
        try:
            credential = self._writer.ledger.repository.get(credential_uuid(access_key_id))
        except AggregateNotFoundError:
            credential = None
        if not isinstance(credential, XksCredential):
            raise NotFoundError(f"XKS proxy credential {shown(access_key_id)} does not exist.")
        credential.require_live()
        return credential

    def _audited(self, event_name: str, operator: Operator, account_id: str | None, parameters: dict[str, Any],
                 attempt: Callable[[Call], Outcome[T]]) -> T:
        request_id, event_id = new_ids(2)
        call = Call.operator_call(event_name, operator=operator, at=self._clock.now(), request_id=request_id,
                                  event_id=event_id, source=XKS_SOURCE, region=self._region, account_id=account_id,
                                  request_parameters=parameters)
        try:
            self._authorizer.authorize_call(call)  # an operator call: allowed by rule, and recorded so
            result = self._writer.retrying(call, lambda: attempt(call))
        except KmsError as error:
            call.fail(error.code, error.message)
            if not call.committed:
                self._audit.record(cloudtrail_record(call))
            raise
        return result
