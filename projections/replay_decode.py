"""Replay's event decoder: the mapper's answer, with less work where that is exact (decisions 245, 260).

Replay decodes every key, alias and principal event of the log, and under the profiler decoding was half its time.
The tag check is the mapper's check (``AuthenticatedMapper.checked_payload``) and the decompression the mapper's
compressor. What is left out is the library's generic work around them: a second ``StoredEvent`` per event, the
JSON object hook called on every object of the state, the topic resolved per event. The tag is computed by an HMAC
keyed and fed the aggregate id once per aggregate and topic (``event_tagger``), not once per event: the same message,
byte for byte, so the same verdict; a row whose tag is missing or does not match goes to the mapper, which raises.

The state is read with plain ``json.loads`` only when that gives exactly what the transcoder's hook gives, as
`verify` does for records (decision 182):
- ``"_type_"`` occurs once in the state and no ``\\u`` escape could spell it another time, so the hook would
  have changed one object only;
- that object is the ``timestamp``, of exactly the two keys ``_type_: "datetime_iso"`` and a string ``_data_``,
  and the transcoder's ``datetime_iso`` is the library's own (``datetime.fromisoformat``).
Everything else (another typed value, a cipher, an event class with a ``class_version``, any error) is decoded
by the mapper itself, which also raises the same errors as before for a damaged or forged row."""
from __future__ import annotations

import hmac
import json
from datetime import datetime
from typing import Any

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, find_id_convertor
from eventsourcing.utils import resolve_topic

from application.ledger import CHAIN_COVERED_TOPICS, AuthenticatedMapper
from domain.audit.seals import TAG_BYTES, TAG_MARK, event_tagger
from projections.ledger_events import stored_uuid

_TYPE = b'"_type_"'
_SCAN = json.JSONDecoder().scan_once
_TAGGED_SUFFIX = TAG_BYTES + len(TAG_MARK)


class ReplayDecoder:
    def __init__(self, mapper: Any) -> None:
        self._mapper = mapper
        transcoder = getattr(mapper, "transcoder", None)
        self._fast = (isinstance(mapper, AuthenticatedMapper)
                      and type(mapper).checked_payload is AuthenticatedMapper.checked_payload
                      and type(mapper).to_domain_event is AuthenticatedMapper.to_domain_event
                      and getattr(mapper, "cipher", None) is None
                      and isinstance(transcoder, JSONTranscoder) and type(transcoder).decode is JSONTranscoder.decode
                      and type(transcoder.names.get("datetime_iso")) is DatetimeAsISO)
        self._key = getattr(mapper, "row_key", None)
        compressor = getattr(mapper, "compressor", None)
        self._decompress = compressor.decompress if compressor is not None else None
        self._classes: dict[str, Any] = {}  # topic -> event class, or None: always through the mapper
        # (aggregate id as stored, topic) -> (class, its tag function, the id as the event holds it), or None
        self._runs: dict[tuple[Any, str], Any] = {}
        self.fast = 0  # events decoded here, not by the mapper (for tests and the bench)

    def _class(self, topic: str) -> Any:
        try:
            return self._classes[topic]
        except KeyError:
            cls = None
            if topic not in CHAIN_COVERED_TOPICS:
                try:
                    found = resolve_topic(topic)
                    if getattr(found, "class_version", 1) == 1:
                        cls = found
                except Exception:  # an unknown topic: the mapper says so
                    cls = None
            self._classes[topic] = cls
            return cls

    def _run(self, aggregate: Any, topic: str) -> Any:
        cls = self._class(topic) if self._fast else None
        run = None
        if cls is not None:
            try:
                originator_id = stored_uuid(aggregate)
                tagger = event_tagger(self._key, originator_id, topic) if self._key is not None else None
                run = (cls, tagger, find_id_convertor(cls, type(originator_id))(originator_id))
            except Exception:  # the mapper decides
                run = None
        self._runs[aggregate, topic] = run
        return run

    def event(self, notification: Any) -> Any:
        """The event of a stored event or notification, as ``mapper.to_domain_event`` gives it."""
        event = self.decoded(notification.originator_id, notification.originator_version, notification.topic,
                             notification.state)
        return event if event is not None else self._mapper.to_domain_event(notification)

    def decoded(self, aggregate: Any, version: int, topic: str, state: bytes) -> Any:
        """The event of a stored row (``aggregate`` as the driver returned it), or None where only the mapper knows
        it: the caller then asks ``event``, which decodes it, or raises, as before."""
        try:
            run = self._runs[aggregate, topic]
        except KeyError:
            run = self._run(aggregate, topic)
        if run is None:
            return None
        try:
            cls, tagger, originator_id = run
            # AuthenticatedMapper.checked_payload (split_tagged, then the tag compared), with the fixed fields
            # encoded once: a missing or different tag goes to the mapper, which raises LedgerTagError.
            if len(state) >= _TAGGED_SUFFIX and state.endswith(TAG_MARK):
                payload, tag = state[:-_TAGGED_SUFFIX], state[-_TAGGED_SUFFIX:-len(TAG_MARK)]
            else:
                payload, tag = state, None
            if tagger is not None and (tag is None or not hmac.compare_digest(tag, tagger(version, payload))):
                return None
            if self._decompress is not None:
                payload = self._decompress(payload)
            if payload.count(_TYPE) != 1 or b"\\u" in payload:
                return None
            # The decoder's scanner from the first character: what ``json.loads`` returns for a state that is one
            # JSON value with no surrounding space (as the library writes it); anything else goes to the mapper.
            text = payload.decode("utf8")
            values, end = _SCAN(text, 0)
            if end != len(text):
                return None
            stamp = values.get("timestamp") if isinstance(values, dict) else None
            if (not isinstance(stamp, dict) or len(stamp) != 2 or stamp.get("_type_") != "datetime_iso"
                    or not isinstance(stamp.get("_data_"), str) or "class_version" in values):
                return None
            values["timestamp"] = datetime.fromisoformat(stamp["_data_"])
        except Exception:
            return None
        values["originator_id"] = originator_id
        values["originator_version"] = version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", values)
        self.fast += 1
        return event
