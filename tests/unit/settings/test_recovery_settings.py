"""The settings of recovery: how long a worker retries a delivery
(``worker.publish_retry_s``), and how often the supervisor checks for a broker that
lost its topics (``supervisor.broker_check_s``). Both must be positive."""

from __future__ import annotations

import os

import pytest

from streamlabel.errors import SettingsError
from streamlabel.settings.runtime import load_runtime_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


def test_recovery_settings_have_positive_defaults() -> None:
    s = load_runtime_settings()
    assert s.worker.publish_retry_s == 120.0
    assert s.supervisor.broker_check_s == 2.0


@pytest.mark.parametrize(
    ("section", "name"), [("worker", "publish_retry_s"), ("supervisor", "broker_check_s")]
)
def test_a_positive_value_is_taken(section: str, name: str) -> None:
    s = load_runtime_settings(**{section: {name: 0.25}})
    assert getattr(getattr(s, section), name) == 0.25


@pytest.mark.parametrize(
    ("section", "name"), [("worker", "publish_retry_s"), ("supervisor", "broker_check_s")]
)
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, "soon"])
def test_a_non_positive_value_raises_settings_error_naming_the_setting(
    section: str, name: str, value: object
) -> None:
    with pytest.raises(SettingsError, match=rf"{section}\.{name}"):
        load_runtime_settings(**{section: {name: value}})


@pytest.mark.parametrize(
    ("variable", "section", "name"),
    [
        ("STREAMLABEL_WORKER__PUBLISH_RETRY_S", "worker", "publish_retry_s"),
        ("STREAMLABEL_SUPERVISOR__BROKER_CHECK_S", "supervisor", "broker_check_s"),
    ],
)
def test_the_environment_sets_them_and_is_validated_too(
    monkeypatch: pytest.MonkeyPatch, variable: str, section: str, name: str
) -> None:
    monkeypatch.setenv(variable, "7.5")
    assert getattr(getattr(load_runtime_settings(), section), name) == 7.5
    monkeypatch.setenv(variable, "0")
    with pytest.raises(SettingsError, match=rf"{section}\.{name}"):
        load_runtime_settings()
