"""AWS's default key policy. Validation is domain/policy/document.py; evaluation domain/policy/evaluation.py."""
from __future__ import annotations

import json

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


# The actions AWS's policy for AWS managed keys allows through the service (as for aws/ebs and aws/rds).
_MANAGED_KEY_SERVICE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                                "kms:CreateGrant", "kms:DescribeKey"]


def aws_managed_key_policy(service: str, account_id: str, region: str, partition: str = "aws") -> str:
    """AWS's standard policy of an AWS managed key: every principal of the account may use it through the
    service (kms:ViaService, kms:CallerAccount); the account may read its metadata directly. Nothing else, so
    nobody can change, disable, delete or rotate it by hand (docs/decisions.md 91)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": f"auto-{service}-1",
            "Statement": [
                {
                    "Sid": f"Allow access through {service} for all principals in the account that are authorized "
                           f"to use {service}",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": _MANAGED_KEY_SERVICE_ACTIONS,
                    "Resource": "*",
                    "Condition": {"StringEquals": {"kms:CallerAccount": account_id,
                                                   "kms:ViaService": f"{service}.{region}.amazonaws.com"}},
                },
                {
                    "Sid": "Allow direct access to key metadata to the account",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                    "Resource": "*",
                },
            ],
        },
        indent=2,
    )
