"""Runs a plan against a real server over a few keep-alive connections and gathers what came back.

A bounded pool (a handful of connections, like a busy client, not a flood) keeps the run short on two cores.
The first request that gets no answer within the client timeout stops the campaign: the server is stuck, and
every later request would only wait as long."""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.hostile.checks import error_type, problems
from tests.hostile.plan import Plan
from tests.hostile.raw_http import Connection
from tests.servers import Server

CONNECTIONS = 8
CLIENT_TIMEOUT = 60.0  # generous: it tells a stuck server from a slow one, it does not time anything
KEPT_FAILURES = 40


@dataclass
class Failure:
    index: int
    category: str
    note: str
    problems: list[str]
    answer: str

    def __str__(self) -> str:
        return f"#{self.index} [{self.category}] {self.note[:160]}: {'; '.join(self.problems)} <- {self.answer[:300]}"


@dataclass
class StormResult:
    plan: Plan
    sent: int = 0
    authentic: int = 0  # correctly signed by the administrator: each has an audit record of its own
    unauthenticated: int = 0
    statuses: Counter = field(default_factory=Counter)
    error_types: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    stopped: str | None = None  # why the campaign stopped early
    started: float = 0.0  # time.time() at the first and after the last request
    finished: float = 0.0

    def report(self) -> str:
        lines = [f"{self.plan.describe()}",
                 f"sent {self.sent}, {self.failure_count} failed; {self.authentic} authentic, "
                 f"{self.unauthenticated} not; statuses {dict(sorted(self.statuses.items()))}",
                 f"error types {dict(self.error_types.most_common(25))}"]
        if self.stopped:
            lines.append(f"STOPPED EARLY: {self.stopped}")
        lines += [str(failure) for failure in self.failures]
        if self.failure_count > len(self.failures):
            lines.append(f"... and {self.failure_count - len(self.failures)} more")
        return "\n".join(lines)


def run_storm(server: Server, plan: Plan, connections: int = CONNECTIONS,
              timeout: float = CLIENT_TIMEOUT) -> StormResult:
    result = StormResult(plan=plan, started=time.time())
    endpoint, host = server.endpoint, f"127.0.0.1:{server.port}".encode()
    lock, stop = threading.Lock(), threading.Event()
    next_index = iter(range(plan.count))
    connections_in_use: list[Connection] = []

    def worker() -> None:
        connection = Connection("127.0.0.1", server.port, timeout)
        with lock:
            connections_in_use.append(connection)
        try:
            while not stop.is_set():
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                request = plan.request(index)
                head, header_bytes = request.assemble(endpoint, host)
                answer = connection.exchange(head, request.body)
                found = problems(request, header_bytes, answer)
                with lock:
                    if stop.is_set() and answer.failure:
                        return  # cut short because another request found the server stuck: not its own failure
                    result.sent += 1
                    result.authentic += request.authentic
                    result.unauthenticated += not request.authentic
                    result.categories[request.category] += 1
                    result.statuses[str(answer.status or answer.failure)] += 1
                    kind = error_type(answer.document()) if answer.status and answer.status >= 400 else None
                    if kind:
                        result.error_types[kind] += 1
                    if found:
                        result.failure_count += 1
                        if len(result.failures) < KEPT_FAILURES:
                            result.failures.append(Failure(index, request.category, request.note, found,
                                                           answer.summary()))
                    if answer.failure == "timeout" and not result.stopped:
                        result.stopped = f"request #{index} ({request.note[:100]}) got no answer in {timeout} s"
                        stop.set()
                        for other in connections_in_use:
                            if other is not connection:
                                other.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, name=f"hostile-{n}", daemon=True) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.finished = time.time()
    return result
