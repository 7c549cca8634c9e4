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
