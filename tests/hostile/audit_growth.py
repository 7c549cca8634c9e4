"""How much the audit log grew, read from the event table itself (sqlite3 or SQLAlchemy), and the bound it
must stay under (issue #11's contract): every record's JSON at most 16 KiB; an authenticated call has one
record; unauthenticated failures are aggregated per 60-second window, at most
KEYLEDGER_UNAUTHENTICATED_AUDIT_PER_SOURCE individual records per source and
KEYLEDGER_UNAUTHENTICATED_AUDIT_TOTAL in all, plus one summary per window. Record counts and sizes are
compared, not file sizes: SQLite files grow in pages."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tests.e2e.test_audit_support import AUDIT_LOG_ID
from tests.servers import Server
from tests.stored_states import plain

RECORD_LIMIT = 16 * 1024  # bytes of one record's JSON (the constant lives in application/audit/)
STORED_OVERHEAD = 1024  # the row's envelope around a record: timestamp, topic spelling, seq and hashes
WINDOW_SECONDS = 60
PER_SOURCE_VARIABLE = "KEYLEDGER_UNAUTHENTICATED_AUDIT_PER_SOURCE"
TOTAL_VARIABLE = "KEYLEDGER_UNAUTHENTICATED_AUDIT_TOTAL"


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    stored_bytes: int  # the row's state column
    record_bytes: int  # the record's compact UTF-8 JSON, without its chain fields
    event_name: str
    error_code: str | None
    request_id: str | None


def record_bytes(record: dict[str, Any]) -> int:
    body = {k: v for k, v in record.items() if k not in ("leaf", "chain")}
    return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def audit_version(server: Server) -> int:
    """The audit log's last stored version (= its last seq + 1), 0 when empty."""
    rows = _rows(server, "SELECT MAX(originator_version) FROM keyledger_events WHERE originator_id = {id}", 0)
    return int(rows[0][0] or 0)


def records_after(server: Server, version: int) -> list[StoredRecord]:
    """Every event of the audit log after ``version`` (records, and any summary event beside them)."""
    out = []
    for stored_version, state in _rows(server, "SELECT originator_version, state FROM keyledger_events "
                                               "WHERE originator_id = {id} AND originator_version > {after} "
                                               "ORDER BY originator_version", version):
        state = bytes(state)
        try:
            record = json.loads(plain(state))["record"]
        except (ValueError, KeyError, TypeError):
            record = {}
        out.append(StoredRecord(stored_version - 1, len(state), record_bytes(record) if record else len(state),
                                str(record.get("eventName", "?"))[:60], record.get("errorCode"),
                                record.get("requestID")))
    return out


def _rows(server: Server, sql: str, after: int) -> list[Any]:
    if server.database_url:
        engine = sa.create_engine(server.database_url)
        try:
            with engine.connect() as conn:
                text = sa.text(sql.format(id=":id", after=":after"))
                return list(conn.execute(text, {"id": AUDIT_LOG_ID, "after": after}).all())
        finally:
            engine.dispose()
    conn = sqlite3.connect(server.sqlite_file, timeout=60)
    try:  # the log's originator_id is stored in the library's spelling: take it from one of its events
        found = conn.execute("SELECT originator_id FROM keyledger_events WHERE topic LIKE ? LIMIT 1",
                             ("%:AuditLog.%",)).fetchone()
        if found is None:  # the log has not started yet: nothing was recorded
            return [(None,)] if sql.startswith("SELECT MAX(") else []
        parameters = (found[0], after) if "{after}" in sql else (found[0],)
        return conn.execute(sql.format(id="?", after="?"), parameters).fetchall()
    finally:
        conn.close()


@dataclass(frozen=True)
class AuditBound:
    authentic: int  # authenticated requests sent: one record each
    started: float  # time.time() before the first request and after the last
    finished: float
    per_source: int
    total: int
    sources: int = 1  # every request came from 127.0.0.1

    @property
    def windows(self) -> int:
        """Aggregation windows the run can touch, plus one for a summary written when the last one closes."""
        return int((self.finished - self.started) // WINDOW_SECONDS) + 2 + 1

    @property
    def records(self) -> int:
        individual = min(self.per_source * self.sources, self.total)
        return self.authentic + self.windows * (individual + self.sources)

    @property
    def stored_bytes(self) -> int:
        return self.records * (RECORD_LIMIT + STORED_OVERHEAD)

    def __str__(self) -> str:
        return (f"at most {self.records:,} records ({self.authentic:,} authentic + {self.windows} windows x "
                f"({min(self.per_source * self.sources, self.total)} individual + {self.sources} summary)) "
                f"of at most {RECORD_LIMIT:,} bytes each, {self.stored_bytes:,} bytes stored")


def growth_problems(records: list[StoredRecord], bound: AuditBound) -> list[str]:
    found = []
    if len(records) > bound.records:
        names: dict[str, int] = {}
        for record in records:
            names[f"{record.event_name}/{record.error_code}"] = names.get(f"{record.event_name}/{record.error_code}", 0) + 1
        common = sorted(names.items(), key=lambda item: -item[1])[:8]
        found.append(f"{len(records):,} new audit records, more than {bound}; most common: {common}")
    large = [r for r in records if r.record_bytes > RECORD_LIMIT]
    if large:
        worst = max(large, key=lambda r: r.record_bytes)
        found.append(f"{len(large):,} records over {RECORD_LIMIT:,} bytes; the largest, seq {worst.seq} "
                     f"({worst.event_name}/{worst.error_code}), has {worst.record_bytes:,}")
    stored = sum(r.stored_bytes for r in records)
    if stored > bound.stored_bytes:
        found.append(f"{stored:,} bytes of audit records stored, more than {bound.stored_bytes:,}")
    return found
