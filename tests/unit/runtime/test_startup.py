"""The supervisor's checks before it starts an actor (``runtime.startup``): a
``model.path`` that cannot hold a model, and a local Ray too small for the
actors, fail naming the settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamlabel.errors import SettingsError
from streamlabel.runtime.startup import check_model, check_resources
from streamlabel.settings.runtime import load_runtime_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


def test_a_model_path_without_config_json_fails_naming_the_setting(tmp_path: Path) -> None:
    check_model(load_runtime_settings())  # unset: the bundled model
    with pytest.raises(SettingsError, match=r"model\.path .* does not exist"):
        check_model(load_runtime_settings(model={"path": str(tmp_path / "missing")}))
    with pytest.raises(SettingsError, match=r"model\.path .* has no config\.json"):
        check_model(load_runtime_settings(model={"path": str(tmp_path)}))
    (tmp_path / "config.json").write_text("{}")
    check_model(load_runtime_settings(model={"path": str(tmp_path)}))


def test_too_few_cpus_for_the_actors_fail_naming_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    settings = load_runtime_settings(
        supervisor={"workers": 2}, ray={"worker_num_cpus": 1, "learner_num_cpus": 1}
    )
    with pytest.raises(SettingsError, match=r"supervisor.workers=2 .* needs 3 CPUs; .* has 2"):
        check_resources(settings)
    check_resources(settings.model_copy(update={"supervisor": settings.supervisor.model_copy(
        update={"workers": 1})}))  # fmt: skip
