"""The CustomKeyStore aggregate's connection rules (AWS's CustomKeyStoreInvalidStateException cases) and that
its events replay to the same store; no secret is in any event."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import CustomKeyStoreInvalidStateError
from domain.identifiers import Scope
from domain.keystores.store import AWS_CLOUDHSM, CustomKeyStore, new_store_id

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def new_store() -> CustomKeyStore:
    return CustomKeyStore.create(store_id=new_store_id(), scope=Scope("111122223333", "us-east-1"), name="s",
                                 store_type=AWS_CLOUDHSM, at=AT,
                                 settings={"cluster_id": "cluster-2a3b4c5d6e7", "trust_anchor_certificate": "PEM"})


def test_life_cycle_and_refusals():
    store = new_store()
    assert store.describe()["ConnectionState"] == "DISCONNECTED"
    with pytest.raises(CustomKeyStoreInvalidStateError):
        store.disconnect(AT)
    assert store.request_connection(AT) is True
    assert store.connection_state == "CONNECTING"
    store.finish_connection("INVALID_CREDENTIALS", AT)
    assert store.describe()["ConnectionErrorCode"] == "INVALID_CREDENTIALS"
    with pytest.raises(CustomKeyStoreInvalidStateError):
        store.request_connection(AT)  # FAILED: disconnect first
    with pytest.raises(CustomKeyStoreInvalidStateError):
        store.rename("t", AT)
    store.disconnect(AT)
    assert "ConnectionErrorCode" not in store.describe()
    store.change_password(AT)
    store.request_connection(AT)
    store.finish_connection(None, AT)
    assert store.connected and store.request_connection(AT) is False  # connecting a connected store: nothing
    for refused in (lambda: store.delete(AT), lambda: store.change_password(AT),
                    lambda: store.change_settings({"cluster_id": "cluster-3a3b4c5d6e7"}, AT)):
        with pytest.raises(CustomKeyStoreInvalidStateError):
            refused()
    store.rename("t", AT)  # allowed while CONNECTED
    store.disconnect(AT)
    store.delete(AT)
    assert store.deleted


def test_a_finished_attempt_after_a_disconnect_changes_nothing():
    store = new_store()
    store.request_connection(AT)
    store.disconnect(AT)
    store.finish_connection(None, AT)
    assert store.connection_state == "DISCONNECTED"


@given(st.lists(st.sampled_from(["connect", "ok", "fail", "disconnect", "rename", "password"]), max_size=20))
def test_any_command_sequence_replays_to_the_same_store(commands):
    store = new_store()
    for command in commands:
        try:
            {"connect": lambda: store.request_connection(AT), "ok": lambda: store.finish_connection(None, AT),
             "fail": lambda: store.finish_connection("INTERNAL_ERROR", AT), "disconnect": lambda: store.disconnect(AT),
             "rename": lambda: store.rename(f"n{store.version}", AT), "password": lambda: store.change_password(AT)}[command]()
        except CustomKeyStoreInvalidStateError:
            pass
    events = store.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed is not None and replayed.describe() == store.describe()
    assert all("PEM" not in repr(e) or isinstance(e, CustomKeyStore.Created) for e in events)


def test_a_crash_while_connecting_is_finished_by_connecting_again():
    """ConnectionRequested committed, the process died before Connected/ConnectionFailed: the store stays CONNECTING
    (its keys Unavailable), cannot be deleted or reconfigured, and ConnectCustomKeyStore tries again."""
    store = new_store()
    assert store.request_connection(AT) is True
    replayed = None  # the stored events are all a restarted process has
    for event in store.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, CustomKeyStore) and replayed.connection_state == "CONNECTING"
    for refused in (lambda: replayed.delete(AT), lambda: replayed.change_password(AT)):
        with pytest.raises(CustomKeyStoreInvalidStateError):
            refused()
    assert replayed.request_connection(AT) is True and replayed.connection_state == "CONNECTING"
    assert replayed.collect_events() == []  # no second ConnectionRequested: the attempt is made again
    replayed.finish_connection(None, AT)
    assert replayed.describe()["ConnectionState"] == "CONNECTED"
