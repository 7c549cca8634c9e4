"""How `keyledger serve` starts, hands work to and stops the audit committer process (decision 264), and how its
worker processes find it; the process itself, its protocol and its loop are in infrastructure/audit_committer.py."""
from __future__ import annotations

import logging
import os
import pickle
import secrets
import select
import subprocess
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from infrastructure.settings import Settings

if TYPE_CHECKING:
    from infrastructure.audit_committer_connections import CommitterClient
    from infrastructure.runtime import Runtime

# Light on purpose: `serve` spawns the committer before it imports the service, so that both import at once.
READY = b"ready\n"  # what the committer process writes once it listens
log = logging.getLogger("keyledger.audit")

START_SECONDS = 60.0


class CommitterProcess:
    """The committer process as seen by `keyledger serve`, which starts and stops it. It is spawned first
    (``spawn``), so that it imports its modules while `serve` opens the database and the root key, and given its
    settings and the row key once those are known (``begin``)."""

    def __init__(self, process: subprocess.Popen[bytes], address: bytes) -> None:
        self.process, self.address = process, address

    @classmethod
    def spawn(cls) -> CommitterProcess:
        address = b"\0keyledger-audit-" + secrets.token_hex(16).encode()
        process = subprocess.Popen([sys.executable, "-m", "infrastructure.audit_committer"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return cls(process, address)

    def begin(self, settings: Settings, row_key: bytes, timeout: float = START_SECONDS) -> None:
        """Hands it what it needs and waits until it listens. The row key reaches it through its standard input (a
        pipe), never its arguments or environment; nothing secret it does not need goes with the settings."""
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        needed = replace(settings, admin_access_key_id=None, admin_secret_access_key=None, root_key=None,
                         pkcs11_pin=None)
        try:
            process.stdin.write(pickle.dumps({"settings": needed, "row_key": row_key, "address": self.address}))
            process.stdin.close()
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline() if ready else b""
        except BaseException:
            self.stop(0)
            raise
        if line != READY:
            self.stop(0)
            raise RuntimeError(f"the audit committer process did not start (exit code {process.poll()})")

    def client(self) -> CommitterClient:
        from infrastructure.audit_committer_connections import CommitterClient

        return CommitterClient(self.address)

    def stop(self, timeout: float = 10.0) -> None:
        """After every server process stopped handing it batches: it finishes the one under way and ends."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


ADDRESS_VARIABLE = "KEYLEDGER_INTERNAL_AUDIT_COMMITTER"  # how `serve` tells its worker processes where it listens


def spawn_audit_committer(settings: Settings) -> CommitterProcess | None:
    """`keyledger serve`, first thing: the committer process, to be given its work by ``start_audit_committer``.
    None with KEYLEDGER_AUDIT_COMMITTER=thread, or if it could not be started (logged)."""
    if settings.audit_committer != "process":
        return None
    try:
        return CommitterProcess.spawn()
    except OSError as exc:
        log.error("the audit committer process did not start (%s); each server process commits its own records",
                  exc)
        return None


def start_audit_committer(runtime: Runtime, committer: CommitterProcess | None) -> CommitterProcess | None:
    """`keyledger serve`, before it serves: the spawned committer given the database and the row key, for every
    server process `serve` will start; the one it runs itself hands its batches to it. None (records commit in
    each server process, as with KEYLEDGER_AUDIT_COMMITTER=thread) without a committer, on a sealed service, or if
    it does not listen in time (logged)."""
    if committer is None:
        return None
    if runtime.services is None:
        committer.stop(0)
        return None
    row_key = runtime.ledger.mapper.row_key  # type: ignore[attr-defined]
    try:
        committer.begin(runtime.settings, row_key)
        if runtime.settings.workers == 1:
            runtime.audit.hand_batches_to(committer.client())
            runtime.audit_committer, runtime.audit_committer_address = committer, committer.address
    except (OSError, RuntimeError) as exc:
        committer.stop(0)
        log.error("the audit committer process did not start (%s); each server process commits its own records",
                  exc)
        return None
    if runtime.settings.workers > 1:  # the workers, spawned next, inherit it
        os.environ[ADDRESS_VARIABLE] = committer.address[1:].decode()
    return committer


def connect_audit_committer(runtime: Runtime) -> None:
    """A worker process (``KEYLEDGER_WORKERS`` > 1): hands its batches to the committer `serve` started."""
    name = os.environ.get(ADDRESS_VARIABLE)
    if not name or runtime.services is None:
        return
    from infrastructure.audit_committer_connections import CommitterClient

    address = b"\0" + name.encode()
    try:
        runtime.audit.hand_batches_to(CommitterClient(address))
        runtime.audit_committer_address = address
    except OSError as exc:
        log.error("could not reach the audit committer process (%s); this process commits its own records", exc)
