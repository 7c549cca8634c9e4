"""The SQLite writer gate (infrastructure/storage.py): writers queue in the kernel and go the moment the
one before them has let go, across threads and processes, and one unit of work releases it when it ends."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from infrastructure.storage import SqlUnitOfWork, WriterGate, writer_gate_for


def test_a_second_writer_waits_for_the_first_and_goes_when_it_lets_go(tmp_path: Path) -> None:
    gate = WriterGate(str(tmp_path / "db.writers"))
    order: list[str] = []
    gate.acquire()
    waiter = threading.Thread(target=lambda: (gate.acquire(), order.append("second"), gate.release()))
    waiter.start()
    time.sleep(0.2)
    order.append("first")
    gate.release()
    waiter.join(timeout=5)
    assert order == ["first", "second"]


def test_another_process_waits_too(tmp_path: Path) -> None:
    path = str(tmp_path / "db.writers")
    released = tmp_path / "released"  # made just before we let go: the child may get in only after it exists
    gate = WriterGate(path)
    gate.acquire()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from infrastructure.storage import WriterGate
        gate = WriterGate({path!r})
        print("waiting", flush=True)
        gate.acquire()
        print("in after release" if os.path.exists({str(released)!r}) else "in while held", flush=True)
    """)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "waiting"
    time.sleep(0.3)  # give it the chance to get in wrongly
    released.touch()
    gate.release()
    assert child.communicate(timeout=30)[0].strip() == "in after release"


def test_a_unit_of_work_holds_the_gate_until_its_transaction_has_ended(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'k.db'}")
    gate = writer_gate_for(engine)
    assert gate is not None and writer_gate_for(sa.create_engine("sqlite://")) is None

    class Datastore:  # the eventsourcing datastore's transaction(), over a plain SQLAlchemy session
        def transaction(self, commit: bool):
            from sqlalchemy.orm import Session

            class Tx:
                def __enter__(self):
                    self.session = Session(engine)
                    return self.session

                def __exit__(self, kind, *_):
                    (self.session.commit if commit and kind is None else self.session.rollback)()
                    self.session.close()
            return Tx()

    uow = SqlUnitOfWork(Datastore(), gate=gate)
    other = WriterGate(str(tmp_path / "k.db.writers"))  # what another writer would take
    got: list[float] = []
    with uow.transaction() as tx:
        uow.lock_writers(tx)
        tx.execute(sa.text("CREATE TABLE t (x)"))
        waiter = threading.Thread(target=lambda: (other.acquire(), got.append(time.monotonic()), other.release()))
        waiter.start()
        time.sleep(0.2)
        assert not got  # still inside the transaction: the other writer waits
    waiter.join(timeout=5)
    assert got  # the transaction ended and let the gate go
