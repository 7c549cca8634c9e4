"""Bringing a ledger written before tags and claims existed (docs/audit.md, "One ledger") under them.

Once, at the first start with a row key: every stored event gets its tag, snapshots (a cache, untagged)
are dropped to be taken again, and one record, signed into the chain like any other, covers all those
events with a digest (``ledgerUpgrade``). From then on `verify` proves them through that record, and the
service refuses any event without a valid tag. What the events said before the upgrade is trusted as it
stood at that moment: run `keyledger audit verify` and `keyledger replay` before upgrading.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from application.audit.ledger_verify import legacy_digest
from application.audit.records import new_ids
from application.audit.trail import AuditTrail
from application.calls import Call
from application.ledger import CHAIN_COVERED_TOPICS, KeyLedger
from application.ports import Clock
from domain.audit.seals import event_digest, split_tagged, tag_state
from infrastructure.storage import SqlUnitOfWork

PAGE = 1000


def _tables(ledger: KeyLedger) -> tuple[sa.Table, sa.Table | None]:
    events = ledger.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
    snapshots = ledger.snapshots.recorder.events_record_cls.__table__ if ledger.snapshots else None  # type: ignore[attr-defined]
    return events, snapshots


def untagged_events(ledger: KeyLedger, uow: SqlUnitOfWork) -> bool:
    """Whether any stored event lacks its tag (a ledger from before tags). Reads until the first one."""
    events, _ = _tables(ledger)
    covered = sorted(CHAIN_COVERED_TOPICS)
    with uow.read() as session:
        rows = session.execute(sa.select(events.c.state).where(events.c.topic.not_in(covered))
                               .order_by(events.c.id).limit(1)).all()
    return bool(rows) and split_tagged(bytes(rows[0].state))[1] is None


def upgrade_ledger(ledger: KeyLedger, uow: SqlUnitOfWork, audit: AuditTrail, clock: Clock, region: str) -> int:
    """Tags every untagged event and appends the record that covers them; returns how many."""
    key = ledger.mapper.row_key  # type: ignore[attr-defined]
    assert key is not None, "the row key is set first"
    events, snapshots = _tables(ledger)
    covered = sorted(CHAIN_COVERED_TOPICS)
    request_id, event_id = new_ids(2)
    call = Call.service("UpgradeLedger", at=clock.now(), request_id=request_id, event_id=event_id)
    call.region = region
    call.authorized_by_rule = call.authorized = True
    digests: list[str] = []
    with audit.transaction_with_record(call, []) as record:
        with uow.transaction() as tx:
            record.begin(tx)
            after = 0
            while True:
                page: list[Any] = tx.execute(sa.select(events.c.id, events.c.originator_id, events.c.originator_version,
                                                       events.c.topic, events.c.state)
                                             .where(events.c.topic.not_in(covered), events.c.id > after)
                                             .order_by(events.c.id).limit(PAGE)).all()
                if not page:
                    break
                for row in page:
                    state = bytes(row.state)
                    if split_tagged(state)[1] is None:
                        state = tag_state(key, row.originator_id, row.originator_version, row.topic, state)
                        tx.execute(events.update().where(events.c.id == row.id).values(state=state))
                    digests.append(event_digest(row.originator_id, row.originator_version, row.topic, state))
                after = page[-1].id
            if snapshots is not None:
                tx.execute(snapshots.delete())
            record.seal([], upgrade={"events": len(digests), "digest": legacy_digest(digests)})
    return len(digests)
