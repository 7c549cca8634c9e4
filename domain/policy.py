"""Key policy documents: AWS's default key policy and the checks a policy must pass before it is stored.

Enforcement (evaluating statements for a request) comes with authorization; until then the policy is
stored exactly as given once it is a well-formed policy document.
"""
from __future__ import annotations

import json

from domain.errors import MalformedPolicyDocumentError

MAX_POLICY_BYTES = 32768
DEFAULT_POLICY_NAME = "default"


def default_key_policy(account_id: str, partition: str = "aws") -> str:
    """AWS's default key policy: the account root may do everything, so IAM policies decide."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [
                {
                    "Sid": "Enable IAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        },
        indent=2,
    )


def validate_policy_document(policy: str) -> None:
    if len(policy.encode("utf-8")) > MAX_POLICY_BYTES:
        raise MalformedPolicyDocumentError(f"The key policy is larger than {MAX_POLICY_BYTES} bytes.")
    try:
        document = json.loads(policy)
    except ValueError as exc:
        raise MalformedPolicyDocumentError(f"The key policy is not valid JSON: {exc}.") from None
    except RecursionError:
        raise MalformedPolicyDocumentError("The key policy is nested too deeply.") from None
    if not isinstance(document, dict):
        raise MalformedPolicyDocumentError("The key policy must be a JSON object.")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise MalformedPolicyDocumentError("The key policy must have a non-empty 'Statement'.")
    for index, statement in enumerate(statements, 1):
        if not isinstance(statement, dict):
            raise MalformedPolicyDocumentError(f"Statement {index} of the key policy must be a JSON object.")
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise MalformedPolicyDocumentError(f"Statement {index} needs 'Effect' of 'Allow' or 'Deny'.")
        if "Action" not in statement and "NotAction" not in statement:
            raise MalformedPolicyDocumentError(f"Statement {index} needs 'Action' or 'NotAction'.")
        if "Principal" not in statement and "NotPrincipal" not in statement:
            raise MalformedPolicyDocumentError(f"Statement {index} needs 'Principal': key policies name who they apply to.")
