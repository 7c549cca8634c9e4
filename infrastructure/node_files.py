"""What a node keeps on its own disk: its data directory, the administrator credentials of a first start, and
where an operator's point-in-time copy goes. Everything a deployment shares (root-wrapped secrets, credentials,
checkpoints) is in the database; a PostgreSQL node without a data directory writes no file at all.

A file found in the data directory is never replaced: it may be another database's (two installations run from
one checkout), and overwriting it would lock that installation's administrator out."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from application.principals.service import PrincipalService
from infrastructure.credentials import CredentialStore, new_access_key
from infrastructure.settings import Settings


def ensure_data_dir(path: Path | None) -> None:
    if path is None:
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@dataclass(frozen=True)
class AdminKey:
    """What a start did about the administrator access key, for the banner."""

    created: bool = False
    note: str | None = None  # why none was created or written, and what to do instead


def ensure_admin(settings: Settings, credentials: CredentialStore, admin: PrincipalService, region: str) -> AdminKey:
    """First start: create the administrator access key (an access key of the account root, recorded as an event
    of the root principal) and write it, mode 0600, to the data directory. With KEYLEDGER_ADMIN_ACCESS_KEY_ID and
    _SECRET_ACCESS_KEY the key has exactly those values and the operator holds them already, so a node without a
    data directory creates it too; a random key is made only where it can be written."""
    root = f"arn:aws:iam::{settings.account_id}:root"
    path = settings.admin_credentials_file
    if settings.admin_access_key_id:
        if credentials.exists(settings.admin_access_key_id):
            return AdminKey()
        key_id, secret = settings.admin_access_key_id, settings.admin_secret_access_key or ""
    elif credentials.count() == 0 and not admin.has_history(root):  # not again after the keys were deleted
        if path is None:
            return AdminKey(note=(
                "no administrator access key: this node has no data directory to write a new one to. Set "
                "KEYLEDGER_ADMIN_ACCESS_KEY_ID and KEYLEDGER_ADMIN_SECRET_ACCESS_KEY (created with exactly these "
                f"values at the next start), or run 'keyledger access-keys create --principal {root}' with this "
                "node's database and root key settings."))
        if path.exists():
            return AdminKey(note=(
                f"no administrator access key created: {path} already exists and may belong to another database "
                "(keyledger never overwrites it). Remove it if its database is gone, or give this node a data "
                "directory of its own, and restart."))
        key_id, secret = new_access_key()
    else:
        return AdminKey()
    if not admin.bootstrap_access_key(root, key_id, secret, region):
        return AdminKey()
    if path is None or path.exists():  # the operator configured these values: nothing to hand over
        return AdminKey(created=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[keyledger]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    return AdminKey(created=True)


def history_copy_url(settings: Settings, moment: datetime) -> str:
    """Where ``replay --until`` writes the world at a moment when no database is named: the data directory, or
    the working directory of a node that has none."""
    stamp = moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    directory = settings.data_dir if settings.data_dir is not None else Path.cwd()
    return f"sqlite:///{directory.resolve() / ('history-at-' + stamp + '.db')}"
