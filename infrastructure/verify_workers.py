"""`keyledger audit verify` on several cores: the ledger's parts (application/audit/verify_parts.py,
``ledger_parts``) proved at once, one per process (docs/audit.md, "Verify in parts"; decision 251).

The command's process proves the first part itself and forks one process for each other part. Forking is done
only here, from the command-line tool, never inside a running server (a server has threads whose locks a child
could inherit held; decision 242). The database engine is disposed before the fork, so no connection is shared:
each process opens its own. A part's answer comes back through a pipe as its small result; a process that fails or
dies gives no answer, and the caller then verifies in one pass, as it would have without parts.
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
from typing import Any, Callable, Sequence

from application.audit.ledger_verify import LedgerVerifyResult
from application.audit.verify_parts import LedgerPart, verify_part

log = logging.getLogger("keyledger.verify")


def verify_parts(ledger: Any, parts: Sequence[LedgerPart], public_key_raw32: bytes | None,
                 rows_for: Callable[[], Any], progress: Callable[[int], None] | None = None
                 ) -> list[LedgerVerifyResult] | None:
    """Every part's result, in order; None if a process failed (the caller verifies in one pass). ``rows_for``
    makes a part's row reader in the process that reads (after the fork). ``progress``: records done so far."""
    context = multiprocessing.get_context("fork")
    done = context.Array("q", len(parts), lock=False)  # records proved per part, for the progress bar

    def reporter(index: int) -> Callable[[int], None]:
        base = parts[index].after.seq if parts[index].after is not None else 0

        def report(seq: int) -> None:
            done[index] = seq - base
            if progress is not None and index == 0:  # the parent's part: it is the one that can draw
                progress(sum(done))
        return report

    ledger.recorder.datastore.engine.dispose()  # no connection crosses the fork; each process opens its own
    # As replay does (decision 261): objects so far out of the collector's reach while the parts run, so that no
    # collection writes into the pages the fork shares and copies them.
    gc.freeze()
    try:
        return _run(ledger, parts, public_key_raw32, rows_for, progress, context, done, reporter)
    finally:
        gc.unfreeze()


def _run(ledger: Any, parts: Sequence[LedgerPart], public_key_raw32: bytes | None, rows_for: Callable[[], Any],
         progress: Callable[[int], None] | None, context: Any, done: Any,
         reporter: Callable[[int], Callable[[int], None]]) -> list[LedgerVerifyResult] | None:
    children = []
    for index in range(1, len(parts)):
        receiving, sending = context.Pipe(duplex=False)
        child = context.Process(target=_prove, args=(ledger, parts[index], public_key_raw32, rows_for,
                                                     reporter(index), sending), daemon=True)
        child.start()
        sending.close()
        children.append((child, receiving))
    results: list[LedgerVerifyResult] = []
    try:
        results.append(verify_part(ledger, parts[0], public_key_raw32, rows_for(), reporter(0)))
        for child, receiving in children:
            answer = _answer(child, receiving)
            if not isinstance(answer, LedgerVerifyResult):
                log.warning("a verify process gave no result (%s); verifying in one pass", answer)
                return None
            results.append(answer)
            if progress is not None:
                progress(sum(done))
        return results
    finally:
        for child, receiving in children:
            receiving.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()


def _answer(child: Any, receiving: Any) -> Any:
    """What the part's process sent; None if it died without sending."""
    while not receiving.poll(0.5):
        if not child.is_alive() and not receiving.poll(0):
            return None
    try:
        return receiving.recv()
    except (EOFError, OSError):  # it closed the pipe without answering
        return None


def _prove(ledger: Any, part: LedgerPart, public_key_raw32: bytes | None, rows_for: Callable[[], Any],
           progress: Callable[[int], None], answer: Any) -> None:
    try:
        result: Any = verify_part(ledger, part, public_key_raw32, rows_for(), progress)
    except Exception as error:  # the one pass will meet it again and report it as it does
        result = f"{type(error).__name__}: {error}"
    answer.send(result)
    answer.close()
    ledger.recorder.datastore.engine.dispose()  # this process's own connections, closed as a client should
