"""The audit committer process's protocol (infrastructure/audit_committer.py), on SQLite and PostgreSQL: the
service runs here on a thread, over a real Unix socket, on the trail `build_committer_trail` makes from a real
database, as the process does. What goes through arrives exactly, batches of several senders commit together
and verify, a refusal reaches the sender, and hostile peers are dropped without a record written."""
from __future__ import annotations

import asyncio
import json
import os
import pickle
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from application.audit.bounds import bound_record
from application.audit.checkpoints import audit_records
from application.audit.group_commit import AuditUnavailable, CommitterRefused
from application.audit.trail import AuditTrail
from domain.audit.chain import verify_log
from infrastructure import audit_committer
from infrastructure import audit_committer_connections as connections
from infrastructure.audit_committer import CommitterService, build_committer_trail
from infrastructure.audit_committer_connections import HEADER, CommitterChannel, CommitterClient
from infrastructure.bootstrap import Runtime
from tests.unit.test_audit_rows import encrypt_record, records, runtime  # noqa: F401 - the fixture

RECORD_KEYS = ("seq", "leaf", "chain")  # what sealing sets


class Committer:
    """A CommitterService on its own thread, listening on a fresh abstract address."""

    def __init__(self, trail: AuditTrail) -> None:
        self.address = b"\0keyledger-audit-test-" + secrets.token_hex(8).encode()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        self.listener.listen(8)
        self.service = CommitterService(trail, listener=self.listener)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def client(self) -> CommitterClient:
        return CommitterClient(self.address)

    def stop(self) -> None:
        self.service.stopping = True
        self.thread.join(timeout=10)


@pytest.fixture
def committer(runtime: Runtime) -> Iterator[Committer]:
    trail, close = build_committer_trail(runtime.settings, runtime.ledger.mapper.row_key)
    service = Committer(trail)
    try:
        yield service
    finally:
        service.stop()
        close()


def stored(runtime: Runtime) -> list[dict[str, Any]]:
    return list(audit_records(runtime.ledger))


def content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in RECORD_KEYS}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(records, min_size=1, max_size=4), min_size=1, max_size=3))
def test_what_is_handed_over_is_what_is_stored(runtime: Runtime, committer: Committer,
                                               batches: list[list[dict]]) -> None:
    # PostgreSQL's text columns (the audit index) take no NUL, in the server process as here; real records'
    # indexed fields (operation, principal, key, error code) are ours, never a caller's text.
    assume(runtime.settings.database_url is None or "\\u0000" not in json.dumps(batches))
    before = len(stored(runtime))
    client = committer.client()
    try:
        for batch in batches:
            client.commit(batch)
    finally:
        client.close()
    after = stored(runtime)
    assert verify_log(after).ok
    sent = [record for batch in batches for record in batch]
    # The record as stored is the record as sent, with the chain's own fields (which replace same-named ones).
    assert [content(r) for r in after[before:]] == [content(r) for r in sent]


