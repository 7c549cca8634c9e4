"""AWS managed keys: the reserved aliases ``alias/aws/<service>`` and what AWS says of each (docs/decisions.md 91)."""
from __future__ import annotations

import re

from domain.identifiers import RESERVED_ALIAS_PREFIX

KEY_MANAGER_AWS, KEY_MANAGER_CUSTOMER = "AWS", "CUSTOMER"
MANAGED_ROTATION_DAYS = 365  # AWS rotates AWS managed keys every year

# The services whose AWS managed keys keyledger makes, with the description AWS gives each.
MANAGED_SERVICES: dict[str, str] = {
    "s3": "Default key that protects my S3 objects when no other key is defined",
    "ebs": "Default key that protects my EBS volumes when no other key is defined",
    "rds": "Default key that protects my RDS database volumes when no other key is defined",
    "lambda": "Default key that protects my Lambda functions when no other key is defined",
    "secretsmanager": "Default key that protects my Secrets Manager data when no other key is defined",
    "ssm": "Default key that protects my SSM parameters when no other key is defined",
    "dynamodb": "Default key that protects my DynamoDB data when no other key is defined",
    "sns": "Default key that protects my SNS data when no other key is defined",
    "sqs": "Default key that protects my SQS messages when no other key is defined",
    "kinesis": "Default key that protects my Kinesis data when no other key is defined",
    "logs": "Default key that protects my CloudWatch Logs data when no other key is defined",
    "glue": "Default key that protects my Glue data when no other key is defined",
    "redshift": "Default key that protects my Redshift data when no other key is defined",
    "elasticfilesystem": "Default key that protects my EFS filesystems when no other key is defined",
    "backup": "Default key that protects my backups when no other key is defined",
    "acm": "Default key that protects my ACM private keys when no other key is defined",
}
_SERVICE = re.compile(r"^[a-z0-9-]{1,64}$")


def managed_service(alias_name: str) -> str | None:
    """The service of a reserved alias keyledger makes an AWS managed key for, or None."""
    if not alias_name.startswith(RESERVED_ALIAS_PREFIX):
        return None
    service = alias_name[len(RESERVED_ALIAS_PREFIX):]
    return service if service in MANAGED_SERVICES else None


def valid_service_name(name: str) -> bool:
    return _SERVICE.fullmatch(name) is not None
