"""Archive segment files (docs/audit.md, "Retention: archived segments"; domain/audit/segments.py).

A file is one line of JSON, the signed manifest, then a gzip stream (``tail -n +2 FILE | zcat`` reads it) of JSON
lines, one per stored row: ``{"p": store position, "v": version, "t": topic, "s": state}``, the state as text
when it is UTF-8 (it is JSON, so gzip shrinks it well) else ``"b"``, base64. The rows are the audit log's, exactly
as stored, so reading them back gives the bytes the event store held. Files are written to a temporary name,
fsynced, then renamed, and the directory fsynced: a crash leaves the old state or the whole file.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import uuid
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Iterable, Iterator

from domain.audit.log import AUDIT_LOG_ID

SUFFIX = ".seg"
COMPRESSION = 6
MAX_MANIFEST_BYTES = 8192


class SegmentError(ValueError):
    """A segment file that cannot be read as one (the message names the file)."""


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"audit-{first_seq:012d}-{last_seq:012d}{SUFFIX}"


class RowEncoder:
    """The gzip body of rows (position, version, topic, state), a row at a time. Deterministic (no timestamp in the
    gzip header), so the same rows always give the same body and a resumed archive can compare bodies."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._out = gzip.GzipFile(fileobj=self._buffer, mode="wb", compresslevel=COMPRESSION, mtime=0)
        self._lines: list[str] = []
        self._topics: dict[str, str] = {}

    def add(self, row: tuple[int, int, str, bytes]) -> None:
        position, version, topic, state = row
        quoted = self._topics.get(topic) or self._topics.setdefault(topic, encode_basestring(topic))
        try:  # the JSON string of the state, by the encoder's C escaper (a third of json.dumps's cost here)
            field = f'"s":{encode_basestring(state.decode("utf-8"))}'
        except UnicodeDecodeError:
            field = f'"b":"{base64.b64encode(state).decode("ascii")}"'
        self._lines.append(f'{{"p":{int(position)},"v":{int(version)},"t":{quoted},{field}}}\n')
        if len(self._lines) == 1000:
            self._flush()

    def _flush(self) -> None:
        self._out.write("".join(self._lines).encode("utf-8"))
        self._lines.clear()

    def finish(self) -> bytes:
        self._flush()
        self._out.close()
        return self._buffer.getvalue()


def encode_rows(rows: Iterable[tuple[int, int, str, bytes]]) -> bytes:
    encoder = RowEncoder()
    for row in rows:
        encoder.add(row)
    return encoder.finish()


def write_segment(directory: Path, manifest: dict[str, Any], body: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(manifest["first_seq"], manifest["last_seq"])
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(descriptor, "wb") as f:
        f.write(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n")
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def read_manifest(path: Path) -> tuple[dict[str, Any], int]:
    """The manifest of a segment file and the offset where its body starts."""
    try:
        with path.open("rb") as f:
            line = f.readline(MAX_MANIFEST_BYTES)
    except OSError as exc:
        raise SegmentError(f"{path.name} cannot be read: {exc.strerror}") from None
    try:
        manifest = json.loads(line)
    except ValueError:
        manifest = None
    if not line.endswith(b"\n") or not isinstance(manifest, dict):
        raise SegmentError(f"{path.name} is not a keyledger audit segment (no manifest line)")
    return manifest, len(line)


def read_body(path: Path, manifest: dict[str, Any], offset: int) -> bytes:
    """The compressed body, checked against the manifest's digest."""
    with path.open("rb") as f:
        f.seek(offset)
        body = f.read()
    if len(body) != manifest.get("body_bytes") or hashlib.sha256(body).hexdigest() != manifest.get("body_sha256"):
        raise SegmentError(f"{path.name} was altered: its records are not the ones its manifest signed")
    return body


def body_rows(name: str, body: bytes) -> Iterator[tuple[int, uuid.UUID, int, str, bytes]]:
    """The rows of a checked body as the event store held them (application/audit/ledger_rows.py StoredRow)."""
    try:
        for line in gzip.GzipFile(fileobj=io.BytesIO(body)):
            row = json.loads(line)
            state = row["s"].encode("utf-8") if "s" in row else base64.b64decode(row["b"], validate=True)
            yield row["p"], AUDIT_LOG_ID, row["v"], row["t"], state
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SegmentError(f"{name} has a damaged body ({type(exc).__name__})") from None


def segment_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise SegmentError(f"the segment directory {directory} does not exist")
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file())


class SegmentDirectory:
    """``SegmentFiles`` of application/audit/archive.py: where `keyledger audit archive` writes."""

    def encoder(self) -> RowEncoder:
        return RowEncoder()

    def write(self, directory: Path, manifest: dict[str, Any], body: bytes) -> Path:
        return write_segment(directory, manifest, body)

    def set_aside(self, path: Path) -> Path:
        """Renamed so that no reader takes it for a segment (``.seg`` files only); kept for the operator."""
        target = path.with_name(path.name + ".set-aside")
        os.replace(path, target)
        return target

    def orphan(self, directory: Path, first_seq: int) -> tuple[Path, dict[str, Any]] | None:
        """A segment an interrupted run wrote for records from ``first_seq`` (the first not archived)."""
        if not directory.is_dir():
            return None
        for path in sorted(directory.glob(f"audit-{first_seq:012d}-*{SUFFIX}")):
            try:
                return path, read_manifest(path)[0]
            except SegmentError:
                continue
        return None


def load_segments(directory: Path, public_key: bytes | None) -> list[tuple[str, dict[str, Any], bytes]]:
    """Every segment in ``directory`` (name, manifest, checked body), in seq order, each checked on its own
    (manifest, signature, body digest); raises SegmentError naming the first that is not sound."""
    from domain.audit.segments import manifest_problem

    loaded = []
    for path in segment_files(directory):
        manifest, offset = read_manifest(path)
        problem = manifest_problem(manifest, public_key)
        if problem is not None:
            raise SegmentError(f"{path.name} {problem}")
        loaded.append((path.name, manifest, read_body(path, manifest, offset)))
    return sorted(loaded, key=lambda s: (s[1]["first_seq"], s[1]["last_seq"]))
