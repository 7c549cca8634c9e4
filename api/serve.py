"""Building the server process: the app with its background passes, in one process or in each of
``KEYLEDGER_WORKERS`` uvicorn worker processes sharing the listening socket and the database."""
from __future__ import annotations

import logging

from api.http import KmsEndpoint, create_app
from infrastructure.audit_committer_launch import connect_audit_committer
from infrastructure.bootstrap import Runtime, build_runtime, start_serving
from infrastructure.leadership import background_leadership, only_leader
from infrastructure.scheduler import Periodic
from infrastructure.settings import Settings


def background_passes(runtime: Runtime) -> list[Periodic]:
    """The passes every server process runs. Those that write for the whole deployment (maintenance, checkpoint
    signing, the key-usage index) do their work only in the elected process (infrastructure/leadership.py); the
    others keep their own checkpoint file, if they have one, in step with the database."""
    log = logging.getLogger("keyledger.background")
    # Every process aggregates its own failed-authentication records, sealed or not: each writes its summaries.
    summaries = Periodic("keyledger-unauthenticated-summaries", runtime.flush_unauthenticated,
                         min(1.0, runtime.settings.audit_unauthenticated_window_seconds),
                         lambda exc: log.exception("the failed-authentication summary could not be written",
                                                   exc_info=exc))
    if runtime.services is None:
        return [summaries]
    settings, services = runtime.settings, runtime.services
    leadership = runtime.leadership = background_leadership(settings)
    checkpointer = services.checkpointer

    def checkpoints() -> None:
        if leadership.held():
            checkpointer.checkpoint_if_due()
        else:
            checkpointer.sync_file()  # what the leader signed, appended to this node's own file (if it keeps one)

    return [
        summaries,
        Periodic("keyledger-maintenance", only_leader(leadership, services.maintenance.run_once),
                 settings.maintenance_interval, lambda exc: log.exception("maintenance pass failed", exc_info=exc)),
        Periodic("keyledger-checkpoints", checkpoints, min(1.0, settings.audit_checkpoint_seconds),
                 lambda exc: log.exception("audit checkpoint failed", exc_info=exc)),
        # GetKeyLastUsage catches the index up itself; this keeps what a call has to catch up small.
        *([Periodic("keyledger-key-usage", only_leader(leadership, services.last_usage.catch_up),
                    settings.maintenance_interval, lambda exc: log.exception("key usage index pass failed", exc_info=exc))]
          if services.last_usage is not None else []),
        *([Periodic("keyledger-audit-index-statistics", only_leader(leadership, runtime.audit_index.refresh_statistics),
                    settings.maintenance_interval, lambda exc: log.exception("audit index statistics failed", exc_info=exc))]
          if runtime.audit_index is not None else []),
    ]


def worker_app() -> KmsEndpoint:
    """uvicorn's app factory in each worker process (``KEYLEDGER_WORKERS`` > 1). Settings come from the
    environment, which `keyledger serve` completed with its flags before starting the workers; first-start
    work (root key, administrator key) was done once, by `keyledger serve`, before any worker started."""
    runtime = build_runtime(Settings.load())
    start_serving(runtime)
    connect_audit_committer(runtime)  # the one `keyledger serve` started, if it did
    return create_app(runtime, background_passes(runtime), whole_process=True)
