"""The old ``runtime.*`` names still work for one release, from every source, mapped onto
the new sections with a warning; a new name given in the same source wins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from streamlabel.cli.reference import settings_docs, settings_markdown
from streamlabel.errors import SettingsError
from streamlabel.settings.renamed import RUNTIME_RENAMED
from streamlabel.settings.runtime import load_runtime_settings

OLD_RUNTIME_FIELDS = {
    "workers", "embedder", "batch_size", "poll_timeout_ms", "batch_target_ms",
    "min_batch_size", "overlap", "torch_threads", "drift_sample",
    "max_inflight_observations", "state_dir", "snapshot_every_s", "snapshot_every_records",
    "max_restarts", "publish_retry_s", "broker_check_s", "stop_timeout_s",
    "worker_start_timeout_s", "drained_node_wait_s", "log_json", "log_level", "autoscale",
    "min_workers", "max_workers", "target_lag_per_worker", "scale_up_after_s",
    "scale_down_after_s", "scale_cooldown_s",
}  # fmt: skip
"""Every field of the old ``runtime`` section."""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


def _warned(caught: pytest.WarningsRecorder, text: str) -> bool:
    return any(text in str(w.message) for w in caught)


def test_every_old_runtime_name_maps_to_an_existing_new_setting() -> None:
    assert {old.removeprefix("runtime.") for old in RUNTIME_RENAMED} == OLD_RUNTIME_FIELDS
    new_names = {d.name for d in settings_docs()}
    assert set(RUNTIME_RENAMED.values()) <= new_names
    assert len(set(RUNTIME_RENAMED.values())) == len(RUNTIME_RENAMED)


def test_an_old_name_in_the_overrides_sets_the_new_setting_and_warns() -> None:
    with pytest.deprecated_call() as caught:
        s = load_runtime_settings(runtime={"batch_size": 33, "log_json": True, "autoscale": False})
    assert _warned(caught, "runtime.batch_size is renamed worker.batch_size")
    assert _warned(caught, "runtime.autoscale is renamed scaling.enabled")
    assert s.worker.batch_size == 33
    assert s.logging.json_lines is True
    assert s.scaling.enabled is False


def test_an_old_environment_variable_sets_the_new_setting_and_warns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMLABEL_RUNTIME__BATCH_SIZE", "32")
    monkeypatch.setenv("STREAMLABEL_RUNTIME__LOG_LEVEL", "warning")
    with pytest.deprecated_call() as caught:
        s = load_runtime_settings()
    assert _warned(
        caught, "STREAMLABEL_RUNTIME__BATCH_SIZE is renamed STREAMLABEL_WORKER__BATCH_SIZE"
    )
    assert (s.worker.batch_size, s.logging.level) == (32, "warning")


def test_an_old_runtime_table_in_a_toml_file_sets_the_new_settings(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text('[runtime]\nworkers = 3\nstate_dir = "/var/lib/sl"\nautoscale = true\n'
                    "max_workers = 4\n")  # fmt: skip
    with pytest.deprecated_call() as caught:
        s = load_runtime_settings(path)
    assert _warned(caught, "runtime.state_dir is renamed learner.state_dir")
    assert (s.supervisor.workers, s.learner.state_dir) == (3, "/var/lib/sl")
    assert (s.scaling.enabled, s.scaling.max_workers) == (True, 4)


def test_an_old_runtime_object_in_a_json_file_sets_the_new_settings(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"runtime": {"embedder": "actor", "publish_retry_s": 5}}))
    with pytest.deprecated_call():
        s = load_runtime_settings(path)
    assert (s.supervisor.embedder, s.worker.publish_retry_s) == ("actor", 5.0)


def test_the_structlog_warning_names_the_old_and_the_new_name() -> None:
    with capture_logs() as logs, pytest.deprecated_call():
        load_runtime_settings(runtime={"max_restarts": 7})
    assert {
        "event": "setting_renamed",
        "old": "runtime.max_restarts",
        "new": "supervisor.max_restarts",
        "source": "overrides",
        "log_level": "warning",
    } in logs


def test_new_names_read_no_warning(recwarn: pytest.WarningsRecorder) -> None:
    load_runtime_settings(worker={"batch_size": 8})
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_a_new_name_wins_over_the_old_one_in_the_same_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.deprecated_call():
        s = load_runtime_settings(runtime={"batch_size": 1}, worker={"batch_size": 2})
    assert s.worker.batch_size == 2
    monkeypatch.setenv("STREAMLABEL_RUNTIME__WORKERS", "5")
    monkeypatch.setenv("STREAMLABEL_SUPERVISOR__WORKERS", "6")
    path = tmp_path / "s.toml"
    path.write_text("[runtime]\nstop_timeout_s = 1\n[supervisor]\nstop_timeout_s = 2\n")
    with pytest.deprecated_call():
        s = load_runtime_settings(path)
    assert (s.supervisor.workers, s.supervisor.stop_timeout_s) == (6, 2.0)


def test_the_priority_of_the_sources_holds_for_old_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old name in the environment beats a new one in the file; overrides beat both."""
    path = tmp_path / "s.toml"
    path.write_text("[worker]\nbatch_size = 10\ndrift_sample = 0.5\n")
    monkeypatch.setenv("STREAMLABEL_RUNTIME__BATCH_SIZE", "20")
    with pytest.deprecated_call():
        s = load_runtime_settings(path)
    assert (s.worker.batch_size, s.worker.drift_sample) == (20, 0.5)
    with pytest.deprecated_call():
        s = load_runtime_settings(path, runtime={"drift_sample": 0.25})
    assert (s.worker.batch_size, s.worker.drift_sample) == (20, 0.25)


def test_an_invalid_value_under_an_old_name_is_named_by_its_new_name() -> None:
    with pytest.deprecated_call(), pytest.raises(SettingsError, match=r"supervisor\.workers"):
        load_runtime_settings(runtime={"workers": 0})


def test_an_unknown_name_in_the_old_section_is_still_an_error() -> None:
    with pytest.raises(SettingsError, match="runtime"):
        load_runtime_settings(runtime={"no_such_setting": 1})


def test_the_reference_lists_only_the_new_names_and_a_renamed_table() -> None:
    names = [d.name for d in settings_docs()]
    assert not [n for n in names if n.startswith("runtime.")]
    page = settings_markdown()
    assert "## Renamed settings" in page
    for old, new in RUNTIME_RENAMED.items():
        assert f"| `{old}` | `{new}` |" in page
