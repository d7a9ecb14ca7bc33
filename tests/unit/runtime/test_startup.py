"""The supervisor's checks before it starts an actor (``runtime.startup``): a
``model.path`` that cannot hold a model, and a local Ray too small for the
actors, fail naming the settings; the wait for the first actors reports each
one as it becomes ready, and none that failed."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streamlabel.errors import SettingsError, StreamlabelError
from streamlabel.runtime.slots import Slot, SlotState
from streamlabel.runtime.startup import await_started, check_model, check_resources
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


class _Handle:
    """An actor handle: ``handle.method.remote()`` returns the ref ``"<name>.<method>"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, method: str) -> Any:
        return SimpleNamespace(remote=lambda *args: f"{self.name}.{method}")


class _Ray:
    """``ray.wait/get/kill`` over string refs: ``order`` is when each ``ready()`` returns."""

    def __init__(self, order: list[str], results: dict[str, Any]) -> None:
        self.order, self.results, self.killed = order, results, []  # type: ignore[var-annotated]

    def wait(self, refs: list[str], num_returns: int = 1, timeout: float | None = None) -> Any:
        done = [r for r in self.order if r in refs][:num_returns]
        return done, [r for r in refs if r not in done]

    def get(self, ref: str, timeout: float | None = None) -> Any:
        result = self.results[ref]
        if isinstance(result, BaseException):
            raise result
        return result

    def kill(self, handle: Any) -> None:
        self.killed.append(handle)


def _starting(*names: str) -> list[Slot]:
    slots = []
    for name in names:
        slot, handle = Slot(name), _Handle(name)
        slot.starting(handle, handle.ready.remote(), 0.0)
        slots.append(slot)
    return slots


def test_await_started_reports_each_actor_as_it_becomes_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    refs = ["worker-1.ready", "learner.ready", "worker-0.ready"]  # in the order they finish
    fake = _Ray(refs, dict.fromkeys(refs, True))
    for name in ("wait", "get", "kill"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    slots = _starting("learner", "worker-0", "worker-1")
    steps: list[str] = []
    await_started(slots, 60.0, steps.append)
    assert steps == ["worker-1 ready (1/3)", "learner ready (2/3)", "worker-0 ready (3/3)"]
    assert [s.state for s in slots] == [SlotState.RUNNING] * 3


def test_await_started_reports_no_failed_actor_and_raises_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    fake = _Ray(["learner.ready", "worker-0.ready"],
                {"learner.ready": True, "worker-0.ready": RuntimeError("no model")})  # fmt: skip
    for name in ("wait", "get", "kill"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    slots = _starting("learner", "worker-0")
    steps: list[str] = []
    with pytest.raises(StreamlabelError, match="worker-0 could not start: no model"):
        await_started(slots, 60.0, steps.append)
    assert steps == ["learner ready (1/2)"]
    assert fake.killed == [s.handle for s in slots]
