"""Events stored before domain/ was grouped into packages still load: their old topics resolve."""
from eventsourcing.utils import resolve_topic

from application.history.point_in_time import KEY_TOPICS
from application.ledger import KeyLedger
from domain.audit.log import AuditLog
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.principals.principal import Principal


def test_old_topics_resolve_to_the_moved_classes() -> None:
    KeyLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    assert resolve_topic("domain.key:Key.Created") is Key.Created
    assert resolve_topic("domain.key:Key") is Key
    assert resolve_topic("domain.alias:Alias") is Alias
    assert resolve_topic("domain.principal:Principal") is Principal
    assert resolve_topic("domain.audit_log:AuditLog.RecordAppended") is AuditLog.RecordAppended


def test_history_reads_events_under_both_names() -> None:
    assert "domain.key:Key.Created" in KEY_TOPICS and "domain.keys.key:Key.Created" in KEY_TOPICS
