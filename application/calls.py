"""The call being served, as one typed value: made once where the call enters and passed explicitly to every
service it reaches, down to the resolver, the authorizer and the audit trail.

Three kinds enter:
* an API call (``Call.api``): an HTTP request, KMS or ``/v1``. It starts unauthenticated (``caller`` None);
  the pipeline authenticates it before any service sees it, and no service accepts it without a caller.
* an operator call (``Call.operator``): a local command run with direct database access (``keyledger
  principals|access-keys``). Not an AWS identity; allowed by rule, and its record says so.
* a service call (``Call.service``): what the service does by itself (rotation, deletion, expiry), recorded
  as CloudTrail's AwsServiceEvent. Allowed by rule too.

Besides what the caller asked, a Call gathers what its audit record will say (resources, additionalEventData,
response elements, the error, whether a check authorized it and whether its record already committed);
``application.audit.records.cloudtrail_record`` turns it into the CloudTrail-shaped record at the end.
Parameters are never persisted: they may hold plaintext.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, NamedTuple

from domain.errors import InternalError
from domain.identifiers import Scope

KMS_SOURCE = "kms.amazonaws.com"


class CallKind(enum.Enum):
    API = "api"
    OPERATOR = "operator"
    SERVICE = "service"


# CloudTrail's userIdentity types for the callers an access key can stand for.
ROOT, IAM_USER, ASSUMED_ROLE = "Root", "IAMUser", "AssumedRole"


class Caller(NamedTuple):  # a tuple: made on every request, and a frozen dataclass costs twice as much
    """An authenticated AWS caller: who the access key stands for.

    ``unique_id``: the user's or role's IAM id (AIDA..., AROA...); None for an account root and for a principal
    recorded before unique ids. ``role_arn``: for a role session, the role (with its path)."""

    principal_arn: str
    account_id: str
    access_key_id: str
    unique_id: str | None = None
    role_arn: str | None = None

    @property
    def kind(self) -> str:
        if self.principal_arn.endswith(":root"):
            return ROOT
        return ASSUMED_ROLE if ":assumed-role/" in self.principal_arn else IAM_USER


@dataclass(frozen=True, slots=True)
class Operator:
    """Who runs a local command with direct database access: the OS user, the host, and the tool."""

    user: str
    host: str
    invoked_by: str = "keyledger-cli"


_API = CallKind.API


@dataclass(slots=True, eq=False)
class Call:
    kind: CallKind
    operation: str  # CloudTrail's eventName
    at: datetime
    request_id: str
    event_id: str
    source: str = KMS_SOURCE  # eventSource
    caller: Caller | None = None  # API calls, once authenticated
    operator: Operator | None = None  # operator calls
    scope: Scope | None = None  # where the call acts: the caller's account and region, or the key's
    region: str | None = None  # awsRegion: what the request claimed until its signature is verified
    claimed_access_key_id: str | None = None  # what an unauthenticated request claimed
    source_ip: str | None = None
    user_agent: str | None = None
    secure_transport: bool = False
    parameters: dict[str, Any] = field(default_factory=dict, repr=False)  # as parsed; may hold plaintext
    request_parameters: dict[str, Any] | None = None  # their audit view (no blob, no secret)
    # -- what the call gathers for its record --
    resources: list[str] = field(default_factory=list)
    additional_event_data: dict[str, Any] | None = None
    response_elements: dict[str, Any] | None = None
    # For a key change recorded inside its transaction: renders responseElements from the changed key.
    respond_from: Callable[[Any], dict[str, Any] | None] | None = None
    error_code: str | None = None
    error_message: str | None = None
    authorized: bool = False  # set by the check that allowed this call (application/authorization/authorizer.py)
    authorized_by_rule: bool = False  # an operator or service call: allowed because of what it is
    committed: bool = False  # its record is durable already (it committed with the call's key change)
    via_service: str | None = None  # the AWS service the caller says it acts through (kms:ViaService, decision 91)
    # Condition keys the entry point knows beyond KMS's own (the XKS proxy's request metadata as xks:*)
    extra_condition_keys: dict[str, Any] | None = None

    @classmethod
    def api(cls, operation: str, *, at: datetime, request_id: str, event_id: str, source_ip: str | None,
            user_agent: str | None, secure_transport: bool = False) -> Call:
        """An HTTP request as it enters: nobody is known to be calling yet."""
        # Positional: made on every request, and keywords cost twice as much here.
        return cls(_API, operation, at, request_id, event_id, KMS_SOURCE, None, None, None, None, None, source_ip,
                   user_agent, secure_transport)

    @classmethod
    def operator_call(cls, operation: str, *, operator: Operator, at: datetime, request_id: str, event_id: str,
                      source: str, region: str, account_id: str | None,
                      request_parameters: dict[str, Any] | None = None) -> Call:
        return cls(CallKind.OPERATOR, operation, at, request_id, event_id, source=source, operator=operator,
                   scope=Scope(account_id, region) if account_id else None, region=region,
                   source_ip=operator.host, user_agent=operator.invoked_by, request_parameters=request_parameters)

    @classmethod
    def service(cls, operation: str, *, at: datetime, request_id: str, event_id: str,
                scope: Scope | None = None) -> Call:
        return cls(CallKind.SERVICE, operation, at, request_id, event_id, scope=scope,
                   region=scope.region if scope else None, source_ip=KMS_SOURCE, user_agent=KMS_SOURCE)

    # -- entry -----------------------------------------------------------------------------------

    def claim(self, access_key_id: str, region: str) -> None:
        """What a request says about its caller before the signature is checked (recorded if refused)."""
        self.claimed_access_key_id, self.region = access_key_id, region

    def authenticate(self, caller: Caller, scope: Scope) -> None:
        self.caller, self.scope, self.region = caller, scope, scope.region

    def required_caller(self) -> Caller:
        """For the services that decide by who is asking (grants, the key policy lockout check)."""
        if self.caller is None:
            raise InternalError("The caller's identity is unknown; the request was not authenticated.")
        return self.caller

    def in_scope(self) -> Scope:
        """Where the call acts; every service acting for a caller needs it."""
        if self.scope is None:
            raise InternalError("The call has no account and region; it was not authenticated.")
        return self.scope

    # -- what the call gathers ---------------------------------------------------------------------

    def add_resource(self, arn: str | None) -> None:
        if arn and arn.startswith("arn:") and ":key/" in arn and arn not in self.resources:
            self.resources.append(arn)

    def fail(self, code: str, message: str) -> None:
        self.error_code, self.error_message = code, message


__all__ = ["Call", "CallKind", "Caller", "Operator", "KMS_SOURCE", "ROOT", "IAM_USER", "ASSUMED_ROLE"]
