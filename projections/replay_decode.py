"""Replay's event decoder: the mapper's answer, with less work where that is exact (decision 245).

Replay decodes every key, alias and principal event of the log, and under the profiler decoding was half its time.
The tag check and the decompression stay exactly the mapper's (``AuthenticatedMapper.checked_payload``, the
mapper's compressor). What is left out is the library's generic work around them: a second ``StoredEvent`` per
event, the JSON object hook called on every object of the state, the topic resolved per event.

The state is read with plain ``json.loads`` only when that gives exactly what the transcoder's hook gives, as
`verify` does for records (decision 182):
- ``"_type_"`` occurs once in the state and no ``\\u`` escape could spell it another time, so the hook would
  have changed one object only;
- that object is the ``timestamp``, of exactly the two keys ``_type_: "datetime_iso"`` and a string ``_data_``,
  and the transcoder's ``datetime_iso`` is the library's own (``datetime.fromisoformat``).
Everything else (another typed value, a cipher, an event class with a ``class_version``, any error) is decoded
by the mapper itself, which also raises the same errors as before for a damaged or forged row."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, find_id_convertor
from eventsourcing.utils import resolve_topic

from application.ledger import CHAIN_COVERED_TOPICS

_TYPE = b'"_type_"'
_DECODER = json.JSONDecoder()


class ReplayDecoder:
    def __init__(self, mapper: Any) -> None:
        self._mapper = mapper
        transcoder = getattr(mapper, "transcoder", None)
        self._fast = (hasattr(mapper, "checked_payload") and getattr(mapper, "cipher", None) is None
                      and isinstance(transcoder, JSONTranscoder) and type(transcoder).decode is JSONTranscoder.decode
                      and type(transcoder.names.get("datetime_iso")) is DatetimeAsISO)
        self._classes: dict[str, Any] = {}  # topic -> event class, or None: always through the mapper
        self._convertors: dict[tuple[Any, type], Any] = {}  # the library's, looked up once per class
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

    def event(self, notification: Any) -> Any:
        cls = self._class(notification.topic) if self._fast else None
        if cls is not None:
            try:
                event = self._decoded(cls, notification)
            except Exception:
                event = None
            if event is not None:
                self.fast += 1
                return event
        return self._mapper.to_domain_event(notification)

    def _decoded(self, cls: Any, notification: Any) -> Any:
        """The event, or None where only the mapper knows it (it then decodes it, or raises, as before)."""
        mapper = self._mapper
        state = mapper.checked_payload(notification)
        if mapper.compressor is not None:
            state = mapper.compressor.decompress(state)
        if state.count(_TYPE) != 1 or b"\\u" in state:
            return None
        values = _DECODER.decode(state.decode("utf8"))
        stamp = values.get("timestamp") if isinstance(values, dict) else None
        if (not isinstance(stamp, dict) or len(stamp) != 2 or stamp.get("_type_") != "datetime_iso"
                or not isinstance(stamp.get("_data_"), str) or "class_version" in values):
            return None
        values["timestamp"] = datetime.fromisoformat(stamp["_data_"])
        convert = self._convertors.get((cls, type(notification.originator_id)))
        if convert is None:
            convert = self._convertors[cls, type(notification.originator_id)] = find_id_convertor(
                cls, type(notification.originator_id))
        values["originator_id"] = convert(notification.originator_id)
        values["originator_version"] = notification.originator_version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", values)
        return event
