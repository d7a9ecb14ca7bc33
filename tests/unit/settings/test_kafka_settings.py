"""``kafka.*`` checks that guard the files and the wire.

* ``kafka.group_id`` and ``kafka.topic_prefix`` name the learner's snapshot
  file: a path separator or ``..`` fails at load, naming the setting;
* ``SASL_PLAINTEXT`` with a password loads, with a Python warning and a log line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import structlog

from streamlabel.errors import SettingsError
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.workers.checkpoint import snapshot_path

SASL_PLAINTEXT = {
    "bootstrap_servers": "broker-1:9092",
    "security_protocol": "SASL_PLAINTEXT",
    "sasl_mechanism": "PLAIN",
    "sasl_username": "svc-streamlabel",
    "sasl_password": "hunter2-secret",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMLABEL_* variable from the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


# ------------------------------------------------------------- file names
@pytest.mark.parametrize("setting", ["group_id", "topic_prefix"])
@pytest.mark.parametrize(
    "value", ["../../etc/cron.d/x", "a/b", "a\\b", "..", "x..y", "with space", "naïve"]
)
def test_a_name_that_could_leave_the_state_directory_is_rejected_naming_the_setting(
    setting: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=rf"kafka\.{setting}"):
        load_runtime_settings(kafka={setting: value})


def test_an_unsafe_group_id_from_the_environment_fails_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMLABEL_KAFKA__GROUP_ID", "../escape")
    with pytest.raises(SettingsError, match=r"kafka\.group_id"):
        load_runtime_settings()


@pytest.mark.parametrize(
    ("prefix", "group"), [("sl.", "streamlabel"), ("", "tickets-labeller"), ("t1_.", "g.v2")]
)
def test_safe_names_load_and_the_snapshot_stays_in_the_state_directory(
    tmp_path: Path, prefix: str, group: str
) -> None:
    s = load_runtime_settings(
        kafka={"topic_prefix": prefix, "group_id": group}, learner={"state_dir": str(tmp_path)}
    )
    assert snapshot_path(s).parent == tmp_path
    assert snapshot_path(s).name == f"learner-{prefix}{group}.snapshot"


# ----------------------------------------------------------- SASL_PLAINTEXT
def test_sasl_plaintext_with_a_password_loads_but_warns() -> None:
    with structlog.testing.capture_logs() as logs, pytest.warns(UserWarning, match="SASL_SSL"):
        s = load_runtime_settings(kafka=SASL_PLAINTEXT)
    assert s.kafka.security_protocol == "SASL_PLAINTEXT"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["kafka_sasl_plaintext"]
    assert "hunter2-secret" not in str(logs)


def test_the_cleartext_warning_never_shows_the_password() -> None:
    with pytest.warns(UserWarning, match="SASL_PLAINTEXT") as caught:
        load_runtime_settings(kafka=SASL_PLAINTEXT)
    assert all("hunter2-secret" not in str(w.message) for w in caught)


@pytest.mark.parametrize("protocol", ["SASL_SSL", "PLAINTEXT"])
def test_other_protocols_load_without_the_cleartext_warning(protocol: str) -> None:
    kafka = {**SASL_PLAINTEXT, "security_protocol": protocol}
    if protocol == "PLAINTEXT":
        kafka = {"bootstrap_servers": "broker-1:9092"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_runtime_settings(kafka=kafka)