def test_batches_of_several_senders_commit_together_and_the_server_side_trail_goes_on(
        runtime: Runtime, committer: Committer) -> None:
    start = len(stored(runtime))
    clients = [committer.client() for _ in range(4)]
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            for round_ in range(10):
                clients[index].commit([encrypt_record(1000 * index + 10 * round_ + i) for i in range(5)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    assert not errors
    after = stored(runtime)
    assert len(after) == start + 200 and verify_log(after).ok
    assert sorted(r["requestID"] for r in after[start:]) == sorted(
        f"req-{1000 * i + 10 * r + k}" for i in range(4) for r in range(10) for k in range(5))
    # A key change's own record, committed in the server process meanwhile, follows the committer's head.
    runtime.audit.record(encrypt_record(99999))
    assert verify_log(stored(runtime)).ok


@contextmanager
def stepped_service(runtime: Runtime) -> Iterator[tuple[CommitterService, bytes]]:
    """A CommitterService on a fresh address, not running: each step of a test is one serve_once."""
    trail, close = build_committer_trail(runtime.settings, runtime.ledger.mapper.row_key)
    address = b"\0keyledger-audit-test-" + secrets.token_hex(8).encode()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(8)
    try:
        yield CommitterService(trail, listener), address
    finally:
        listener.close()
        close()


def test_batches_waiting_together_commit_in_one_transaction(runtime: Runtime,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with stepped_service(runtime) as (service, address):
        senders = []
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(address)
            senders.append(sock)
            assert service.serve_once(5) == 0  # accepts it
        before = len(stored(runtime))
        for index, sock in enumerate(senders):
            payload = pickle.dumps([encrypt_record(10 * index + i) for i in range(index + 1)])
            sock.sendall(HEADER.pack(len(payload)) + payload)
        time.sleep(0.2)
        assert service.serve_once(5) == 6  # the three batches, in one transaction
        for sock in senders:
            assert sock.recv(16) == HEADER.pack(0)  # durable
        # At most FRAMES_PER_COMMIT batches go into one transaction; the others wait for the next.
        monkeypatch.setattr(audit_committer, "FRAMES_PER_COMMIT", 2)
        for sock in senders:
            payload = pickle.dumps([encrypt_record(7)])
            sock.sendall(HEADER.pack(len(payload)) + payload)
        time.sleep(0.2)
        assert [service.serve_once(5), service.serve_once(5)] == [2, 1]
        for sock in senders:
            assert sock.recv(16) == HEADER.pack(0)
            sock.close()
        after = stored(runtime)[before:]
        assert [r["requestID"] for r in after] == ["req-0", "req-10", "req-11", "req-20", "req-21", "req-22"] + [
            "req-7"] * 3
        assert verify_log(stored(runtime)).ok


def test_a_transaction_waits_for_the_batch_of_a_process_that_sent_in_the_last_one(runtime: Runtime) -> None:
    """Decision 271: with two busy server processes each transaction holds both's batches, though one's arrives a
    moment after the other's; a process that went quiet is waited for once, at most the bound; a lone sender never
    waits."""
    def send(sock: socket.socket, n: int) -> None:
        payload = pickle.dumps([encrypt_record(n)])
        sock.sendall(HEADER.pack(len(payload)) + payload)

    with stepped_service(runtime) as (service, address):
        service.gather_seconds = 3.0
        waits: list[float] = []  # the timeout of every wait for batches: what the committer waited for, untimed
        select = service._selector.select

        def recorded(timeout: float | None = None) -> Any:
            waits.append(timeout)
            return select(timeout)

        service._selector.select = recorded  # type: ignore[method-assign]
        first, second = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2))
        for sock in (first, second):
            sock.connect(address)
            assert service.serve_once(5) == 0  # accepts it
        send(first, 1)
        send(second, 2)
        time.sleep(0.2)
        assert service.serve_once(5) == 2  # both busy: one transaction
        for sock in (first, second):
            assert sock.recv(16) == HEADER.pack(0)
        service._last_wall = 3.0  # as if the last transaction had taken long: the bound is then gather_seconds
        send(first, 3)
        later = threading.Timer(0.3, send, (second, 4))
        later.start()
        waits.clear()
        assert service.serve_once(5) == 2  # the second's batch, 0.3 s late, went into the same transaction
        assert waits[0] == 5 and len(waits) > 1 and all(wait <= 3.0 for wait in waits[1:])
        for sock in (first, second):
            assert sock.recv(16) == HEADER.pack(0)
        service._last_wall = 0.5
        send(first, 5)  # the second has gone quiet: waited for once, within the last transaction's wall time
        waits.clear()
        assert service.serve_once(5) == 1
        assert waits[0] == 5 and len(waits) > 1 and all(wait <= 0.5 for wait in waits[1:])
        send(first, 6)  # and then no more: the last transaction held the first's batch only
        waits.clear()
        assert service.serve_once(5) == 1
        assert waits == [5]
        for sock in (first, second):
            sock.close()
        assert verify_log(stored(runtime)).ok


def test_a_batch_far_larger_than_the_socket_buffer_arrives_whole(runtime: Runtime, committer: Committer) -> None:
    """A full frame of records near their bound is megabytes: the client writes all of it, whatever the socket
    takes at once."""
    big = [{**encrypt_record(i), "requestParameters": {"note": "x" * 12_000}} for i in range(300)]
    before = len(stored(runtime))
    client = committer.client()
    client.commit(big)
    client.close()
    assert len(stored(runtime)) == before + 300


def test_a_batch_the_committer_cannot_store_is_refused_to_its_sender(runtime: Runtime, committer: Committer) -> None:
    before = len(stored(runtime))
    client = committer.client()
    with pytest.raises(CommitterRefused, match="ValueError"):
        client.commit([encrypt_record(1), {"x": float("nan")}])  # the chain's JSON refuses NaN
    client.commit([encrypt_record(2)])  # the connection goes on
    client.close()
    assert [r["requestID"] for r in stored(runtime)[before:]] == ["req-2"]


def test_a_server_process_trail_fails_a_refused_batch_closed(runtime: Runtime, committer: Committer) -> None:
    trail = runtime.audit
    trail.hand_batches_to(committer.client())
    trail.start()
    try:
        with pytest.raises(AuditUnavailable):
            trail.record({"eventName": "Encrypt", "x": float("nan")})
        trail.record(encrypt_record(7))
        assert trail.stats.failed_records == 1 and trail._committer is not None
    finally:
        trail.stop()
    assert stored(runtime)[-1]["requestID"] == "req-7" and verify_log(stored(runtime)).ok


def test_a_record_that_cannot_be_handed_over_fails_closed_and_the_next_goes_on(runtime: Runtime,
                                                                            committer: Committer) -> None:
    trail = runtime.audit
    trail.hand_batches_to(committer.client())
    trail.start()
    try:
        with pytest.raises(AuditUnavailable, match="pickle"):
            trail.record({**encrypt_record(1), "x": lambda: None})  # no record can hold a function
        trail.record(encrypt_record(2))
        assert trail.hands_batches_over
    finally:
        trail.stop()
    assert stored(runtime)[-1]["requestID"] == "req-2"


def test_when_the_committer_is_gone_the_batch_fails_closed_and_the_process_commits_its_own(
        runtime: Runtime, committer: Committer) -> None:
    trail = runtime.audit
    trail.hand_batches_to(committer.client())
    trail.start()
    try:
        trail.record(encrypt_record(1))
        committer.stop()  # closes every connection, as a killed process's end does
        with pytest.raises(AuditUnavailable, match="closed the connection|Broken pipe|reset"):
            trail.record(encrypt_record(2))
        assert trail._committer is None
        trail.record(encrypt_record(3))  # committed here
    finally:
        trail.stop()
    after = stored(runtime)
    assert [r["requestID"] for r in after[-2:]] == ["req-1", "req-3"] and verify_log(after).ok


def raw(committer: Committer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(committer.address)
    sock.settimeout(10)
    return sock


def dropped(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("frame", [
    HEADER.pack(connections.MAX_FRAME + 1),  # a length above the bound: nothing read past the header
    HEADER.pack(5) + b"\x80\x05junk",  # not a pickle
    HEADER.pack(len(pickle.dumps({"not": "a list"}))) + pickle.dumps({"not": "a list"}),
    HEADER.pack(len(pickle.dumps(["a record that is a string"]))) + pickle.dumps(["a record that is a string"]),
    HEADER.pack(len(pickle.dumps([]))) + pickle.dumps([]),
    HEADER.pack(len(pickle.dumps([{}] * 1025))) + pickle.dumps([{}] * 1025),  # above the records per frame
], ids=["too-large", "not-a-pickle", "not-a-list", "not-records", "empty", "too-many"])
def test_a_frame_that_breaks_the_protocol_drops_that_connection_only(runtime: Runtime, committer: Committer,
                                                                      frame: bytes) -> None:
    before = len(stored(runtime))
    client = committer.client()
    hostile = raw(committer)
    hostile.sendall(frame)
    assert dropped(hostile)
    client.commit([encrypt_record(1)])
    client.close()
    assert len(stored(runtime)) == before + 1


def test_a_peer_that_stops_mid_frame_is_dropped(runtime: Runtime, committer: Committer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_committer, "FRAME_SECONDS", 0.3)
    hostile = raw(committer)
    hostile.sendall(HEADER.pack(100) + b"\x80")  # then nothing more
    assert dropped(hostile)  # at FRAME_SECONDS; the socket's own 10 s timeout would fail the test
    client = committer.client()
    client.commit([encrypt_record(1)])
    client.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_another_user_is_refused(runtime: Runtime, committer: Committer) -> None:
    before = len(stored(runtime))
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        outcome = b"?"
        try:
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(committer.address)
            sock.settimeout(10)
            payload = pickle.dumps([encrypt_record(1)])
            sock.sendall(HEADER.pack(len(payload)) + payload)
            outcome = b"D" if dropped(sock) else b"A"
        except OSError:
            outcome = b"D"
        finally:
            os.write(write, outcome)
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"D"
    os.waitpid(child, 0)
    assert len(stored(runtime)) == before


# -- the event loop's own channel (decision 267) ------------------------------------------------------------------

async def _record_all(trail: AuditTrail, records_: list[dict[str, Any]]) -> list[BaseException | None]:
    """Each record from its own coroutine, all at once, as concurrent calls do; each one's outcome."""
    async def one(record: dict[str, Any]) -> BaseException | None:
        try:
            await trail.record_async(record)
            return None
        except AuditUnavailable as exc:
            return exc
    return list(await asyncio.gather(*(one(r) for r in records_)))


def _on_loop(trail: AuditTrail, address: bytes, work: Any) -> Any:
    """``work(channel)`` on a fresh event loop whose records go over a channel to ``address``."""
    async def main() -> Any:
        channel = await CommitterChannel.connect(address)
        trail.hand_loop_batches_to(channel)
        try:
            return await work(channel)
        finally:
            trail._channel = None
            channel.close()
            await asyncio.sleep(0)
    return asyncio.run(main())


def test_the_loop_hands_over_what_gathered_while_a_batch_was_in_flight(runtime: Runtime, committer: Committer) -> None:
    trail, before = runtime.audit, len(stored(runtime))
    trail.start()
    try:
        async def work(_: CommitterChannel) -> list[BaseException | None]:
            first = await _record_all(trail, [encrypt_record(i) for i in range(50)])
            return first + await _record_all(trail, [encrypt_record(100 + i) for i in range(50)])
        assert _on_loop(trail, committer.address, work) == [None] * 100
    finally:
        trail.stop()
    after = stored(runtime)
    assert sorted(r["requestID"] for r in after[before:]) == sorted(
        f"req-{i}" for i in [*range(50), *range(100, 150)]) and verify_log(after).ok
    # One batch went out at once; the rest gathered behind it: two batches per 50 calls, no thread between.
    assert trail.stats.records == 100 and trail.stats.batches == 4 and trail.stats.largest == 49


def test_the_loop_fails_a_refused_or_unpicklable_batch_closed_and_goes_on(runtime: Runtime,
                                                                          committer: Committer) -> None:
    trail = runtime.audit

    async def work(_: CommitterChannel) -> list[Any]:
        refused = await _record_all(trail, [{"eventName": "Encrypt", "x": float("nan")}])
        unpicklable = await _record_all(trail, [{**encrypt_record(1), "x": lambda: None}])
        return [refused[0], unpicklable[0], await _record_all(trail, [encrypt_record(2)])]
    refused, unpicklable, then = _on_loop(trail, committer.address, work)
    assert "ValueError" in str(refused) and "pickle" in str(unpicklable) and then == [None]
    assert trail.stats.failed_records == 2 and stored(runtime)[-1]["requestID"] == "req-2"


def test_when_the_committer_went_between_batches_the_process_commits_its_own_and_fails_nothing(
        runtime: Runtime, committer: Committer) -> None:
    trail = runtime.audit
    trail.hand_batches_to(committer.client())
    trail.start()
    try:
        async def work(_: CommitterChannel) -> list[Any]:
            first = await _record_all(trail, [encrypt_record(1)])
            committer.stop()  # closes every connection, as a killed process's end does
            await asyncio.sleep(0.1)
            gone = await _record_all(trail, [encrypt_record(2)])
            return [first, gone, trail.hands_batches_over, await _record_all(trail, [encrypt_record(3)])]
        first, gone, handing, then = _on_loop(trail, committer.address, work)
    finally:
        trail.stop()
    # Record 2 was never sent (the loop knew the committer was gone): committed here, like record 3.
    assert first == [None] and gone == [None] and then == [None]
    assert not handing and trail._committer is None  # the thread's connection was let go too
    after = stored(runtime)
    assert [r["requestID"] for r in after[-3:]] == ["req-1", "req-2", "req-3"] and verify_log(after).ok


class Peer:
    """A committer that is not one: it reads each frame and answers what the test says (or nothing)."""

    def __init__(self, answer: bytes | str | None) -> None:
        self.address = b"\0keyledger-audit-test-" + secrets.token_hex(8).encode()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        self.listener.listen(1)
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while connections.read_frame(conn) is not None:
                if self.answer == "close":
                    return  # as a committer killed mid-batch: the connection ends unanswered
                if self.answer is not None:
                    conn.sendall(self.answer)
            time.sleep(0.5)


@pytest.mark.parametrize("answer", [
    HEADER.pack(connections.MAX_ANSWER + 1),  # a length above the bound
    HEADER.pack(0) + HEADER.pack(0),  # an answer to no batch, after the one in flight
    None,  # no answer: ANSWER_SECONDS
    "close",  # gone with the batch in flight
], ids=["too-large", "unasked", "silent", "gone"])
def test_a_committer_that_breaks_the_protocol_fails_the_batch_closed(runtime: Runtime, answer: bytes | str | None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "ANSWER_SECONDS", 0.3)
    trail, before = runtime.audit, len(stored(runtime))
    trail.start()
    peer = Peer(answer)
    try:
        async def work(_: CommitterChannel) -> list[Any]:
            first = await _record_all(trail, [encrypt_record(1)])
            await asyncio.sleep(0.1)  # an unasked answer arrives here
            return [first, await _record_all(trail, [encrypt_record(2)])]
        first, then = _on_loop(trail, peer.address, work)
    finally:
        trail.stop()
        peer.listener.close()
    if isinstance(answer, bytes) and answer.startswith(HEADER.pack(0)):
        assert first == [None]  # that batch was answered; the unasked answer after it ends the channel
    else:
        assert isinstance(first[0], AuditUnavailable)
    assert then == [None] and not trail.hands_batches_over  # committed here, by the committer thread
    assert stored(runtime)[-1]["requestID"] == "req-2" and len(stored(runtime)) == before + 1


def test_records_from_another_loop_go_by_the_committer_thread(runtime: Runtime, committer: Committer) -> None:
    trail, before = runtime.audit, len(stored(runtime))
    trail.hand_batches_to(committer.client())
    trail.start()
    try:
        async def work(channel: CommitterChannel) -> list[Any]:
            elsewhere = await asyncio.to_thread(asyncio.run, _record_all(trail, [encrypt_record(1)]))
            return [elsewhere, await _record_all(trail, [encrypt_record(2)])]
        assert _on_loop(trail, committer.address, work) == [[None], [None]]
    finally:
        trail.stop()
    assert [r["requestID"] for r in stored(runtime)[before:]] == ["req-1", "req-2"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(records, min_size=1, max_size=12))
def test_what_the_loop_hands_over_is_what_is_stored(runtime: Runtime, committer: Committer,
                                                    batch: list[dict]) -> None:
    assume(runtime.settings.database_url is None or "\\u0000" not in json.dumps(batch))  # as above
    trail, before = runtime.audit, len(stored(runtime))

    async def work(_: CommitterChannel) -> list[BaseException | None]:
        return await _record_all(trail, batch)
    assert _on_loop(trail, committer.address, work) == [None] * len(batch)
    after = stored(runtime)
    assert verify_log(after).ok
    # Calls on one loop are handed over in the order they recorded: the first alone, the rest together after it.
    assert [content(r) for r in after[before:]] == [content(bound_record(r)) for r in batch]
