"""The operator's principal and access-key commands (``keyledger principals|access-keys ...``).

Each change commits the Principal aggregate's events, the read-model rows, the access-key rows and the
call's audit record in one transaction through the one write path (LedgerWriter); a change that finds
nothing to do, and a refused one, still gets its audit record. Secrets are generated here, handed to the
root-wrapping store and returned once; they are never in an event, a record or a message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar

from eventsourcing.application import AggregateNotFoundError

from application.audit.records import cloudtrail_record, iso, new_ids
from application.audit.trail import AuditTrail
from application.authorization.authorizer import Authorizer
from application.calls import Call
from application.ports import Clock
from application.principals.audit import Operator, operator_call
from application.principals.directory import PrincipalDirectory
from application.principals.ports import AccessKeyRow, AccessKeyStore, PrincipalReadModel, PrincipalRow
from application.writer import LedgerWriter, Outcome
from domain.errors import IamValidationError, KmsError, NoSuchEntityError, shown
from domain.identifiers import Scope
from domain.principals.arns import ROLE, ROOT, SESSION, PrincipalName, acting_arn, parse_principal_arn
from domain.principals.principal import ACTIVE, Principal

T = TypeVar("T")
_EVENT_NAMES = {  # (operation, kind) -> IAM's event name
    ("create", "user"): "CreateUser", ("create", ROLE): "CreateRole",
    ("delete", "user"): "DeleteUser", ("delete", ROLE): "DeleteRole",
    ("put-policy", "user"): "PutUserPolicy", ("put-policy", ROLE): "PutRolePolicy",
    ("delete-policy", "user"): "DeleteUserPolicy", ("delete-policy", ROLE): "DeleteRolePolicy",
}


@dataclass(frozen=True)
class NewAccessKey:
    access_key_id: str
    secret: str = field(repr=False)
    principal_arn: str  # the owner
    acts_as: str  # what a caller using the key is: the owner, or for a role a session of it
    account_id: str
    status: str
    created: datetime


def _kind_hint(arn: str) -> str:
    """The kind an ARN claims, for naming the audit event of a call whose ARN does not even parse."""
    return ROLE if ":role/" in arn else "user"


def _parameters(name: PrincipalName | None, arn: str, **more: Any) -> dict[str, Any]:
    """Request parameters as IAM spells them: userName or roleName; nothing for an account root."""
    if name is None:
        base: dict[str, Any] = {"principalArn": arn}
    elif name.kind == ROOT:
        base = {}
    else:
        base = {"roleName" if name.owner_kind == ROLE else "userName": name.name}
    return {**base, **more}


def _parsed(arn: str) -> PrincipalName | None:
    try:
        return parse_principal_arn(arn)
    except IamValidationError:
        return None


def row_of(principal: Principal) -> PrincipalRow:
    return PrincipalRow(principal_id=str(principal.id), arn=principal.arn, account_id=principal.account_id,
                        kind=principal.kind, name=principal.name, path=principal.path, unique_id=principal.unique_id,
                        created=principal.creation_date, policies=dict(principal.policies),
                        access_keys=dict(principal.access_keys))


class PrincipalService:
    def __init__(self, writer: LedgerWriter, audit: AuditTrail, clock: Clock, view: PrincipalReadModel,
                 access_keys: AccessKeyStore, directory: PrincipalDirectory,
                 new_access_key: Callable[[], tuple[str, str]], authorizer: Authorizer) -> None:
        self._writer = writer
        self._authorizer = authorizer
        self._audit = audit
        self._clock = clock
        self._view = view
        self._access_keys = access_keys
        self._directory = directory
        self._new_access_key = new_access_key

    # -- principals ------------------------------------------------------------------------------

    def create_principal(self, arn: str, operator: Operator) -> PrincipalRow:
        """CreateUser / CreateRole. Account roots exist already; a deleted name can be used again."""
        name = _parsed(arn)
        parameters = _parameters(name, arn, **({"path": name.path} if name else {}))

        def attempt(call: Call) -> Outcome[PrincipalRow]:
            checked = self._managed(arn, "created")
            principal = self._load(checked)
            now = self._clock.now()
            if principal is None:
                principal = Principal.create(checked, now)
            else:
                principal.recreate(checked, now)
            row = row_of(principal)
            call.response_elements = {checked.kind: {
                f"{checked.kind}Name": row.name, "path": row.path, f"{checked.kind}Id": row.unique_id,
                "arn": row.arn, "createDate": iso(row.created)}}
            return self._outcome(principal, row)

        return self._audited(_EVENT_NAMES["create", _kind_hint(arn)], operator, name, parameters, attempt)

    def delete_principal(self, arn: str, operator: Operator, *, force: bool = False) -> dict[str, Any]:
        """DeleteUser / DeleteRole. Refused while access keys or policies remain unless ``force``, which
        deletes them in the same change (and names them in the record's additionalEventData)."""
        name = _parsed(arn)
        parameters = _parameters(name, arn, **({"force": True} if force else {}))

        def attempt(call: Call) -> Outcome[dict[str, Any]]:
            principal = self._live(self._managed(arn, "deleted"))
            removed = principal.delete(self._clock.now(), force=force)
            if force:
                call.additional_event_data = removed
            return self._outcome(principal, removed, touched_keys=removed["deletedAccessKeyIds"])

        return self._audited(_EVENT_NAMES["delete", _kind_hint(arn)], operator, name, parameters, attempt)

    # -- identity policies ------------------------------------------------------------------------

    def put_policy(self, arn: str, policy_name: str, document: str, operator: Operator) -> bool:
        """PutUserPolicy / PutRolePolicy: attach, or replace the policy of that name. False: already attached."""
        name = _parsed(arn)
        parameters = _parameters(name, arn, policyName=policy_name, policyDocument=document)

        def attempt(call: Call) -> Outcome[bool]:
            principal = self._live(self._managed(arn, "given policies"))
            return self._outcome(principal, principal.put_policy(policy_name, document, self._clock.now()))

        return self._audited(_EVENT_NAMES["put-policy", _kind_hint(arn)], operator, name, parameters, attempt)

    def delete_policy(self, arn: str, policy_name: str, operator: Operator) -> None:
        name = _parsed(arn)
        parameters = _parameters(name, arn, policyName=policy_name)

        def attempt(call: Call) -> Outcome[None]:
            principal = self._live(self._managed(arn, "given policies"))
            principal.delete_policy(policy_name, self._clock.now())
            return self._outcome(principal, None)

        self._audited(_EVENT_NAMES["delete-policy", _kind_hint(arn)], operator, name, parameters, attempt)

    # -- access keys -----------------------------------------------------------------------------

    def create_access_key(self, arn: str, operator: Operator) -> NewAccessKey:
        """CreateAccessKey for a user, a role or an account root (which needs no ``create``)."""
        name = _parsed(arn)
        access_key_id, secret = self._new_access_key()

        def attempt(call: Call) -> Outcome[NewAccessKey]:
            owner = self._owner(arn)
            principal = self._load(owner)
            now = self._clock.now()
            if principal is None and owner.kind == ROOT:
                principal = Principal.create(owner, now)
            principal = self._live(owner, principal)
            principal.add_access_key(access_key_id, now)
            new = NewAccessKey(access_key_id, secret, principal.arn, acting_arn(principal.arn, access_key_id),
                               principal.account_id, ACTIVE, now)
            call.response_elements = {"accessKey": {
                **_parameters(owner, arn), "accessKeyId": access_key_id, "status": ACTIVE, "createDate": iso(now)}}
            store = self._access_keys
            return self._outcome(principal, new, also=[
                lambda tx: store.put(tx, access_key_id, secret, principal.arn, principal.account_id, now)])

        return self._audited("CreateAccessKey", operator, name, _parameters(name, arn), attempt)

    def set_access_key_status(self, access_key_id: str, status: str, operator: Operator) -> AccessKeyRow:
        """UpdateAccessKey: Active or Inactive. An inactive key is refused like an unknown one."""
        row = self._access_keys.get(access_key_id)
        name = _parsed(row.principal_arn) if row else None
        parameters = {**(_parameters(name, "") if name else {}), "accessKeyId": access_key_id, "status": status}

        def attempt(call: Call) -> Outcome[AccessKeyRow]:
            principal, current = self._key_owner(access_key_id)
            principal.set_access_key_status(access_key_id, status, self._clock.now())
            store = self._access_keys
            return self._outcome(principal, AccessKeyRow(access_key_id, current.principal_arn, current.account_id,
                                                         status, current.created),
                                 also=[lambda tx: store.set_status(tx, access_key_id, status)],
                                 touched_keys=[access_key_id])

        return self._audited("UpdateAccessKey", operator, name, parameters, attempt,
                             account_id=row.account_id if row else None)

    def delete_access_key(self, access_key_id: str, operator: Operator) -> AccessKeyRow:
        row = self._access_keys.get(access_key_id)
        name = _parsed(row.principal_arn) if row else None
        parameters = {**(_parameters(name, "") if name else {}), "accessKeyId": access_key_id}

        def attempt(call: Call) -> Outcome[AccessKeyRow]:
            principal, current = self._key_owner(access_key_id)
            principal.delete_access_key(access_key_id, self._clock.now())
            return self._outcome(principal, current, touched_keys=[access_key_id])

        return self._audited("DeleteAccessKey", operator, name, parameters, attempt,
                             account_id=row.account_id if row else None)

    def bootstrap_access_key(self, root_arn: str, access_key_id: str, secret: str, region: str) -> bool:
        """The administrator key of a first start: an event of the account root like any other key, made by
        the service itself and recorded as its call (every event is named by a record). False if it exists."""
        owner = parse_principal_arn(root_arn)
        request_id, event_id = new_ids(2)
        call = Call.service("CreateAccessKey", at=self._clock.now(), request_id=request_id, event_id=event_id,
                            scope=Scope(owner.account_id, region, owner.partition))
        call.request_parameters = {"userName": "root", "reason": "the administrator access key of a first start"}
        self._authorizer.authorize_call(call)  # allowed by rule, and recorded so

        def attempt() -> Outcome[bool]:
            now = self._clock.now()
            principal = self._load(owner) or Principal.create(owner, now)
            if access_key_id in principal.access_keys:
                return Outcome([], False)
            principal.add_access_key(access_key_id, now, quota=False)
            store = self._access_keys
            return self._outcome(principal, True, also=[
                lambda tx: store.put(tx, access_key_id, secret, principal.arn, principal.account_id, now)])

        return self._writer.retrying(call, attempt)

    def has_history(self, arn: str) -> bool:
        """Whether this principal was ever recorded (an account root is, from its first access key on)."""
        return self._load(parse_principal_arn(arn)) is not None

    # -- reading ---------------------------------------------------------------------------------

    def list_principals(self, account_id: str | None = None) -> list[PrincipalRow]:
        return self._directory.rows(account_id)

    def describe(self, arn: str) -> tuple[PrincipalRow, list[AccessKeyRow]]:
        """The principal now with its access keys; an account root that never had a key is shown empty."""
        name = parse_principal_arn(arn)
        if name.kind == SESSION:
            raise IamValidationError(f"'{shown(arn)}' is a role session; name the role.")
        row = self._directory.get(arn)
        if row is None and name.kind == ROOT:
            principal = self._load(name)
            row = row_of(principal) if principal is not None else PrincipalRow(
                str(name.aggregate_id), arn, name.account_id, ROOT, "", "/", name.account_id, None)
        if row is None:
            raise NoSuchEntityError(f"The {name.kind} with name {name.name} cannot be found.")
        return row, self._access_keys.rows(principal_arn=row.arn)

    def list_access_keys(self, principal_arn: str | None = None, account_id: str | None = None) -> list[AccessKeyRow]:
        if principal_arn is not None:
            return self.describe(principal_arn)[1]
        return self._access_keys.rows(account_id=account_id)

    # -- helpers ---------------------------------------------------------------------------------

    def _audited(self, event_name: str, operator: Operator, name: PrincipalName | None, parameters: dict[str, Any],
                 attempt: Callable[[Call], Outcome[T]], account_id: str | None = None) -> T:
        call = operator_call(event_name=event_name, at=self._clock.now(), operator=operator,
                             account_id=account_id or (name.account_id if name else None),
                             request_parameters=parameters)
        try:
            self._authorizer.authorize_call(call)  # an operator call: allowed by rule, and recorded so
            result = self._writer.retrying(call, lambda: attempt(call))
        except KmsError as error:
            call.fail(error.code, error.message)
            if not call.committed:
                self._audit.record(cloudtrail_record(call))
            raise
        if not call.committed:  # nothing changed (e.g. the same policy again): still a call, still recorded
            self._audit.record(cloudtrail_record(call))
        return result

    def _outcome(self, principal: Principal, result: T, *, also: Sequence[Callable[[Any], None]] = (),
                 touched_keys: Sequence[str] = ()) -> Outcome[T]:
        """The change's rows (``also``, deleted keys' secrets, the read model) go into its transaction; once
        it commits, this process forgets what it cached about the principal and the keys it touched."""
        view, directory, store = self._view, self._directory, self._access_keys
        removed = [k for k in touched_keys if k not in principal.access_keys]
        writes = [*also, *[lambda tx, k=k: store.delete(tx, k) for k in removed],
                  lambda tx: view.project(tx, principal)]
        after = [lambda: directory.forget(principal.id), *[lambda k=k: store.forget(k) for k in touched_keys]]
        return Outcome([principal], result, also=writes, after=after)

    def _load(self, name: PrincipalName) -> Principal | None:
        try:
            principal = self._writer.ledger.repository.get(name.aggregate_id)
        except AggregateNotFoundError:
            return None
        return principal if isinstance(principal, Principal) else None

    def _live(self, name: PrincipalName, principal: Principal | None = None) -> Principal:
        principal = principal or self._load(name)
        if principal is None:
            raise NoSuchEntityError(f"The {name.kind} with name {name.name} cannot be found.")
        principal.require_live(name.arn)
        return principal

    @staticmethod
    def _managed(arn: str, what: str) -> PrincipalName:
        name = parse_principal_arn(arn)
        if name.kind == ROOT:
            raise IamValidationError(f"An account root cannot be {what}: it exists for every account, "
                                     f"always, and may do everything its account's key policies allow.")
        if name.kind == SESSION:
            raise IamValidationError(f"'{shown(arn)}' is a role session, not a principal that can be {what}; "
                                     f"name the role (arn:{name.partition}:iam::{name.account_id}:role/{name.name}).")
        return name

    @staticmethod
    def _owner(arn: str) -> PrincipalName:
        name = parse_principal_arn(arn)
        if name.kind == SESSION:
            raise IamValidationError(f"'{shown(arn)}' is a role session; create the access key for the role "
                                     f"(arn:{name.partition}:iam::{name.account_id}:role/{name.name}).")
        return name

    def _key_owner(self, access_key_id: str) -> tuple[Principal, AccessKeyRow]:
        row = self._access_keys.get(access_key_id)
        if row is None:
            raise NoSuchEntityError(f"The Access Key with id {shown(access_key_id)} cannot be found.")
        principal = self._load(parse_principal_arn(row.principal_arn))
        if principal is None or access_key_id not in principal.access_keys:
            raise NoSuchEntityError(f"The Access Key with id {shown(access_key_id)} is not recorded for "
                                    f"{row.principal_arn}; it cannot be changed here.")
        return principal, row


__all__ = ["PrincipalService", "NewAccessKey", "Operator", "row_of"]
