"""Runtime settings: overrides > environment > file > defaults; errors name the setting.

(Named ``test_runtime_settings.py``: ``tests/unit`` has no ``__init__.py`` files, so
test basenames must be unique and ``tests/unit/pipeline/test_settings.py`` exists.)
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from streamlabel.errors import SettingsError
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings

SASL = {
    "bootstrap_servers": "broker-1:9093,broker-2:9093",
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "svc-streamlabel",
    "sasl_password": "hunter2-secret",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMLABEL_* variable from the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "streamlabel.toml",
        '[kafka]\ngroup_id = "from-file"\nclient_id = "file-client"\ntopic_prefix = "file."\n'
        "[supervisor]\nworkers = 3\n[worker]\nbatch_size = 16\n"
        "[store]\ntop_k = 7\n",
    )


# ----------------------------------------------------------------- priority
def test_defaults_apply_without_file_env_or_overrides() -> None:
    s = load_runtime_settings()
    assert s.kafka.bootstrap_servers is None
    assert (s.kafka.topic_prefix, s.kafka.group_id) == ("sl.", "streamlabel")
    assert (s.supervisor.workers, s.supervisor.embedder) == (2, "auto")
    assert s.store.top_k == 5


def test_a_toml_file_sets_values_in_every_section(toml_file: Path) -> None:
    s = load_runtime_settings(toml_file)
    assert (s.kafka.group_id, s.kafka.client_id, s.kafka.topic_prefix) == (
        "from-file",
        "file-client",
        "file.",
    )
    assert (s.supervisor.workers, s.worker.batch_size) == (3, 16)
    assert s.store.top_k == 7
    assert s.kafka.partitions == 4  # unset in the file: default


def test_a_json_file_sets_values_like_a_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "settings.json",
        json.dumps({"kafka": {"group_id": "from-json"}, "supervisor": {"workers": 5}}),
    )
    s = load_runtime_settings(str(path))
    assert (s.kafka.group_id, s.supervisor.workers) == ("from-json", 5)


def test_environment_beats_the_file(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLABEL_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("STREAMLABEL_SUPERVISOR__WORKERS", "9")
    s = load_runtime_settings(toml_file)
    assert (s.kafka.group_id, s.supervisor.workers) == ("from-env", 9)
    assert s.kafka.client_id == "file-client"  # the file still sets what env does not
    assert s.worker.batch_size == 16


def test_overrides_beat_the_environment_and_the_file(
    toml_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMLABEL_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("STREAMLABEL_KAFKA__CLIENT_ID", "env-client")
    s = load_runtime_settings(toml_file, kafka={"group_id": "from-override"})
    assert s.kafka.group_id == "from-override"
    assert s.kafka.client_id == "env-client"  # an override of one field keeps the others
    assert s.kafka.topic_prefix == "file."
    assert s.supervisor.workers == 3


def test_environment_alone_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("STREAMLABEL_SUPERVISOR__EMBEDDER", "actor")
    s = load_runtime_settings()
    assert s.kafka.bootstrap_servers == "kafka:9092"
    assert s.supervisor.embedder == "actor"


def test_a_secret_from_the_environment_completes_sasl_settings_from_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMLABEL_KAFKA__SASL_PASSWORD", "from-env-secret")
    s = load_runtime_settings(kafka={k: v for k, v in SASL.items() if k != "sasl_password"})
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == "from-env-secret"


@pytest.mark.parametrize(
    ("env", "file_text"),
    [
        (
            {"STREAMLABEL_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"},
            '[kafka]\nsasl_mechanism = "PLAIN"\nsasl_username = "u"\nsasl_password = "p"\n',
        ),
        (
            {"STREAMLABEL_KAFKA__SESSION_TIMEOUT_MS": "6000"},
            "[kafka]\nheartbeat_interval_ms = 1000\n",
        ),
        (
            {"STREAMLABEL_DISCOVERY__BUFFER_CAPACITY": "20"},
            "[discovery]\nmin_cluster_size = 10\n",
        ),
    ],
    ids=["sasl-protocol-from-env", "session-timeout-from-env", "buffer-capacity-from-env"],
)
def test_cross_field_rules_apply_to_the_merged_settings_not_to_each_source(
    env: dict[str, str], file_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_runtime_settings(write(tmp_path / "s.toml", file_text))


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"kafka": {"bootstrap_servers": "no-port-here"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"bootstrap_servers": "a:9092,b"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"topic_prefix": "bad prefix!"}}, "kafka.topic_prefix"),
        ({"kafka": {"partitions": 0}}, "kafka.partitions"),
        ({"kafka": {"security_protocol": "TLS"}}, "kafka.security_protocol"),
        ({"kafka": {"unknown_knob": 1}}, "kafka.unknown_knob"),
        ({"supervisor": {"workers": 0}}, "supervisor.workers"),
        ({"supervisor": {"embedder": "gpu"}}, "supervisor.embedder"),
        ({"worker": {"drift_sample": 1.5}}, "worker.drift_sample"),
        ({"logging": {"level": "loud"}}, "logging.level"),
        ({"learner": {"snapshot_every_records": 0}}, "learner.snapshot_every_records"),
        ({"ray": {"worker_num_cpus": -1}}, "ray.worker_num_cpus"),
        ({"store": {"top_k": 0}}, "store.top_k"),
    ],
)
def test_an_invalid_override_raises_settings_error_naming_the_setting(
    overrides: dict, named: str
) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_runtime_settings(**overrides)


def test_an_invalid_environment_variable_names_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMLABEL_SUPERVISOR__WORKERS", "many")
    with pytest.raises(SettingsError, match=r"supervisor\.workers"):
        load_runtime_settings()


def test_an_invalid_value_in_the_file_names_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", '[kafka]\nbootstrap_servers = "localhost"\n')
    with pytest.raises(SettingsError, match=r"kafka\.bootstrap_servers"):
        load_runtime_settings(path)


def test_a_missing_settings_file_raises_settings_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "streamlabel.toml"
    with pytest.raises(SettingsError, match="nowhere"):
        load_runtime_settings(missing)


@pytest.mark.parametrize(
    ("name", "text"),
    [("s.toml", "[kafka\ngroup_id = 1"), ("s.json", "{not json"), ("s.json", "[1, 2]")],
)
def test_an_unparsable_settings_file_raises_settings_error_naming_the_path(
    tmp_path: Path, name: str, text: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(SettingsError, match=name.replace(".", r"\.")):
        load_runtime_settings(path)


@pytest.mark.parametrize(
    "missing", ["sasl_mechanism", "sasl_username", "sasl_password"], ids=lambda m: f"no-{m}"
)
def test_sasl_without_its_mechanism_or_credentials_is_rejected(missing: str) -> None:
    kafka = {k: v for k, v in SASL.items() if k != missing}
    with pytest.raises(SettingsError, match="kafka"):
        load_runtime_settings(kafka=kafka)


def test_a_heartbeat_longer_than_a_third_of_the_session_timeout_is_rejected() -> None:
    with pytest.raises(SettingsError, match="heartbeat_interval_ms"):
        load_runtime_settings(kafka={"session_timeout_ms": 6000, "heartbeat_interval_ms": 2500})


def test_a_settings_error_never_shows_the_sasl_password() -> None:
    kafka = {k: v for k, v in SASL.items() if k != "sasl_mechanism"}
    with pytest.raises(SettingsError) as caught:
        load_runtime_settings(kafka=kafka)
    assert "hunter2-secret" not in str(caught.value)


def test_the_sasl_password_is_masked_in_the_settings_repr() -> None:
    s = load_runtime_settings(kafka=SASL)
    assert "hunter2-secret" not in repr(s)
    assert "hunter2-secret" not in str(s.kafka)


# ------------------------------------------------------------ client kwargs
def test_client_kwargs_export_the_servers_and_nothing_secret_by_default() -> None:
    kw = load_runtime_settings(kafka={"bootstrap_servers": "a:9092, b:9093"}).kafka.client_kwargs()
    assert kw == {
        "bootstrap_servers": ["a:9092", "b:9093"],
        "client_id": "streamlabel",
        "security_protocol": "PLAINTEXT",
        "request_timeout_ms": 30_000,
        "bootstrap_timeout_ms": 30_000,
    }


def test_client_kwargs_export_sasl_credentials_when_configured() -> None:
    kw = load_runtime_settings(kafka=SASL).kafka.client_kwargs()
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "svc-streamlabel"
    assert kw["sasl_plain_password"] == "hunter2-secret"


def test_client_kwargs_export_only_the_ssl_files_that_are_set() -> None:
    kafka = {"bootstrap_servers": "a:9093", "security_protocol": "SSL", "ssl_cafile": "/ca.pem"}
    kw = load_runtime_settings(kafka=kafka).kafka.client_kwargs()
    assert kw["ssl_cafile"] == "/ca.pem"
    assert "ssl_certfile" not in kw
    assert "ssl_keyfile" not in kw
    assert not any(k.startswith("sasl") for k in kw)


def test_client_kwargs_without_bootstrap_servers_raise_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"kafka\.bootstrap_servers"):
        KafkaSettings().client_kwargs()


def test_blank_bootstrap_servers_mean_the_embedded_broker() -> None:
    assert load_runtime_settings(kafka={"bootstrap_servers": "  "}).kafka.bootstrap_servers is None


# -------------------------------------------------------------------- pickle
def test_settings_survive_pickling_for_ray_actors(toml_file: Path) -> None:
    s = load_runtime_settings(toml_file, kafka=SASL, learner={"state_dir": "/var/lib/sl"})
    copy = pickle.loads(pickle.dumps(s))
    assert isinstance(copy, RuntimeSettings)
    assert copy == s
    assert copy.kafka.sasl_password is not None
    assert copy.kafka.sasl_password.get_secret_value() == "hunter2-secret"
    assert copy.kafka.client_kwargs() == s.kafka.client_kwargs()
    assert copy.learner.state_dir == "/var/lib/sl"


def test_settings_are_frozen() -> None:
    s = load_runtime_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.supervisor.workers = 4  # type: ignore[misc]


def test_latency_bounded_batches_are_on_by_default_and_off_can_be_said_anywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An environment variable or a TOML file cannot say null: ``off`` (or ``none``) does."""
    assert load_runtime_settings().worker.batch_target_ms == 100.0
    monkeypatch.setenv("STREAMLABEL_WORKER__BATCH_TARGET_MS", "off")
    assert load_runtime_settings().worker.batch_target_ms is None
    monkeypatch.delenv("STREAMLABEL_WORKER__BATCH_TARGET_MS")
    toml = tmp_path / "s.toml"
    toml.write_text('[worker]\nbatch_target_ms = "none"\n')
    assert load_runtime_settings(toml).worker.batch_target_ms is None
    with pytest.raises(SettingsError, match="batch_target_ms"):
        load_runtime_settings(worker={"batch_target_ms": "soon"})
