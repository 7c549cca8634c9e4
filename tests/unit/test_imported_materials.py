"""The Key aggregate's imported materials (decision 89): histories stored with the one-material events still load
and take the new commands; snapshots taken before the change read right; and, for any sequence of imports,
rotations, deletions and expiries, the key's invariants hold (Hypothesis)."""
from __future__ import annotations

import os
from datetime import timedelta

from eventsourcing.application import Application
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import KmsError
from domain.keys.import_events import (
    CURRENT,
    KEY_MATERIAL_DOES_NOT_EXPIRE,
    KEY_MATERIAL_EXPIRES,
    PENDING_ROTATION,
)
from domain.keys.key import Key
from domain.keys.material import Material, key_material_id, new_material_id
from domain.keys.states import KeyState
from tests.unit.test_domain_key import T0, at, new_key


def _old_import(key: Key, secret: bytes, step: int) -> str:
    """What ImportKeyMaterial stored before decision 89: MaterialImported, no import type, no description."""
    material = Material(new_material_id(), secret)
    key.trigger_event(Key.MaterialImported, timestamp=at(step), material_id=material.material_id,
                      commitment=material.commitment(key.key_id), import_id="0" * 32, valid_to=None,
                      expiration_model=KEY_MATERIAL_DOES_NOT_EXPIRE)
    return material.material_id


def test_a_history_of_one_material_events_still_loads_and_takes_new_commands():
    key, _ = new_key(origin="EXTERNAL")
    secret = os.urandom(32)
    material_id = _old_import(key, secret, 1)
    key.trigger_event(Key.ImportedMaterialDeleted, timestamp=at(2))
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(key)
    loaded = app.repository.get(key.id)
    assert loaded.key_state is KeyState.PENDING_IMPORT
    assert loaded.designated_material_id == material_id
    # Re-import (EXISTING by default) of the same material through today's command.
    assert loaded.import_material(Material(new_material_id(), secret), "1" * 32, None, KEY_MATERIAL_DOES_NOT_EXPIRE,
                                  at(3)) == material_id
    assert loaded.key_state is KeyState.ENABLED and loaded.current_material_id == material_id
    app.save(loaded)
    assert app.repository.get(key.id).current_material_id == material_id


def test_a_snapshot_from_before_keeps_its_current_material():
    """Snapshots taken before decision 89 have no lost_current_material_id: the only imported material is it."""
    key, _ = new_key(origin="EXTERNAL")
    material_id = _old_import(key, os.urandom(32), 1)
    key.trigger_event(Key.ImportedMaterialDeleted, timestamp=at(2))
    del key.__dict__["lost_current_material_id"]
    assert key.designated_material_id == material_id
    assert key.material_state(key.material(material_id)) == CURRENT


OPERATIONS = st.lists(st.sampled_from(["new", "again", "rotate", "delete-current", "delete-other", "expire"]),
                      max_size=14)


@settings(max_examples=60, deadline=None)
@given(OPERATIONS)
def test_materials_keep_their_invariants(operations):
    key, _ = new_key(origin="EXTERNAL")
    secrets: list[bytes] = []
    step = 0
    for operation in operations:
        step += 1
        now = at(step)
        try:
            if operation == "new":
                secret = os.urandom(32)
                model, valid_to = ((KEY_MATERIAL_EXPIRES, now + timedelta(minutes=3)) if step % 3 == 0
                                   else (KEY_MATERIAL_DOES_NOT_EXPIRE, None))
                key.import_material(Material(new_material_id(), secret), "i" * 32, valid_to, model, now,
                                    import_type="NEW_KEY_MATERIAL")
                secrets.append(secret)
            elif operation == "again" and secrets:
                key.import_material(Material(new_material_id(), secrets[step % len(secrets)]), "i" * 32, None,
                                    KEY_MATERIAL_DOES_NOT_EXPIRE, now, import_type="EXISTING_KEY_MATERIAL")
            elif operation == "rotate":
                key.rotate_on_demand(None, None, now)
            elif operation == "delete-current":
                key.delete_imported_material(now)
            elif operation == "delete-other":
                others = [m for m in key.materials if m["material_id"] != key.designated_material_id]
                if others:
                    key.delete_imported_material(now, key_material_id(key.key_id, others[0]["material_id"]))
            elif operation == "expire":
                key.expire_material_if_due(now + timedelta(minutes=5))
        except KmsError:
            pass  # a refused command triggers nothing; the invariants must still hold
        pending = [m for m in key.materials if m.get("pending_rotation")]
        assert len(pending) <= 1
        assert all(m.get("present") for m in pending)  # deleted or expired pending material goes altogether
        designated = key.designated_material_id
        assert designated is None or not key.material(designated).get("pending_rotation")
        states = [key.material_state(m) for m in key.materials]
        assert states.count(CURRENT) <= 1 and states.count(PENDING_ROTATION) == len(pending)
        usable = designated is not None and key.material(designated).get("present")
        assert (key.key_state is KeyState.ENABLED) == bool(usable)
        assert key.current_material_id == (designated if usable else None)
        assert T0 <= key.modified_on
