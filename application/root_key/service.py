"""Root-key rotation and retirement, online: servers keep serving while every root-wrapped value is re-wrapped.

Rotation (``keyledger root-key rotate``):
1. the provider makes version N+1 (file: a new key in the root key file; PKCS#11: a new non-extractable key in
   the token; env: the operator put it in KEYLEDGER_ROOT_KEY beforehand), and the history records
   ``VersionAdded`` with a check value for it, in one audited commit. From then on every process wraps new
   values under N+1 (each reads the history with a short cache), and unwraps anything under any held version;
2. every root-wrapped value (infrastructure/root_wrapped.py lists the tables) is re-wrapped under N+1 in small
   batches, each row compare-and-set, so a concurrent change to a row wins and nothing waits for long;
3. ``RewrapCompleted`` is recorded (audited).
A crash anywhere leaves a state the next ``rotate`` finishes: step 1 is idempotent in the provider (the version
is found if it was made), step 2 picks up whatever is still under an older version, step 3 runs once.

Retirement (``keyledger root-key retire V``) re-wraps any straggler first (a process whose cache still named
the old version), refuses while anything is under V, records ``VersionRetired`` and then destroys V in the
provider. From then on a backup of the database made while V was in use cannot be unwrapped with the
provider's keys: that bounds how long deleted (shredded) key material can be recovered from backups.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable

from eventsourcing.application import AggregateNotFoundError

from application.audit.records import new_ids
from application.calls import Call, Operator
from application.ledger import KeyLedger
from application.ports import Clock, RootKeyProvider, RootWrappedRows
from application.writer import LedgerWriter
from domain.crypto.wrapping import RootKeyring
from domain.errors import ValidationError
from domain.root_key.history import ROOT_KEY_HISTORY_ID, RootKeyHistory

KMS_SOURCE = "kms.amazonaws.com"
REWRAP_BATCH = 200


class RootKeyService:
    def __init__(self, ledger: KeyLedger, writer: LedgerWriter, clock: Clock, keyring: RootKeyring,
                 provider: RootKeyProvider, rows: RootWrappedRows, new_check: Callable[[RootKeyring, int], bytes],
                 *, account_id: str, region: str, settle_seconds: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._ledger = ledger
        self._writer = writer
        self._clock = clock
        self._keyring = keyring
        self._provider = provider
        self._rows = rows
        self._new_check = new_check
        self._account_id = account_id
        self._region = region
        # How long a serving process may still wrap under the version it last read (KEYLEDGER_KEY_CACHE_SECONDS):
        # retirement waits that long before its last straggler pass, so no value lands under a destroyed version.
        self._settle_seconds = settle_seconds
        self._sleep = sleep

    def history(self) -> RootKeyHistory | None:
        try:
            return self._ledger.repository.get(ROOT_KEY_HISTORY_ID)  # type: ignore[return-value]
        except AggregateNotFoundError:
            return None

    def status(self) -> dict[str, Any]:
        history = self.history()
        counts = self._rows.count_by_version()
        return {
            "provider": self._provider.name,
            "current": history.current if history else self._keyring.current,
            "active": history.active() if history else sorted(self._keyring.versions),
            "retired": history.retired() if history else [],
            "rotation": "complete" if history is None or history.rewrapped else "re-wrapping",
            "wrapped_values_by_version": {str(v): n for v, n in sorted(counts.items())},
        }

    def _call(self, event_name: str, operator: Operator, parameters: dict[str, Any]) -> Call:
        request_id, event_id = new_ids(2)
        return Call.operator_call(event_name, operator=operator, at=self._clock.now(), request_id=request_id,
                                  event_id=event_id, source=KMS_SOURCE, region=self._region,
                                  account_id=self._account_id, request_parameters=parameters)

    def _started(self) -> RootKeyHistory:
        history = self.history()
        if history is None:
            # The versions that wrap values now, not every version the provider holds: one a crashed rotation
            # made before recording it is reused by this rotation instead of being skipped.
            in_use = set(self._rows.count_by_version()) or {self._keyring.current}
            # The provider's newest version is this first rotation's target when older ones still wrap values:
            # the env provider's operator put it in KEYLEDGER_ROOT_KEY (JSON, maybe already "current", so
            # restarted servers wrap new values under it), or a crashed run made it and a restart began using it.
            newest = max(self._provider.held_versions(), default=None)
            if newest is not None and newest in in_use and len(in_use) > 1:
                in_use.discard(newest)
            history = RootKeyHistory.start(self._provider.name, sorted(in_use), self._clock.now())
        return history

    def rotate(self, operator: Operator, *, batch: int = REWRAP_BATCH,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        history = self._started()
        resumed = not history.rewrapped
        if not resumed:
            version = max(history.known()) + 1
            self._provider.add_version(version)  # idempotent: a crashed rotation's version is found again
            if self._keyring.version(version) is None:
                raise ValidationError(f"The {self._provider.name} root key provider does not hold version {version}.")
            check = self._new_check(self._keyring, version)
            history.add_version(version, self._provider.name, self._clock.now())
            call = self._call("CreateRootKeyVersion", operator, {"version": version, "provider": self._provider.name})
            rows = self._rows
            self._writer.commit(call, [history], also=[lambda tx: rows.replace_check(tx, version, check)])
        version = history.current
        total = 0
        while True:
            done = self._rows.rewrap(self._keyring, version, batch)
            if not done:
                break
            total += done
            if progress is not None:
                progress(total)
        history = self.history()
        assert history is not None
        history.complete_rewrap(total, self._clock.now())
        self._writer.commit(self._call("CompleteRootKeyRotation", operator,
                                       {"version": version, "resumed": resumed}), [history])
        return {"version": version, "rewrapped": total, "resumed": resumed}

    def retire(self, version: int, operator: Operator) -> dict[str, Any]:
        history = self.history()
        if history is None:
            raise ValidationError(f"Root key version {version} cannot be retired: the root key was never rotated.")
        if version in history.retired():
            self._provider.destroy_version(version)  # a crash after the record, before the destruction
            self._keyring.forget(version)
            return {"version": version, "retired": True, "rewrapped": 0}
        if version == history.current or not history.rewrapped:
            history.retire(version, self._clock.now())  # raises with the reason
        if version not in history.known():
            history.retire(version, self._clock.now())  # raises: no such version
        self._sleep(self._settle_seconds)  # every process has read the current version by now
        straggling = 0
        while True:  # values a process wrapped under an older version while its cache still named it
            done = self._rows.rewrap(self._keyring, history.current, REWRAP_BATCH)
            if not done:
                break
            straggling += done
        left = self._rows.count_by_version().get(version, 0)
        if left:
            raise ValidationError(f"{left} values are still wrapped under root key version {version}; "
                                  "run 'keyledger root-key rotate' and retire again.")
        history.retire(version, self._clock.now())
        rows = self._rows
        self._writer.commit(self._call("RetireRootKeyVersion", operator, {"version": version}), [history],
                            also=[lambda tx: rows.drop_check(tx, version)])
        self._provider.destroy_version(version)
        self._keyring.forget(version)
        return {"version": version, "retired": True, "rewrapped": straggling}


class CurrentRootVersion:
    """What a serving process wraps under: the history's current version, read at most once per ``seconds``;
    retired versions are dropped from the keyring as soon as the history names them."""

    def __init__(self, ledger: KeyLedger, seconds: float, now: Callable[[], float]) -> None:
        self._ledger = ledger
        self._seconds = seconds
        self._now = now
        self._checked = float("-inf")
        self._current: int | None = None
        self._retired: list[int] = []
        self._rewrapped = True
        self.keyring: RootKeyring | None = None

    def __call__(self) -> int | None:
        moment = self._now()
        if moment - self._checked >= self._seconds:
            self._checked = moment
            try:
                history: RootKeyHistory = self._ledger.repository.get(ROOT_KEY_HISTORY_ID)  # type: ignore[assignment]
            except AggregateNotFoundError:
                return self._current
            self._current = history.current
            self._retired = history.retired()
            self._rewrapped = history.rewrapped
            if self.keyring is not None:
                for version in self._retired:
                    self.keyring.forget(version)
        return self._current

    @property
    def retired(self) -> list[int]:
        return list(self._retired)

    def state(self) -> dict[str, object]:
        """For /healthz and /metrics: the version that wraps now, whether a rotation is re-wrapping, the
        retired versions. Version numbers only, never key material. The last known state when the database
        cannot be read (readiness says why)."""
        try:
            self()
        except Exception:  # noqa: BLE001 - health must answer whatever the database does
            pass
        current = self._current if self._current is not None else (self.keyring.current if self.keyring else None)
        return {"current_version": current, "rotation": "complete" if self._rewrapped else "re-wrapping",
                "retired_versions": list(self._retired)}


def _epoch(moment: datetime) -> float:
    return moment.timestamp()
