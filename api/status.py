"""`keyledger status`: one look at an installation without changing it. Nothing is created: a SQLite
database that does not exist yet is reported as such, not made."""
from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from typing import Any

from infrastructure.leadership import background_holder
from infrastructure.settings import Settings


def _backend(settings: Settings) -> str:
    url = settings.resolved_database_url
    if url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        return f"PostgreSQL {make_url(url).render_as_string(hide_password=True)}"
    return f"SQLite {url.removeprefix('sqlite:///')}"


def _endpoint(settings: Settings) -> tuple[str, str]:
    scheme = "https" if settings.tls_cert else "http"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    endpoint = f"{scheme}://{host}:{settings.port}"
    context = ssl._create_unverified_context() if scheme == "https" else None  # only asks whether it answers
    try:
        with urllib.request.urlopen(endpoint + "/healthz/ready", timeout=2, context=context) as answer:
            return endpoint, f"answering ({answer.status} ready)"
    except urllib.error.HTTPError as answer:
        return endpoint, f"answering ({answer.code} not ready)"
    except (OSError, ValueError):
        return endpoint, "not answering"


def _initialized(settings: Settings) -> bool:
    """Whether a server has started on this database: looked at without creating the file or a table."""
    url = settings.resolved_database_url
    if not url.startswith("postgresql"):
        path = url.removeprefix("sqlite:///")
        return path.startswith(":memory:") or os.path.exists(path)
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        return bool(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def installation_status(settings: Settings) -> dict[str, Any]:
    endpoint, answering = _endpoint(settings)
    report: dict[str, Any] = {"endpoint": f"{endpoint} ({answering})", "backend": _backend(settings),
                              "data directory": str(settings.data_dir.resolve()) if settings.data_dir is not None
                              else "none (this node keeps nothing on its disk)",
                              "root key provider": settings.root_key_provider}
    if not _initialized(settings):
        report["initialized"] = False
        report["state"] = "no keyledger database yet (keyledger serve creates it on first start)"
        return report
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(settings)
    try:
        from application.audit.checkpoints import (
            audit_head,
            audit_records,
            stored_checkpoints,
        )

        report["sealed"] = f"yes: {runtime.sealed_reason}" if runtime.sealed_reason else "no"
        seq, _ = audit_head(runtime.ledger)
        last = next(iter(audit_records(runtime.ledger, after_seq=max(0, seq - 1))), None) if seq else None
        report["audit head"] = f"seq {seq}" + (f" at {last.get('eventTime')}" if last else "")
        checkpoints = stored_checkpoints(runtime.ledger)
        if checkpoints:
            newest = checkpoints[-1]
            report["newest checkpoint"] = (f"seq {newest.seq} at {newest.time} ({seq - newest.seq} records after it "
                                           "not yet covered by a signature)")
        else:
            report["newest checkpoint"] = "none yet"
        engine = runtime.ledger.recorder.datastore.engine  # type: ignore[attr-defined]
        report["background work"] = background_holder(settings, engine)
    finally:
        runtime.close()
    return report
