"""Proving rebuilt projection tables equal the live ones, row by row (a merge join in primary-key order), or
equal the point-in-time answers for a past moment: the differences, as sentences a person can act on."""
from __future__ import annotations

import json
import math
from typing import Any, Iterator

import sqlalchemy as sa

from domain.audit.seals import RowSeal
from domain.identifiers import key_storage_id
from projections.replay_tables import DEFAULT_PREFIX, PRIMARY_KEYS, prefixed_tables

PAGE = 1000


def _ordered(engine: sa.Engine, table: sa.Table, pk: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    # Merge-joining needs both sides in Python's string order: PostgreSQL's default collation is not
    # bytewise (it may ignore '-'), "C" is.
    pg = engine.dialect.name == "postgresql"
    order = [sa.collate(table.c[c], "C") if pg and isinstance(table.c[c].type, sa.String) else table.c[c] for c in pk]
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=PAGE).execute(sa.select(table).order_by(*order))
        for row in result:
            yield dict(row._mapping)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _row_differences(where: str, live: dict[str, Any], rebuilt: dict[str, Any]) -> Iterator[str]:
    for column in live:
        a, b = live[column], rebuilt.get(column)
        if column == RowSeal.COLUMN and b is None:
            continue  # rebuilt without the row key (a sealed service, an auditor's copy): tags not compared
        if column == "metadata_json":
            ma, mb = json.loads(a), json.loads(b)
            for field_name in sorted(ma.keys() | mb.keys()):
                if not _same(ma.get(field_name), mb.get(field_name)):
                    yield f"{where} metadata {field_name}: live {ma.get(field_name)!r}, rebuilt {mb.get(field_name)!r}"
        elif not _same(a, b):
            yield f"{where} {column}: live {a!r}, rebuilt {b!r}"


def compare(engine: sa.Engine, live_prefix: str = "", rebuilt_prefix: str = DEFAULT_PREFIX,
            rebuilt_engine: sa.Engine | None = None, limit: int = 1000) -> list[str]:
    """Human-readable differences between two sets of projection tables; empty when they are equal."""
    _, live_tables = prefixed_tables(live_prefix)
    _, rebuilt_tables = prefixed_tables(rebuilt_prefix)
    out: list[str] = []
    for name, pk in PRIMARY_KEYS.items():
        live = _ordered(engine, live_tables[name], pk)
        rebuilt = _ordered(rebuilt_engine or engine, rebuilt_tables[name], pk)
        a, b = next(live, None), next(rebuilt, None)
        while a is not None or b is not None:
            ka = tuple(a[c] for c in pk) if a is not None else None
            kb = tuple(b[c] for c in pk) if b is not None else None
            where = f"{name}[{', '.join(map(str, ka or kb or ()))}]"
            if kb is None or (ka is not None and ka < kb):
                out.append(f"{name}[{', '.join(map(str, ka or ()))}] is only in the live table")
                a = next(live, None)
            elif ka is None or kb < ka:
                out.append(f"{name}[{', '.join(map(str, kb))}] is only in the rebuilt table")
                b = next(rebuilt, None)
            else:
                out.extend(_row_differences(where, a, b))
                a, b = next(live, None), next(rebuilt, None)
            if len(out) >= limit:
                return out[:limit] + [f"... stopped after {limit} differences"]
    return out


def differences_from_answers(engine: sa.Engine, answers: list[dict[str, Any]], prefix: str = "") -> list[str]:
    """Rebuilt tables against point-in-time answers (PointInTime.keys_at) for the same moment: the log
    replay and ``repository.get(id, version)`` are two derivations that must agree."""
    from projections.key_state_view import ABSENT_MATERIALS, encode_metadata

    _, t = prefixed_tables(prefix)
    with engine.connect() as conn:
        rows = {r.storage_id: r for r in conn.execute(sa.select(t["key_state"]))}
        aliases = {(r.account_id, r.region, r.alias_name): r.target_key_id for r in conn.execute(sa.select(t["key_aliases"]))}
    out, expected_aliases = [], {}
    for answer in answers:
        meta = answer["KeyMetadata"]
        public_id, region = meta["KeyId"], meta["Arn"].split(":")[3]
        key_id = key_storage_id(public_id, region)  # related multi-Region keys share their public id
        expected_aliases.update({(meta["AWSAccountId"], region, name): public_id for name in answer["Aliases"]})
        row = rows.pop(key_id, None)
        if meta["KeyState"] == "Deleted":
            if row is not None:
                out.append(f"key_state[{key_id}] is present but the key was deleted")
            continue
        if row is None:
            out.append(f"key_state[{key_id}] is missing")
        elif not _same(json.loads(encode_metadata(meta)),
                       {k: v for k, v in json.loads(row.metadata_json).items() if k != ABSENT_MATERIALS}):
            out.append(f"key_state[{key_id}] metadata differs from the point-in-time answer")
    out += [f"key_state[{key_id}] has no point-in-time answer" for key_id in rows]
    for where in sorted(aliases.keys() | expected_aliases.keys()):
        if aliases.get(where) != expected_aliases.get(where):
            out.append(f"key_aliases[{', '.join(where)}]: rebuilt {aliases.get(where)}, point in time {expected_aliases.get(where)}")
    return out
