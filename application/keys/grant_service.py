"""CreateGrant, ListGrants, ListRetirableGrants, RetireGrant and RevokeGrant.

Grants are events of the Key aggregate (domain/keys/grants.py); listing reads the ``key_grants`` projection,
written in the same transaction, so a new grant is listed at once. Grant tokens name (key id, grant id)
under a service HMAC key (domain/keys/grant_tokens.py); the authorizer checks every token a call carries.
Every method takes the Call; the service reads the caller from it to decide who may retire a grant (the grant
itself decides that), not who may create, list or revoke one (key policy, enforced by the authorizer).
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from application.authorization.authorizer import KeyFacts
from application.calls import Call
from application.keys.access import KeyAccess
from application.pagination import page
from application.ports import Clock
from domain.errors import (
    AccessDeniedError,
    DryRunOperationError,
    InvalidGrantTokenError,
    NotFoundError,
    ValidationError,
    shown,
)
from domain.identifiers import Scope, key_storage_id
from domain.keys import grant_tokens
from domain.keys.grants import check_grant_id, check_principal, grant_of, new_grant_id, principal_account
from domain.keys.key import Key
from domain.keys.states import KeyState, require_state
from domain.policy.evaluation import can_retire

DEFAULT_GRANT_PAGE, MAX_GRANT_PAGE = 50, 100  # ListGrants / ListRetirableGrants: "between 1 and 100", default 50
_DRY_RUN = "The request would have succeeded, but the DryRun option is set."
NO_SERVICE_PRINCIPALS = ("keyledger has no AWS service principals: no AWS service calls it, so a grant for one could "
                          "never be used. Name an IAM principal ARN instead.")


class GrantIndex(Protocol):
    """The key_grants projection (projections/grants_view.py): GrantListEntry dicts in grant id order."""

    def of_key(self, key_id: str, limit: int, after: str | None, grant_id: str | None = None,
               grantee_principal: str | None = None) -> list[dict[str, Any]]: ...

    def retirable_by(self, region: str, retiring_principal: str, limit: int,
                     after: str | None) -> list[dict[str, Any]]: ...


def _page_size(limit: int | None) -> int:
    return min(limit or DEFAULT_GRANT_PAGE, MAX_GRANT_PAGE)


def _note_grant(call: Call, grant_id: str) -> None:
    """CloudTrail names the grant a RetireGrant retired in additionalEventData (its request may be just a token,
    which is never recorded)."""
    call.additional_event_data = {"grantId": grant_id}


class GrantService:
    def __init__(self, access: KeyAccess, index: GrantIndex, clock: Clock, token_key: bytes) -> None:
        self._access = access
        self._index = index
        self._clock = clock
        self._token_key = token_key

    # -- tokens ----------------------------------------------------------------------------------

    def grant_for_token(self, token: str) -> tuple[str, str]:
        """(key id, grant id) a grant token names; InvalidGrantTokenException unless this service issued it.
        It says nothing about whether the grant is still in force: ask the key (``Key.active_grants``)."""
        return grant_tokens.decode(self._token_key, token)

    def _token(self, key_id: str, grant_id: str) -> str:
        return grant_tokens.encode(self._token_key, key_id, grant_id)

    # -- create ----------------------------------------------------------------------------------

    def create_grant(self, call: Call, key_ref: str, *, operations: Sequence[str], grantee_principal: str | None = None,
                     retiring_principal: str | None = None, constraints: Mapping[str, Any] | None = None,
                     name: str | None = None,
                     grantee_service_principal: str | None = None, retiring_service_principal: str | None = None,
                     dry_run: bool = False) -> dict[str, Any]:
        if grantee_service_principal is not None or retiring_service_principal is not None:
            raise ValidationError(f"GranteeServicePrincipal and RetiringServicePrincipal are not supported: "
                                  f"{NO_SERVICE_PRINCIPALS}")
        if grantee_principal is None:
            raise ValidationError("You must specify GranteePrincipal: the principal the grant gives permissions to.")
        if (constraints or {}).get("SourceArn") is not None:
            raise ValidationError(f"The SourceArn grant constraint is not supported: it names the AWS resource a "
                                  f"service principal acts for, and {NO_SERVICE_PRINCIPALS}")
        issuing_account = f"arn:{call.in_scope().partition}:iam::{call.required_caller().account_id}:root"
        fresh_id, chosen = new_grant_id(), []

        def decide(key: Key) -> None:
            grant_id = key.create_grant(
                grant_id=fresh_id, grantee_principal=grantee_principal, operations=operations,
                retiring_principal=retiring_principal, constraints=constraints, name=name,
                issuing_account=issuing_account, at=self._clock.now())
            if dry_run:  # every check has passed; the changed key is dropped, nothing is saved
                raise DryRunOperationError(_DRY_RUN)
            chosen[:] = [grant_id]

        key = self._access.change(call, key_ref, decide)
        # The token names the key by its storage id: related multi-Region keys share key_id, not grants.
        return {"GrantToken": self._token(key.storage_id, chosen[0]), "GrantId": chosen[0]}

    # -- list ------------------------------------------------------------------------------------

    def list_grants(self, call: Call, key_ref: str, limit: int | None = None, marker: str | None = None,
                    grant_id: str | None = None, grantee_principal: str | None = None,
                    grantee_service_principal: str | None = None) -> dict[str, Any]:
        row = self._access.resolve.row(call, key_ref)
        require_state("ListGrants", KeyState(row.key_state), row.arn)
        if grant_id is not None:
            check_grant_id(grant_id)
        if grantee_principal is not None:
            check_principal(grantee_principal, "GranteePrincipal")
        if grantee_service_principal is not None:
            raise ValidationError(f"The GranteeServicePrincipal filter is usable only by callers in a service "
                                  f"principal; {NO_SERVICE_PRINCIPALS}")
        return page(lambda n, after: self._index.of_key(row.storage_id, n, after, grant_id, grantee_principal),
                    _page_size(limit), marker, sort_key=lambda e: e["GrantId"], render=lambda e: e, member="Grants")

    def list_retirable_grants(self, call: Call, limit: int | None = None, marker: str | None = None,
                              retiring_principal: str | None = None,
                              retiring_service_principal: str | None = None) -> dict[str, Any]:
        """Grants of every key in the region (any account's) that name this retiring principal, which must
        belong to the caller's account (AWS authorizes the call against the caller's own account only)."""
        if retiring_service_principal is not None:
            raise ValidationError(f"The RetiringServicePrincipal filter is usable only by callers in a service "
                                  f"principal; {NO_SERVICE_PRINCIPALS}")
        if retiring_principal is None:
            raise ValidationError("You must specify RetiringPrincipal: the principal whose retirable grants to list.")
        check_principal(retiring_principal, "RetiringPrincipal")
        caller = call.required_caller()
        caller_arn, caller_account = caller.principal_arn, caller.account_id
        if principal_account(retiring_principal) != caller_account:
            raise AccessDeniedError(
                f"User: {caller_arn} is not authorized to perform: kms:ListRetirableGrants on resource: "
                f"{shown(retiring_principal)} because it is not a principal in account {caller_account}.")
        return page(lambda n, after: self._index.retirable_by(call.in_scope().region, retiring_principal, n, after),
                    _page_size(limit), marker, sort_key=lambda e: e["GrantId"], render=lambda e: e, member="Grants")

    # -- retire and revoke -----------------------------------------------------------------------

    def retire_grant(self, call: Call, grant_token: str | None = None, key_ref: str | None = None,
                     grant_id: str | None = None, dry_run: bool = False) -> None:
        """By GrantToken, or by KeyId and GrantId. The grant decides who may: its retiring principal, a grantee
        it gives RetireGrant, or the account that created it (``domain.policy.evaluation.can_retire``)."""
        caller = call.required_caller()
        caller_arn, caller_account = caller.principal_arn, caller.account_id
        if grant_token is not None:
            key_arn, key_id, token_grant_id = self._key_of_token(call.in_scope(), grant_token)
            if grant_id is not None and grant_id != token_grant_id:
                raise ValidationError("GrantId names a different grant than GrantToken; pass one or the other.")
            named_id, named_home = (self._access.resolve.locate(call, key_ref) if key_ref is not None
                                    else (None, call.in_scope()))
            if named_id is not None and key_storage_id(named_id, named_home.region) != key_id:
                raise ValidationError("KeyId names a different key than GrantToken; pass one or the other.")
            key_ref, grant_id = key_arn, token_grant_id  # by ARN: the key may be another account's
        elif key_ref is None or grant_id is None:
            raise ValidationError("Retire a grant by its GrantToken, or by KeyId and GrantId together.")
        else:
            check_grant_id(grant_id)
        retired = grant_id
        _note_grant(call, retired)

        def decide(key: Key) -> None:
            decision = can_retire(grant_of(key.grant(retired), key.arn), caller_arn, caller_account)
            authorizer = self._access.resolve.authorizer
            if decision.allowed:
                authorizer.mark_authorized(call, decision)
            else:
                try:  # AWS also lets a key policy (or an IAM policy it delegates to) allow kms:RetireGrant
                    authorizer.authorize_by_policy(call, KeyFacts.of_key(key), "RetireGrant", grants=False)
                except AccessDeniedError:
                    raise AccessDeniedError(
                        f"User: {caller_arn} is not authorized to perform: kms:RetireGrant on resource: {key.arn} "
                        "because it is not the grant's retiring principal, a grantee the grant allows to retire "
                        "it, or the account in which the grant was created, and no policy allows "
                        "kms:RetireGrant.") from None
            if dry_run:
                raise DryRunOperationError(_DRY_RUN)
            key.retire_grant(retired, self._clock.now())

        self._access.change(call, key_ref, decide)

    def _key_of_token(self, scope: Scope, token: str) -> tuple[str, str, str]:
        """(key ARN, key storage id, grant id) a token names. A token may name a grant on another account's key
        (RetireGrant is cross-account), not another region's."""
        key_id, grant_id = self.grant_for_token(token)
        key = self._access.load_any(key_id)
        if key is None or key.key_state is KeyState.DELETED:
            raise NotFoundError(f"The grant token names a grant on key {shown(key_id)}, which does not exist.")
        if key.region != scope.region:
            raise InvalidGrantTokenError(f"The grant token names a grant on a key in {key.region}; "
                                         f"send the request to {key.region}.")
        return key.arn, key_id, grant_id

    def revoke_grant(self, call: Call, key_ref: str, grant_id: str, dry_run: bool = False) -> None:
        check_grant_id(grant_id)

        def decide(key: Key) -> None:
            key.grant(grant_id)
            if dry_run:
                raise DryRunOperationError(_DRY_RUN)
            key.revoke_grant(grant_id, self._clock.now())

        self._access.change(call, key_ref, decide)
