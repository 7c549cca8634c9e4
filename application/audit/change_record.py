"""The audit record of a key change, made inside the change's own transaction (decision 17): it takes the writers'
lock and the head through the chain's appender (application/audit/chain_appends.py), names the events the change
stored (their digests, decision 73) and is saved with them, so the change and its record commit together or not
at all."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from eventsourcing.persistence import Recording

from application.audit.bounds import bound_record
from application.audit.records import cloudtrail_record
from application.calls import Call
from domain.audit.log import LEDGER_EVENTS, LEDGER_UPGRADE, AuditLog
from domain.audit.seals import event_digest
from domain.keys.key import Key

if TYPE_CHECKING:
    from application.audit.chain_appends import ChainAppends


def claims(recordings: Sequence[Recording]) -> list[dict[str, Any]]:
    """What a record says about the events its call committed: each one's aggregate, version and the
    digest of its stored row (domain/audit/seals.py), in the order they were stored."""
    return [{"aggregate": str(n.originator_id), "version": n.originator_version,
             "digest": event_digest(n.originator_id, n.originator_version, n.topic, n.state)}
            for n in (recording.notification for recording in recordings)]


class RecordOfChange:
    """The audit record of one call's change, made inside the change's transaction."""

    def __init__(self, trail: ChainAppends, call: Call, aggregates: list[Any]) -> None:
        self._trail, self._call, self._aggregates = trail, call, aggregates
        self._head: tuple[int, str] | None = None
        self.log: AuditLog | None = None

    def begin(self, tx: Any) -> None:
        """First thing in the transaction: the writers' lock, then the head the record will follow. What the
        record says about the changed keys is taken now, while their new events are still pending."""
        self._tx = tx
        self._head = self._trail._begin_append(tx)
        call = self._call
        for aggregate in self._aggregates:
            if isinstance(aggregate, Key):
                call.add_resource(aggregate.arn)
                if call.respond_from is not None:
                    call.response_elements = call.respond_from(aggregate)

    def seal(self, recordings: Sequence[Recording], upgrade: dict[str, Any] | None = None) -> None:
        """After the change's events were saved: append and save the record that claims them (or, for the
        ledger's upgrade, the record that covers every event stored before records named theirs)."""
        assert self._head is not None, "begin(tx) comes first"
        record = bound_record(cloudtrail_record(self._call))
        if upgrade is None:
            record[LEDGER_EVENTS] = claims(recordings)
        else:
            record[LEDGER_UPGRADE] = upgrade
        log = AuditLog.at_head(*self._head)
        log.append(record, self._trail._clock.now())
        self._trail._ledger.save(log)
        self._trail._indexed(self._tx, [record], log.seq)
        self.log = log

    @property
    def seq(self) -> int | None:
        """The seq of the sealed record (the timeline finds a change's actor by it)."""
        return self.log.seq if self.log is not None else None
