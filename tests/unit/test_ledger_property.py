"""One ledger, as a property (docs/audit.md): for random histories built through the services on a real SQLite
file, `verify` passes the untouched ledger and fails after any single-byte change (of its state, topic or version)
to any stored row the chain covers (every event but the two audit aggregates' empty Started events; checkpoints are
judged as their file in tests/e2e/test_audit_tamper.py, their database copy in test_ledger_every_aggregate.py)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.audit.checkpoints import stored_checkpoints
from application.audit.ledger_verify import verify_ledger
from application.audit.records import cloudtrail_record
from infrastructure.event_rows import SqlEventRows
from tests.calls import api_call
from tests.unit.test_point_in_time import ALICE, SCOPE, World

OPERATIONS = ("tag", "describe", "disable", "enable", "alias", "grant", "record", "schedule")


def _apply(w: World, key_id: str, operation: str, n: int) -> None:
    if operation == "tag":
        w.do("keys.tag_resource", key_id, {f"t{n % 3}": str(n)})
    elif operation == "describe":
        w.do("keys.update_key_description", key_id, f"description {n}")
    elif operation == "disable":
        w.do("keys.disable_key", key_id)
    elif operation == "enable":
        w.do("keys.enable_key", key_id)
    elif operation == "alias":
        w.do("aliases.create_alias", f"alias/p{n}", key_id)
    elif operation == "grant":
        w.do("grants.create_grant", key_id, operations=["Encrypt"], grantee_principal=ALICE)
    elif operation == "record":  # a read-only call's record, group-committed
        w.rt.audit.record(cloudtrail_record(api_call("DescribeKey", ALICE, SCOPE, at=w.now())))
    elif operation == "schedule":
        w.do("keys.schedule_key_deletion", key_id, 7)


def _verify(w: World) -> bool:
    """Both ways of reading the store (the event library's notifications, and `audit verify`'s plain SELECT with
    its fast record decoding) give the same answer, problem and position."""
    checkpoints = stored_checkpoints(w.rt.ledger)
    library = verify_ledger(w.rt.ledger, checkpoints)
    plain = verify_ledger(w.rt.ledger, checkpoints, rows=SqlEventRows(w.rt.uow))
    assert (plain.ok, plain.first_bad_seq, plain.problem, plain.position) == (
        library.ok, library.first_bad_seq, library.problem, library.position)
    return library.ok


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=6),
       row_pick=st.integers(min_value=0, max_value=10**6), byte_pick=st.integers(min_value=0, max_value=10**6),
       bit=st.integers(min_value=0, max_value=6), column=st.sampled_from(["state"] * 4 + ["topic", "version"]))
def test_verify_passes_untouched_and_fails_after_any_single_byte_change(operations: list[str], row_pick: int,
                                                                        byte_pick: int, bit: int, column: str) -> None:
    with tempfile.TemporaryDirectory() as directory, World(Path(directory)) as w:
        key_id = w.create_key()
        for n, operation in enumerate(operations):
            try:
                _apply(w, key_id, operation, n)
            except Exception:  # a refused change (e.g. enabling a key pending deletion): still a history
                pass
        w.rt.services.checkpointer.checkpoint_if_due(force=True)
        assert _verify(w)
        with w.engine.begin() as conn:
            rows = conn.execute(sa.text(
                "SELECT id, topic, state FROM keyledger_events WHERE topic NOT LIKE '%AuditCheckpoints%' "
                "AND topic NOT LIKE '%.Started' ORDER BY id")).all()
            row = rows[row_pick % len(rows)]
            if column == "state":
                state = bytearray(row.state)
                state[byte_pick % len(state)] ^= 1 << bit
                conn.execute(sa.text("UPDATE keyledger_events SET state = :s WHERE id = :i"),
                             {"s": bytes(state), "i": row.id})
            elif column == "topic":  # a bit below 0x80 of an ASCII character: still text, another topic
                topic = bytearray(row.topic.encode())
                topic[byte_pick % len(topic)] ^= 1 << bit
                conn.execute(sa.text("UPDATE keyledger_events SET topic = :t WHERE id = :i"),
                             {"t": topic.decode(), "i": row.id})
            else:  # the version, moved where no other event of the aggregate is
                conn.execute(sa.text("UPDATE keyledger_events SET originator_version = originator_version + :d "
                                     "WHERE id = :i"), {"d": 1 << (8 + bit), "i": row.id})
        assert not _verify(w), f"a change at store position {row.id} went unnoticed"
