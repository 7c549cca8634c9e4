"""Settings from the environment: values are converted or refused with the variable's name."""
from __future__ import annotations

import pytest

from infrastructure.settings import Settings


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("FALSE", False), ("1", True), ("off", False),
                                                 (" yes ", True), ("no", False)])
def test_metrics_switch(text: str, expected: bool) -> None:
    assert Settings.load({"KEYLEDGER_METRICS": text}).metrics is expected


def test_metrics_is_on_by_default() -> None:
    assert Settings.load({}).metrics is True


@pytest.mark.parametrize(("variable", "text"), [("KEYLEDGER_METRICS", "maybe"), ("KEYLEDGER_WORKERS", "two"),
                                                ("KEYLEDGER_PORT", "eighty")])
def test_an_unreadable_value_names_its_variable(variable: str, text: str) -> None:
    with pytest.raises(SystemExit, match=variable):
        Settings.load({variable: text})
